package proxy

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
)

// sinkFunc adapts a function to Sink.
type sinkFunc func(ctx context.Context, c *Chunk) error

func (f sinkFunc) Put(ctx context.Context, c *Chunk) error { return f(ctx, c) }

// recordingSink keeps every chunk put, with a copy of its data at Put time.
type recordingSink struct {
	mu     sync.Mutex
	chunks []*Chunk
	data   [][]byte
}

func (s *recordingSink) Put(_ context.Context, c *Chunk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chunks = append(s.chunks, c)
	s.data = append(s.data, bytes.Clone(c.Data))
	return nil
}

func TestBatchConfig(t *testing.T) {
	d := BatchConfig{}.WithDefaults()
	if d.ChunkBytes != 1<<20 || d.ChunkAge.D() != 100*time.Millisecond {
		t.Errorf("defaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct {
		cfg   BatchConfig
		field string
	}{
		{BatchConfig{ChunkBytes: 100, ChunkAge: d.ChunkAge}, "chunk_bytes"},
		{BatchConfig{ChunkBytes: 128 << 20, ChunkAge: d.ChunkAge}, "chunk_bytes"},
		{BatchConfig{ChunkBytes: 1024, ChunkAge: conf.Duration(time.Microsecond)}, "chunk_age"},
	} {
		if err := tc.cfg.Validate(); err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.field)) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
}

