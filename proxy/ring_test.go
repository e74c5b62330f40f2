package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// chunkOf returns a chunk of tag with size bytes holding count events.
func chunkOf(tag string, size, count int) *Chunk {
	return NewChunk(tag, make([]byte, size), count)
}

// putAsync starts Put in a goroutine; the channel gets its result.
func putAsync(ctx context.Context, r *Ring, c *Chunk) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- r.Put(ctx, c) }()
	return ch
}

// returned reports whether ch has a value, after every goroutine of the bubble is
// blocked (so "not returned" means "blocked", not "not scheduled yet").
func returned(ch <-chan error) (error, bool) {
	synctest.Wait()
	select {
	case err := <-ch:
		return err, true
	default:
		return nil, false
	}
}

func mustPut(t *testing.T, r *Ring, c *Chunk) {
	t.Helper()
	if err := r.Put(t.Context(), c); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func mustGet(t *testing.T, r *Ring) *Chunk {
	t.Helper()
	c := r.TryGet()
	if c == nil {
		t.Fatal("TryGet: nothing queued")
	}
	return c
}

func TestRingConfig(t *testing.T) {
	d := RingConfig{}.WithDefaults()
	if d.MaxBytes != 64<<20 || d.MaxChunks != 4096 || d.Overflow != OverflowBlock {
		t.Errorf("defaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	for _, tc := range []struct {
		cfg   RingConfig
		field string
	}{
		{RingConfig{MaxBytes: 100, MaxChunks: 1, Overflow: "block"}, "max_bytes"},
		{RingConfig{MaxBytes: 1024, MaxChunks: -1, Overflow: "block"}, "max_chunks"},
		{RingConfig{MaxBytes: 1024, MaxChunks: 1, Overflow: "drop_all"}, "overflow"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
}

// The chunk bound counts chunks from Put until Done: a chunk taken by the output but
// not finished still holds its slot.
func TestRingBlocksWhenFullOfChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{MaxChunks: 2, CoalesceBytes: -1})
		mustPut(t, r, chunkOf("a", 10, 1))
		mustPut(t, r, chunkOf("a", 10, 1))
		third := putAsync(t.Context(), r, chunkOf("a", 10, 1))
		if _, ok := returned(third); ok {
			t.Fatal("Put into a full ring returned")
		}
		c := mustGet(t, r) // in flight: still counts
		if _, ok := returned(third); ok {
			t.Fatal("Put returned when a chunk was only taken, not done")
		}
		c.Done(Acked)
		if err, ok := returned(third); !ok || err != nil {
			t.Fatalf("Put after Done: returned=%v err=%v", ok, err)
		}
		s := r.Stats()
		if s.Chunks != 2 || s.Queued != 2 || s.PutChunks != 3 || s.DoneChunks != 1 {
			t.Errorf("stats = %+v", s)
		}
	})
}

func TestRingBlocksWhenFullOfBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{MaxBytes: 1024})
		mustPut(t, r, chunkOf("a", 600, 1))
		second := putAsync(t.Context(), r, chunkOf("a", 600, 1))
		if _, ok := returned(second); ok {
			t.Fatal("Put over MaxBytes returned")
		}
		if s := r.Stats(); s.Bytes != 600 || s.Chunks != 1 {
			t.Errorf("stats while blocked = %+v", s)
		}
		time.Sleep(3 * time.Second) // fake time: the wait is counted exactly
		mustGet(t, r).Done(Acked)
		if err, ok := returned(second); !ok || err != nil {
			t.Fatalf("Put after Done: returned=%v err=%v", ok, err)
		}
		if s := r.Stats(); s.Bytes != 600 || s.BlockedSeconds != 3 {
			t.Errorf("stats = %+v, want 600 bytes and 3 s blocked", s)
		}
	})
}

func TestRingPutEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{MaxChunks: 1})
		mustPut(t, r, chunkOf("a", 10, 1))
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		start := time.Now()
		c := chunkOf("a", 10, 1)
		err := r.Put(ctx, c)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Put = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 250*time.Millisecond {
			t.Errorf("Put blocked %v, want 250ms", d)
		}
		if c.Finished() || r.Stats().Chunks != 1 {
			t.Error("a refused chunk must stay with the caller, untouched")
		}
	})
}

