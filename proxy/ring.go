package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
)

// Overflow policies for a full ring.
const (
	OverflowBlock      = "block"
	OverflowDropOldest = "drop_oldest"
	OverflowDropNewest = "drop_newest"
)

var (
	// ErrRingClosed is returned by Put after CloseIntake, and by Get once the ring is
	// closed for intake and holds no queued chunk.
	ErrRingClosed = errors.New("ring closed")
)

// RingConfig bounds the ring.
type RingConfig struct {
	// MaxBytes bounds the bytes of chunks accepted and not yet finished, queued or in
	// flight (default 64 MiB: 64 full chunks, a few seconds of a busy host's logs while
	// an upstream fails over, and small enough for a sidecar's memory limit).
	MaxBytes int64 `toml:"max_bytes" json:"max_bytes"`
	// MaxChunks bounds the number of chunks accepted and not yet finished (default 4096).
	MaxChunks int `toml:"max_chunks" json:"max_chunks"`
	// CoalesceBytes merges small queued chunks of one tag, up to this size, when the
	// output takes them, so a slow upstream still gets full chunks (default 1 MiB;
	// a negative value disables merging).
	CoalesceBytes int `toml:"coalesce_bytes" json:"coalesce_bytes"`
	// Overflow is what a full ring does: "block" (default, backpressure), "drop_oldest"
	// or "drop_newest". Every dropped event is counted.
	Overflow string `toml:"overflow" json:"overflow"`
}

// WithDefaults fills zero fields.
func (c RingConfig) WithDefaults() RingConfig {
	if c.MaxBytes == 0 {
		c.MaxBytes = 64 << 20
	}
	if c.MaxChunks == 0 {
		c.MaxChunks = 4096
	}
	if c.Overflow == "" {
		c.Overflow = OverflowBlock
	}
	if c.CoalesceBytes == 0 {
		c.CoalesceBytes = 1 << 20
	}
	return c
}

// Validate names the first bad field.
func (c RingConfig) Validate() error {
	if c.MaxBytes < 1024 {
		return &conf.FieldError{Field: "max_bytes", Reason: "must be at least 1024"}
	}
	if c.MaxChunks < 1 {
		return &conf.FieldError{Field: "max_chunks", Reason: "must be at least 1"}
	}
	switch c.Overflow {
	case OverflowBlock, OverflowDropOldest, OverflowDropNewest:
	default:
		return &conf.FieldError{Field: "overflow", Reason: fmt.Sprintf("%q is not one of block, drop_oldest, drop_newest", c.Overflow)}
	}
	return nil
}

// Ring is the bounded queue between producers (listener connections, tailers) and the
// output (balancer or stdout). It is bounded by chunks and bytes counted from Put until
// the chunk is Done, so in-flight chunks count too and memory stays bounded whatever
// the upstreams do.
//
// Put blocks while the ring is full (backpressure) unless a drop policy is configured.
// Get hands queued chunks to the output; Requeue puts a chunk that failed back at the
// head. All methods are safe for concurrent use.
type Ring struct {
	cfg RingConfig

	mu       sync.Mutex
	queue    []*Chunk // FIFO; head at queue[head]
	head     int
	bytes    int64 // accepted, not finished
	chunks   int   // accepted, not finished
	closed   bool
	closedCh chan struct{} // closed by CloseIntake: wakes every waiting Get
	wake     chan struct{} // one slot: a chunk was queued (or the ring closed)
	space    chan struct{} // closed and replaced whenever budget is freed
	finished chan struct{} // closed and replaced whenever a chunk finishes

	used           atomic.Int64 // mirror of bytes, for Congested without the lock
	blockedNanos   atomic.Int64
	droppedChunks  atomic.Int64
	droppedEvents  atomic.Int64
	putChunks      atomic.Int64
	putEvents      atomic.Int64
	doneChunks     atomic.Int64
	requeuedChunks atomic.Int64
}

// NewRing returns an empty ring. cfg must be valid (after WithDefaults).
func NewRing(cfg RingConfig) *Ring {
	cfg = cfg.WithDefaults()
	return &Ring{
		cfg:      cfg,
		closedCh: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		space:    make(chan struct{}),
		finished: make(chan struct{}),
	}
}

func (r *Ring) fullLocked(n int64) bool {
	if r.chunks == 0 {
		return false // a chunk larger than the budget still passes alone
	}
	return r.chunks+1 > r.cfg.MaxChunks || r.bytes+n > r.cfg.MaxBytes
}