// Entries are batched per tag, copied byte for byte, and the caller may reuse its
// buffer at once.
func TestBatcherPerTagRaw(t *testing.T) {
	sink := &recordingSink{}
	b := NewBatcher(sink, BatchConfig{})
	ctx := t.Context()
	buf := make([]byte, 0, 4096)
	want := map[string][]byte{}
	add := func(tag, src string, seq, n int) {
		buf = append(buf[:0], entries(src, seq, n, 60)...)
		want[tag] = append(want[tag], buf...)
		if err := b.Add(ctx, []byte(tag), buf, n, nil, nil); err != nil {
			t.Fatal(err)
		}
		clear(buf) // the batcher must have copied
	}
	add("app.a", "a", 0, 3)
	add("app.b", "b", 0, 1)
	add("app.a", "a", 3, 2)
	add("app.c", "c", 0, 4)
	if !b.Pending() || b.PendingEvents() != 10 {
		t.Fatalf("Pending=%v PendingEvents=%d, want true, 10", b.Pending(), b.PendingEvents())
	}
	if len(sink.chunks) != 0 {
		t.Fatal("a partial chunk was put before Flush")
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Pending() || b.PendingEvents() != 0 || !b.Deadline().IsZero() {
		t.Error("batcher not empty after Flush")
	}
	got := map[string][]byte{}
	counts := map[string]int{}
	for i, c := range sink.chunks {
		if _, dup := got[c.Tag]; dup {
			t.Errorf("two chunks for %s", c.Tag)
		}
		got[c.Tag] = sink.data[i]
		counts[c.Tag] = c.Count
	}
	for tag, w := range want {
		if !bytes.Equal(got[tag], w) {
			t.Errorf("%s: chunk data differs from the entries added", tag)
		}
	}
	if counts["app.a"] != 5 || counts["app.b"] != 1 || counts["app.c"] != 4 {
		t.Errorf("counts = %v", counts)
	}
	ids := map[[16]byte]bool{}
	for _, c := range sink.chunks {
		ids[c.ID] = true
	}
	if len(ids) != 3 {
		t.Error("chunks share an id")
	}
}

func TestBatcherFlushBySize(t *testing.T) {
	sink := &recordingSink{}
	b := NewBatcher(sink, BatchConfig{ChunkBytes: 1000})
	ctx := t.Context()
	e := entries("s", 0, 1, 300)
	n := len(e) // ~300 bytes: three fit below 1000, the fourth would not
	for i := range 3 {
		if err := b.Add(ctx, []byte("t"), entries("s", i, 1, 300), 1, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(sink.chunks) != 0 {
		t.Fatalf("put after %d bytes, limit 1000", 3*n)
	}
	// The fourth entry would pass the limit: the chunk goes first, without it.
	if err := b.Add(ctx, []byte("t"), entries("s", 3, 1, 300), 1, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(sink.chunks) != 1 || sink.chunks[0].Count != 3 || !bytes.Equal(sink.data[0], entries("s", 0, 3, 300)) {
		t.Fatalf("after the 4th entry: %d chunks", len(sink.chunks))
	}
	// One Add larger than the limit is a chunk of its own, put at once.
	big := entries("s", 4, 5, 300)
	if err := b.Add(ctx, []byte("t"), big, 5, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(sink.chunks) != 3 {
		t.Fatalf("%d chunks, want 3 (the pending one, then the big one)", len(sink.chunks))
	}
	if sink.chunks[1].Count != 1 || sink.chunks[2].Count != 5 || !bytes.Equal(sink.data[2], big) {
		t.Errorf("chunks = %d/%d events", sink.chunks[1].Count, sink.chunks[2].Count)
	}
	if b.Pending() {
		t.Error("pending after a full chunk was put")
	}
}

// Deadline is the age backstop: ChunkAge after the oldest partial chunk was started.
func TestBatcherDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &recordingSink{}
		b := NewBatcher(sink, BatchConfig{ChunkAge: conf.Duration(100 * time.Millisecond)})
		ctx := t.Context()
		if !b.Deadline().IsZero() {
			t.Fatal("deadline with nothing pending")
		}
		start := time.Now()
		b.Add(ctx, []byte("a"), entry("a", 0, 50), 1, nil, nil)
		if got := b.Deadline(); !got.Equal(start.Add(100 * time.Millisecond)) {
			t.Fatalf("Deadline = %v, want start+100ms", got.Sub(start))
		}
		time.Sleep(30 * time.Millisecond)
		b.Add(ctx, []byte("b"), entry("b", 0, 50), 1, nil, nil)
		b.Add(ctx, []byte("a"), entry("a", 1, 50), 1, nil, nil)
		if got := b.Deadline(); !got.Equal(start.Add(100 * time.Millisecond)) {
			t.Errorf("a younger chunk moved the deadline to start+%v", got.Sub(start))
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if !b.Deadline().IsZero() {
			t.Error("deadline after Flush")
		}
		time.Sleep(time.Second)
		b.Add(ctx, []byte("b"), entry("b", 1, 50), 1, nil, nil)
		if got := b.Deadline(); !got.Equal(time.Now().Add(100 * time.Millisecond)) {
			t.Errorf("Deadline after a flush = now+%v, want now+100ms", time.Until(got))
		}
	})
}

// done runs when the chunk is finished, with its outcome; early as soon as the chunk
// is in the sink (ack = "received"); neither runs before.
func TestBatcherCallbacks(t *testing.T) {
	r := NewRing(RingConfig{})
	b := NewBatcher(r, BatchConfig{})
	ctx := t.Context()
	var mu sync.Mutex
	var log []string
	note := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	b.Add(ctx, []byte("t"), entry("s", 0, 50), 1, func(o Outcome) { note("done1:" + o.String()) }, func() { note("early1") })
	b.Add(ctx, []byte("t"), entry("s", 1, 50), 1, func(o Outcome) { note("done2:" + o.String()) }, nil)
	b.Add(ctx, []byte("t"), entry("s", 2, 50), 1, nil, func() { note("early3") })
	if len(log) != 0 {
		t.Fatalf("callbacks ran before the chunk was put: %v", log)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(log, []string{"early1", "early3"}) {
		t.Fatalf("after Flush: %v, want the early callbacks only", log)
	}
	c := r.TryGet()
	if c == nil || c.Count != 3 {
		t.Fatal("no chunk of 3 events in the ring")
	}
	c.Done(Acked)
	if !slices.Equal(log, []string{"early1", "early3", "done1:acked", "done2:acked"}) {
		t.Errorf("after Done: %v", log)
	}
}

// A chunk dropped by the ring's policy still finishes its producer's callbacks.
func TestBatcherDroppedChunk(t *testing.T) {
	r := NewRing(RingConfig{MaxChunks: 1, Overflow: OverflowDropNewest})
	if err := r.Put(t.Context(), chunkOf("x", 10, 1)); err != nil {
		t.Fatal(err)
	}
	b := NewBatcher(r, BatchConfig{})
	var got Outcome
	early := false
	b.Add(t.Context(), []byte("t"), entry("s", 0, 50), 1, func(o Outcome) { got = o }, func() { early = true })
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got != Dropped || !early {
		t.Errorf("done=%v early=%v, want dropped and true", got, early)
	}
	if s := r.Stats(); s.DroppedEvents != 1 {
		t.Errorf("dropped events = %d", s.DroppedEvents)
	}
}

// When the sink refuses (ctx ended on a full ring), entries stay pending; Abandon
// discards them without running their callbacks.
func TestBatcherSinkErrorAndAbandon(t *testing.T) {
	fail := errors.New("full")
	var refused bool
	sink := sinkFunc(func(ctx context.Context, c *Chunk) error {
		if refused {
			return fail
		}
		c.Done(Acked)
		return nil
	})
	b := NewBatcher(sink, BatchConfig{ChunkBytes: 1000})
	ctx := t.Context()
	ran := false
	b.Add(ctx, []byte("a"), entry("s", 0, 100), 1, func(Outcome) { ran = true }, func() { ran = true })
	b.Add(ctx, []byte("b"), entry("s", 1, 100), 1, nil, nil)
	refused = true
	if err := b.Flush(ctx); !errors.Is(err, fail) {
		t.Fatalf("Flush = %v", err)
	}
	if !b.Pending() || b.PendingEvents() != 2 {
		t.Fatalf("PendingEvents = %d after a refused flush, want 2", b.PendingEvents())
	}
	// A full chunk that cannot be put keeps its entries too.
	if err := b.Add(ctx, []byte("a"), entries("s", 2, 5, 300), 5, nil, nil); !errors.Is(err, fail) {
		t.Fatalf("Add = %v", err)
	}
	if n := b.Abandon(); n < 2 {
		t.Errorf("Abandon = %d", n)
	}
	if b.Pending() || b.PendingEvents() != 0 {
		t.Error("pending after Abandon")
	}
	if ran {
		t.Error("callbacks of abandoned entries ran: a client would be acked for lost events")
	}
	refused = false
	if err := b.Add(ctx, []byte("a"), entry("s", 9, 100), 1, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// Steady-state batching allocates nothing per event: buffers come back from the pool
// when chunks are done.
func TestBatcherAddAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	sink := sinkFunc(func(_ context.Context, c *Chunk) error { c.Done(Acked); return nil })
	b := NewBatcher(sink, BatchConfig{ChunkBytes: 64 << 10})
	ctx := context.Background()
	tag := []byte("app.web")
	e := entry("s", 1, 200)
	for range 1000 { // warm the pool
		b.Add(ctx, tag, e, 1, nil, nil)
	}
	allocs := testing.AllocsPerRun(10000, func() {
		if err := b.Add(ctx, tag, e, 1, nil, nil); err != nil {
			t.Fatal(err)
		}
	})
	// A new chunk (id, tag string, map entry) every ~300 events rounds to 0 per event.
	if allocs != 0 {
		t.Errorf("Add allocates %.2f times per event, want 0", allocs)
	}
}

func BenchmarkBatcherAdd(b *testing.B) {
	sink := sinkFunc(func(_ context.Context, c *Chunk) error { c.Done(Acked); return nil })
	bt := NewBatcher(sink, BatchConfig{})
	ctx := context.Background()
	tag := []byte("app.web")
	e := entry("s", 1, 200)
	b.SetBytes(int64(len(e)))
	b.ReportAllocs()
	for b.Loop() {
		if err := bt.Add(ctx, tag, e, 1, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// A one-line chunk from a pooled buffer leaves the ring with an exact-size copy: queued
// tiny chunks must not each pin a 64 KiB buffer.
func TestRingCompactsMostlyEmptyPooledChunks(t *testing.T) {
	r := NewRing(RingConfig{})
	c := NewPooledChunk("t")
	c.Data = append(c.Data, "one line"...)
	c.Count = 1
	if cap(c.Data) < 16<<10 {
		t.Skipf("pooled buffers are only %d bytes", cap(c.Data))
	}
	if err := r.Put(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if cap(c.Data) != len(c.Data) || string(c.Data) != "one line" || c.buf != nil {
		t.Fatalf("after Put: len %d cap %d pooled %v", len(c.Data), cap(c.Data), c.buf != nil)
	}
	c.Done(Acked)
}