func TestRingCloseIntake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{MaxChunks: 2})
		a, b := chunkOf("a", 10, 1), chunkOf("b", 10, 1)
		mustPut(t, r, a)
		mustPut(t, r, b)
		blocked := []<-chan error{
			putAsync(t.Context(), r, chunkOf("c", 10, 1)),
			putAsync(t.Context(), r, chunkOf("d", 10, 1)),
		}
		synctest.Wait()
		r.CloseIntake()
		r.CloseIntake() // idempotent
		for i, ch := range blocked {
			if err, ok := returned(ch); !ok || !errors.Is(err, ErrRingClosed) {
				t.Errorf("blocked producer %d: returned=%v err=%v, want ErrRingClosed", i, ok, err)
			}
		}
		if err := r.Put(t.Context(), chunkOf("e", 10, 1)); !errors.Is(err, ErrRingClosed) {
			t.Errorf("Put after CloseIntake = %v", err)
		}
		// Queued chunks still drain, then Get reports the close.
		for _, want := range []*Chunk{a, b} {
			got, err := r.Get(t.Context())
			if err != nil || got != want {
				t.Fatalf("Get = %v, %v; want %s", got, err, want.Tag)
			}
		}
		if _, err := r.Get(t.Context()); !errors.Is(err, ErrRingClosed) {
			t.Errorf("Get on a closed empty ring = %v", err)
		}
		if r.Drained() {
			t.Error("Drained with two chunks in flight")
		}
		a.Done(Acked)
		b.Done(Acked)
		if !r.Drained() {
			t.Error("not Drained after every chunk was done")
		}
	})
}

// Several outputs may wait in Get: every queued chunk must reach one of them, and
// CloseIntake must wake them all.
func TestRingGetManyOutputs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{})
		const outputs = 3
		got := make(chan *Chunk, outputs)
		errs := make(chan error, outputs)
		for range outputs {
			go func() {
				c, err := r.Get(t.Context())
				if err != nil {
					errs <- err
					return
				}
				got <- c
				// This output is now busy with its chunk; it does not come back.
			}()
		}
		synctest.Wait()
		// Two Puts whose wake-ups coalesced in the one-slot channel: it happens when
		// both land while the outputs are between their empty check and their wait.
		// Model it: queue both chunks, leave a single wake-up.
		r.mu.Lock()
		r.queue = append(r.queue, chunkOf("a", 10, 1), chunkOf("b", 10, 1))
		r.chunks += 2
		r.mu.Unlock()
		r.signal()
		synctest.Wait()
		if len(got) != 2 {
			t.Fatalf("%d outputs got a chunk, want 2 (a queued chunk sat beside an idle output)", len(got))
		}
		r.CloseIntake()
		synctest.Wait()
		if len(errs) != 1 || !errors.Is(<-errs, ErrRingClosed) {
			t.Fatal("the third output was not woken by CloseIntake")
		}
	})
}

func TestRingGetWaitsAndEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{})
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() {
			_, err := r.Get(ctx)
			res <- err
		}()
		if _, ok := returned(res); ok {
			t.Fatal("Get on an empty ring returned")
		}
		cancel()
		if err, ok := returned(res); !ok || !errors.Is(err, context.Canceled) {
			t.Fatalf("Get after cancel: returned=%v err=%v", ok, err)
		}
		if c := r.TryGet(); c != nil {
			t.Error("TryGet on an empty ring returned a chunk")
		}
	})
}