// Put queues c. It blocks while the ring is full and the policy is "block", until space
// frees, ctx ends (ctx.Err()) or the ring closes (ErrRingClosed). With a drop policy it
// never blocks. When Put returns an error the caller still owns c.
func (r *Ring) Put(ctx context.Context, c *Chunk) error {
	c.compact()
	// The budget counts the memory a chunk holds (its buffer's capacity), not only its
	// data, so max_bytes bounds what the process really keeps.
	n := int64(cap(c.Data))
	c.held = n
	var blockedSince time.Time
	r.mu.Lock()
	for {
		if r.closed {
			r.mu.Unlock()
			r.addBlocked(blockedSince)
			return ErrRingClosed
		}
		if !r.fullLocked(n) {
			break
		}
		switch r.cfg.Overflow {
		case OverflowDropNewest:
			r.mu.Unlock()
			r.drop(c)
			return nil
		case OverflowDropOldest:
			if old := r.popLocked(); old != nil {
				r.mu.Unlock()
				r.drop(old) // releases its budget, then we try again
				r.mu.Lock()
				continue
			}
			// Everything is in flight: nothing old to drop, so the new one goes.
			r.mu.Unlock()
			r.drop(c)
			return nil
		}
		space := r.space
		r.mu.Unlock()
		if blockedSince.IsZero() {
			blockedSince = time.Now()
		}
		select {
		case <-space:
		case <-ctx.Done():
			r.addBlocked(blockedSince)
			return ctx.Err()
		}
		r.mu.Lock()
	}
	r.bytes += n
	r.used.Store(r.bytes)
	r.chunks++
	c.release = r.release
	r.queue = append(r.queue, c)
	r.mu.Unlock()
	r.addBlocked(blockedSince)
	r.putChunks.Add(1)
	r.putEvents.Add(int64(c.Count))
	r.signal()
	return nil
}

func (r *Ring) addBlocked(since time.Time) {
	if !since.IsZero() {
		r.blockedNanos.Add(int64(time.Since(since)))
	}
}

func (r *Ring) drop(c *Chunk) {
	r.droppedChunks.Add(1)
	r.droppedEvents.Add(int64(c.Count))
	c.Done(Dropped)
}

func (r *Ring) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Ring) popLocked() *Chunk {
	if r.head >= len(r.queue) {
		return nil
	}
	c := r.queue[r.head]
	r.queue[r.head] = nil
	r.head++
	if r.head == len(r.queue) {
		r.queue = r.queue[:0]
		r.head = 0
	} else if r.head > 1024 && r.head*2 > len(r.queue) {
		n := copy(r.queue, r.queue[r.head:])
		clear(r.queue[n:])
		r.queue = r.queue[:n]
		r.head = 0
	}
	return c
}

// release is called by Chunk.Done for chunks this ring accepted.
func (r *Ring) release(c *Chunk) {
	r.mu.Lock()
	r.bytes -= c.held
	r.used.Store(r.bytes)
	r.chunks--
	close(r.space)
	r.space = make(chan struct{})
	close(r.finished)
	r.finished = make(chan struct{})
	r.mu.Unlock()
	r.doneChunks.Add(1)
}

// Congested reports whether more than half the byte budget is taken. Producers then
// hand on smaller chunks: a producer blocked in Put holds its chunk outside the budget,
// and a thousand blocked connections with 1 MiB each would hold a gigabyte. The ring
// merges small queued chunks again when the output takes them.
func (r *Ring) Congested() bool { return r.used.Load() > r.cfg.MaxBytes/2 }

// TryGet returns the next queued chunk, or nil when none is queued.
func (r *Ring) TryGet() *Chunk {
	r.mu.Lock()
	c, parts := r.takeLocked()
	r.mu.Unlock()
	return merge(c, parts)
}

// takeLocked pops the head chunk and, when it is small, the chunks of the same tag
// queued right behind it, up to CoalesceBytes. Producers flush the moment their input
// drains, so a slow upstream sees many small chunks queue up; merging them when the
// output takes them keeps each round trip full (batching from load, at the output).
func (r *Ring) takeLocked() (*Chunk, []*Chunk) {
	c := r.popLocked()
	limit := r.cfg.CoalesceBytes
	if c == nil || limit <= 0 || c.parts != nil || c.Bytes() >= limit/2 {
		return c, nil
	}
	var parts []*Chunk
	total := c.Bytes()
	for r.head < len(r.queue) {
		n := r.queue[r.head]
		if n.Tag != c.Tag || n.parts != nil || total+n.Bytes() > limit {
			break
		}
		parts = append(parts, r.popLocked())
		total += n.Bytes()
	}
	return c, parts
}