func TestRingFIFOAndRequeue(t *testing.T) {
	r := NewRing(RingConfig{})
	var cs []*Chunk
	for _, tag := range []string{"a", "b", "c"} {
		c := chunkOf(tag, 10, 2)
		cs = append(cs, c)
		mustPut(t, r, c)
	}
	a := mustGet(t, r)
	b := mustGet(t, r)
	if a != cs[0] || b != cs[1] {
		t.Fatal("Get is not FIFO")
	}
	r.Requeue(b)
	r.Requeue(a) // the last requeued goes first
	if ch, ev := r.Pending(); ch != 3 || ev != 6 {
		t.Errorf("Pending = %d chunks %d events, want 3, 6", ch, ev)
	}
	for i, want := range []*Chunk{a, b, cs[2]} {
		if got := mustGet(t, r); got != want {
			t.Errorf("Get %d = %s, want %s", i, got.Tag, want.Tag)
		}
	}
	// Requeue ignores the bounds (the chunk already counts) and works after the close.
	r.CloseIntake()
	r.Requeue(a)
	if got := mustGet(t, r); got != a {
		t.Error("Requeue after CloseIntake lost the chunk")
	}
	// A finished chunk is not requeued.
	a.Done(Acked)
	r.Requeue(a)
	if r.TryGet() != nil {
		t.Error("a finished chunk was requeued")
	}
	if s := r.Stats(); s.Requeued != 3 || s.Chunks != 2 {
		t.Errorf("stats = %+v, want 3 requeued, 2 chunks", s)
	}
}

// Requeue at the head of a queue whose head index is 0 and whose slice has grown.
func TestRingRequeueIntoFullQueue(t *testing.T) {
	r := NewRing(RingConfig{CoalesceBytes: -1}) // counts chunks one by one
	for i := range 2000 {
		mustPut(t, r, chunkOf("x", 1, i))
	}
	first := mustGet(t, r)
	r.Requeue(first)
	for i := range 2000 {
		c := mustGet(t, r)
		if c.Count != i {
			t.Fatalf("Get %d = chunk %d", i, c.Count)
		}
		c.Done(Acked)
	}
	if !r.Drained() || r.TryGet() != nil {
		t.Error("ring not empty")
	}
}

func TestRingOverflowDrops(t *testing.T) {
	type step struct {
		put  string // tag to put (its size and count come from sizes/counts)
		take bool   // or: the output takes the head chunk (in flight)
	}
	sizes := map[string]int{"a": 400, "b": 400, "c": 10, "big": 900}
	counts := map[string]int{"a": 5, "b": 7, "c": 11, "big": 13}
	for _, tc := range []struct {
		name     string
		cfg      RingConfig
		steps    []step
		dropped  []string // tags finished with Dropped, in order
		queued   []string // tags left in the queue
		lostEvts int64
	}{
		{"drop_newest", RingConfig{MaxChunks: 2, Overflow: OverflowDropNewest},
			[]step{{put: "a"}, {put: "b"}, {put: "c"}}, []string{"c"}, []string{"a", "b"}, 11},
		{"drop_oldest", RingConfig{MaxChunks: 2, Overflow: OverflowDropOldest},
			[]step{{put: "a"}, {put: "b"}, {put: "c"}}, []string{"a"}, []string{"b", "c"}, 5},
		{"drop_oldest skips in-flight", RingConfig{MaxChunks: 2, Overflow: OverflowDropOldest},
			[]step{{put: "a"}, {take: true}, {put: "b"}, {put: "c"}}, []string{"b"}, []string{"c"}, 7},
		{"drop_oldest all in flight", RingConfig{MaxChunks: 2, Overflow: OverflowDropOldest},
			[]step{{put: "a"}, {take: true}, {put: "b"}, {take: true}, {put: "c"}}, []string{"c"}, nil, 11},
		{"drop_oldest by bytes", RingConfig{MaxBytes: 1024, Overflow: OverflowDropOldest},
			[]step{{put: "a"}, {put: "b"}, {put: "big"}}, []string{"a", "b"}, []string{"big"}, 12},
		{"drop_newest by bytes", RingConfig{MaxBytes: 1024, Overflow: OverflowDropNewest},
			[]step{{put: "a"}, {put: "b"}, {put: "big"}, {put: "c"}}, []string{"big"}, []string{"a", "b", "c"}, 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := NewRing(tc.cfg)
				var mu sync.Mutex
				var dropped []string
				for _, st := range tc.steps {
					if st.take {
						mustGet(t, r)
						continue
					}
					c := chunkOf(st.put, sizes[st.put], counts[st.put])
					c.OnDone(func(o Outcome) {
						if o != Dropped {
							t.Errorf("%s finished %v, want dropped", c.Tag, o)
						}
						mu.Lock()
						dropped = append(dropped, c.Tag)
						mu.Unlock()
					})
					// A drop policy never blocks: a blocked Put deadlocks the bubble.
					if err := r.Put(t.Context(), c); err != nil {
						t.Fatalf("Put %s: %v", st.put, err)
					}
				}
				if !slices.Equal(dropped, tc.dropped) {
					t.Errorf("dropped %v, want %v", dropped, tc.dropped)
				}
				var queued []string
				for c := r.TryGet(); c != nil; c = r.TryGet() {
					queued = append(queued, c.Tag)
				}
				if !slices.Equal(queued, tc.queued) {
					t.Errorf("queued %v, want %v", queued, tc.queued)
				}
				s := r.Stats()
				if s.DroppedChunks != int64(len(tc.dropped)) || s.DroppedEvents != tc.lostEvts {
					t.Errorf("stats dropped %d chunks %d events, want %d, %d", s.DroppedChunks, s.DroppedEvents, len(tc.dropped), tc.lostEvts)
				}
			})
		})
	}
}