// merge builds one chunk out of c and parts, outside the ring's lock. The parts keep
// their budget in the ring and their producers' callbacks; finishing the merged chunk
// finishes each of them with the same outcome.
func merge(c *Chunk, parts []*Chunk) *Chunk {
	if len(parts) == 0 {
		return c
	}
	all := make([]*Chunk, 0, len(parts)+1)
	all = append(all, c)
	all = append(all, parts...)
	total := 0
	for _, p := range all {
		total += len(p.Data)
	}
	m := NewPooledChunk(c.Tag)
	if cap(m.Data) < total {
		// Sized once: growing by doubling would leave a trail of garbage per merge.
		putBuf(m.buf, m.Data)
		m.buf, m.Data = nil, make([]byte, 0, total)
	}
	m.Created = c.Created
	for _, p := range all {
		m.Data = append(m.Data, p.Data...)
		m.Count += p.Count
	}
	m.parts = all
	m.OnDone(func(o Outcome) {
		for _, p := range all {
			p.Done(o)
		}
	})
	return m
}

// Get returns the next queued chunk, waiting for one. It returns ctx.Err() when ctx
// ends and ErrRingClosed when the ring is closed for intake and nothing is queued
// (chunks may still be in flight: see Drained). Several outputs may wait in Get at
// once: each queued chunk wakes one of them, and CloseIntake wakes them all.
func (r *Ring) Get(ctx context.Context) (*Chunk, error) {
	for {
		r.mu.Lock()
		c, parts := r.takeLocked()
		more := r.head < len(r.queue)
		closed := r.closed
		r.mu.Unlock()
		c = merge(c, parts)
		if c != nil {
			if more {
				// The wake-up slot holds one token for any number of Puts: pass it
				// on, or a second waiting output would sleep beside a queued chunk.
				r.signal()
			}
			return c, nil
		}
		if closed {
			return nil, ErrRingClosed
		}
		select {
		case <-r.wake:
		case <-r.closedCh:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Requeue puts a chunk that an output took with Get but could not deliver back at the
// head of the queue. It ignores the bounds (the chunk already counts in them) and works
// after CloseIntake, so a drain can still retry it.
func (r *Ring) Requeue(c *Chunk) {
	if c.Finished() {
		return
	}
	r.mu.Lock()
	if r.head > 0 {
		r.head--
		r.queue[r.head] = c
	} else {
		r.queue = append(r.queue, nil)
		copy(r.queue[1:], r.queue)
		r.queue[0] = c
	}
	r.mu.Unlock()
	r.requeuedChunks.Add(1)
	r.signal()
}

// CloseIntake makes every later Put fail with ErrRingClosed and wakes blocked producers.
// Queued and in-flight chunks stay: the output drains them. Idempotent.
func (r *Ring) CloseIntake() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.closedCh)
		close(r.space)
		r.space = make(chan struct{})
	}
	r.mu.Unlock()
	r.signal()
}

// Drained reports whether no chunk is queued or in flight.
func (r *Ring) Drained() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chunks == 0
}

// WaitDrained blocks until every accepted chunk is finished or ctx ends.
func (r *Ring) WaitDrained(ctx context.Context) error {
	for {
		r.mu.Lock()
		n := r.chunks
		ch := r.finished
		r.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Pending returns the chunks queued and not yet taken by an output, with their events;
// used to report what a drain could not send.
func (r *Ring) Pending() (chunks, events int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.queue[r.head:] {
		chunks++
		events += c.Count
	}
	return
}

// RingStats is a snapshot of the ring's counters.
type RingStats struct {
	Chunks         int     `json:"chunks"`
	Bytes          int64   `json:"bytes"`
	Queued         int     `json:"queued"`
	CapacityBytes  int64   `json:"capacity_bytes"`
	CapacityChunks int     `json:"capacity_chunks"`
	Overflow       string  `json:"overflow"`
	BlockedSeconds float64 `json:"blocked_seconds"`
	PutChunks      int64   `json:"put_chunks"`
	PutEvents      int64   `json:"put_events"`
	DoneChunks     int64   `json:"done_chunks"`
	Requeued       int64   `json:"requeued_chunks"`
	DroppedChunks  int64   `json:"dropped_chunks"`
	DroppedEvents  int64   `json:"dropped_events"`
}

// Stats returns a snapshot.
func (r *Ring) Stats() RingStats {
	r.mu.Lock()
	s := RingStats{
		Chunks:         r.chunks,
		Bytes:          r.bytes,
		Queued:         len(r.queue) - r.head,
		CapacityBytes:  r.cfg.MaxBytes,
		CapacityChunks: r.cfg.MaxChunks,
		Overflow:       r.cfg.Overflow,
	}
	r.mu.Unlock()
	s.BlockedSeconds = time.Duration(r.blockedNanos.Load()).Seconds()
	s.PutChunks = r.putChunks.Load()
	s.PutEvents = r.putEvents.Load()
	s.DoneChunks = r.doneChunks.Load()
	s.Requeued = r.requeuedChunks.Load()
	s.DroppedChunks = r.droppedChunks.Load()
	s.DroppedEvents = r.droppedEvents.Load()
	return s
}