// A chunk larger than MaxBytes passes when the ring is empty, then blocks the next.
func TestRingOversizedChunkPassesAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{MaxBytes: 1024})
		big := chunkOf("big", 4096, 1)
		mustPut(t, r, big)
		next := putAsync(t.Context(), r, chunkOf("small", 10, 1))
		if _, ok := returned(next); ok {
			t.Fatal("Put beside an oversized chunk returned")
		}
		mustGet(t, r).Done(Acked)
		if err, ok := returned(next); !ok || err != nil {
			t.Fatalf("Put after the big chunk was done: returned=%v err=%v", ok, err)
		}
	})
}

func TestRingWaitDrained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRing(RingConfig{})
		if err := r.WaitDrained(t.Context()); err != nil {
			t.Fatalf("WaitDrained on an empty ring: %v", err)
		}
		a, b := chunkOf("a", 10, 1), chunkOf("b", 10, 1)
		mustPut(t, r, a)
		mustPut(t, r, b)
		res := make(chan error, 1)
		go func() { res <- r.WaitDrained(t.Context()) }()
		mustGet(t, r).Done(Acked)
		if _, ok := returned(res); ok {
			t.Fatal("WaitDrained returned with a chunk queued")
		}
		mustGet(t, r) // in flight
		if _, ok := returned(res); ok {
			t.Fatal("WaitDrained returned with a chunk in flight")
		}
		b.Done(Acked)
		if err, ok := returned(res); !ok || err != nil {
			t.Fatalf("WaitDrained after the last Done: returned=%v err=%v", ok, err)
		}
		c := chunkOf("c", 10, 1)
		mustPut(t, r, c)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := r.WaitDrained(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitDrained with a stuck chunk = %v", err)
		}
	})
}

func TestChunkDoneOnce(t *testing.T) {
	r := NewRing(RingConfig{})
	c := NewPooledChunk("t")
	c.Data = append(c.Data, "0123456789"...)
	c.Count = 1
	var calls []Outcome
	c.OnDone(func(o Outcome) { calls = append(calls, o) })
	c.OnDone(func(o Outcome) { calls = append(calls, o+10) })
	mustPut(t, r, c)
	if s := r.Stats(); s.Bytes != 10 {
		t.Fatalf("bytes = %d", s.Bytes)
	}
	c.Done(Acked)
	c.Done(Dropped)
	if !slices.Equal(calls, []Outcome{Acked, Acked + 10}) {
		t.Errorf("callbacks ran %v, want once each in order", calls)
	}
	if s := r.Stats(); s.Bytes != 0 || s.Chunks != 0 || s.DoneChunks != 1 {
		t.Errorf("stats after Done = %+v", s)
	}
	if !c.Finished() || c.Data != nil {
		t.Error("a done pooled chunk keeps its buffer")
	}
	if Acked.String() != "acked" || Dropped.String() != "dropped" || Outcome(0).String() != "unknown" {
		t.Error("Outcome.String")
	}
}

func TestChunkIDsUnique(t *testing.T) {
	const goroutines, each = 8, 1000
	var mu sync.Mutex
	seen := make(map[[16]byte]bool, goroutines*each)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			ids := make([][16]byte, each)
			for i := range ids {
				ids[i] = NewChunk("t", nil, 0).ID
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("duplicate id %x", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
}

// Many producers and outputs at once, with a tiny ring: every chunk is delivered once
// and the counters add up (run with -race).
func TestRingConcurrent(t *testing.T) {
	// Chunk identity rides in Count here, so merging is off.
	r := NewRing(RingConfig{MaxChunks: 4, MaxBytes: 4096, CoalesceBytes: -1})
	const producers, each, outputs = 8, 500, 3
	var got [producers * each]atomic.Int32
	ctx := t.Context()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				if err := r.Put(ctx, chunkOf("t", 100+i%900, p*each+i)); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
	}
	var owg sync.WaitGroup
	for o := range outputs {
		owg.Go(func() {
			for n := 0; ; n++ {
				c, err := r.Get(ctx)
				if err != nil {
					return
				}
				got[c.Count].Add(1)
				if (n+o)%7 == 0 {
					r.Requeue(c) // a failed send, retried by whoever Gets it next
					continue
				}
				c.Done(Acked)
			}
		})
	}
	wg.Wait()
	r.CloseIntake()
	if err := r.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	owg.Wait()
	for i := range got {
		if n := got[i].Load(); n < 1 {
			t.Fatalf("chunk %d never delivered", i)
		}
	}
	s := r.Stats()
	if s.PutChunks != producers*each || s.DoneChunks != producers*each || s.Chunks != 0 || s.Bytes != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// Small chunks of one tag that queue up behind a slow output leave as one chunk; its
// outcome finishes every part, in order, and the budget is released part by part.
func TestRingCoalescesSmallChunksOfOneTag(t *testing.T) {
	r := NewRing(RingConfig{CoalesceBytes: 64})
	var done []string
	put := func(tag, data string) {
		c := NewChunk(tag, slices.Clip([]byte(data)), 1) // cap == len: the budget counts capacity
		c.OnDone(func(o Outcome) { done = append(done, tag+":"+data+":"+o.String()) })
		if err := r.Put(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "1111")
	put("a", "2222")
	put("a", "3333")
	put("b", "4444")
	put("a", "5555")
	m := r.TryGet()
	if m == nil || m.Tag != "a" || string(m.Data) != "111122223333" || m.Count != 3 {
		t.Fatalf("merged = %+v", m)
	}
	if st := r.Stats(); st.Chunks != 5 || st.Queued != 2 {
		t.Fatalf("stats after merge: %+v", st)
	}
	m.Done(Acked)
	want := []string{"a:1111:acked", "a:2222:acked", "a:3333:acked"}
	if fmt.Sprint(done) != fmt.Sprint(want) {
		t.Fatalf("done = %v, want %v", done, want)
	}
	if st := r.Stats(); st.Chunks != 2 || st.Bytes != 8 {
		t.Fatalf("stats after done: %+v", st)
	}
	// A different tag stops the merge: order across tags is kept.
	if b := r.TryGet(); b.Tag != "b" || b.Count != 1 {
		t.Fatalf("second = %+v", b)
	}
	// A requeued merged chunk is taken back whole, not merged again.
	r2 := NewRing(RingConfig{CoalesceBytes: 64})
	for _, d := range []string{"x", "y"} {
		if err := r2.Put(context.Background(), NewChunk("t", []byte(d), 1)); err != nil {
			t.Fatal(err)
		}
	}
	m2 := r2.TryGet()
	r2.Requeue(m2)
	if err := r2.Put(context.Background(), NewChunk("t", []byte("z"), 1)); err != nil {
		t.Fatal(err)
	}
	if again := r2.TryGet(); again != m2 {
		t.Fatalf("requeued merged chunk not returned whole: %q", again.Data)
	}
	// Disabled: one chunk at a time.
	r3 := NewRing(RingConfig{CoalesceBytes: -1})
	for _, d := range []string{"x", "y"} {
		if err := r3.Put(context.Background(), NewChunk("t", []byte(d), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if c := r3.TryGet(); string(c.Data) != "x" {
		t.Fatalf("coalesce disabled but got %q", c.Data)
	}
}
