package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome says how a chunk's life ended.
type Outcome uint8

const (
	// Acked: an upstream (or the stdout output) acknowledged the chunk.
	Acked Outcome = iota + 1
	// Dropped: the ring's overflow policy discarded the chunk. Producers treat it as
	// finished (a tailer moves its position past it, a forward client gets its ack so it
	// does not resend forever); the loss is counted in the ring's stats.
	Dropped
)

func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Dropped:
		return "dropped"
	}
	return "unknown"
}

// Chunk is the unit of work: one tag, a run of concatenated msgpack [time, record]
// entries, and the callbacks of whoever produced it. The balancer sends a chunk as one
// PackedForward message and the upstream acks it as a whole.
//
// A producer builds a chunk, registers callbacks with OnDone, and hands it to a Sink;
// after that the chunk belongs to the pipeline and the producer must not touch Data.
// Done is called exactly once by whoever finishes the chunk (upstream ack, stdout
// output, or the ring's drop policy); further calls are ignored.
type Chunk struct {
	Tag   string
	Data  []byte
	Count int
	ID    [16]byte
	// Created is when the producer started filling the chunk.
	Created time.Time

	callbacks []func(Outcome)
	done      atomic.Bool
	release   func(*Chunk) // set by the ring: returns the chunk's bytes to the budget
	buf       *[]byte      // pooled backing buffer, returned after Done
	parts     []*Chunk     // the queued chunks a merged chunk was built from
	held      int64        // bytes counted in the ring's budget for this chunk
}

// idPrefix makes chunk ids unique across processes; the counter makes them unique
// within one. Sixteen bytes, as fluentd's chunk ids.
var (
	idPrefix  [8]byte
	idCounter atomic.Uint64
)

func init() {
	_, _ = rand.Read(idPrefix[:])
}

// NewChunk returns a chunk with a fresh unique id. data is owned by the chunk from now on.
func NewChunk(tag string, data []byte, count int) *Chunk {
	c := &Chunk{Tag: tag, Data: data, Count: count, Created: time.Now()}
	c.ID = NewID()
	return c
}

// NewID returns a process-unique 16-byte id.
func NewID() [16]byte {
	var id [16]byte
	copy(id[:8], idPrefix[:])
	binary.BigEndian.PutUint64(id[8:], idCounter.Add(1))
	return id
}

// OnDone registers f to run when the chunk is finished. Register before handing the
// chunk to a Sink; callbacks run in registration order on the goroutine that calls Done.
func (c *Chunk) OnDone(f func(Outcome)) {
	c.callbacks = append(c.callbacks, f)
}

// Bytes is the size the chunk counts for in the ring's byte budget.
func (c *Chunk) Bytes() int { return len(c.Data) }

// Finished reports whether Done was called.
func (c *Chunk) Finished() bool { return c.done.Load() }

// Done finishes the chunk: producer callbacks run, then the ring's budget is released.
// Only the first call has an effect.
func (c *Chunk) Done(o Outcome) {
	if !c.done.CompareAndSwap(false, true) {
		return
	}
	for _, f := range c.callbacks {
		f(o)
	}
	c.callbacks = nil
	if c.release != nil {
		c.release(c)
	}
	if c.buf != nil {
		putBuf(c.buf, c.Data)
		c.buf = nil
	}
	c.Data = nil // finished: nobody reads it again, and the memory can go
}

// bufPool recycles chunk buffers: a chunk allocates its buffer once and gives it back
// when acked, so steady-state batching allocates nothing per event or per chunk.
var bufPool sync.Pool

// maxPooledBuf keeps huge one-off buffers (a 64 MiB client frame) out of the pool.
const maxPooledBuf = 4 << 20

func getBuf() *[]byte {
	if p, ok := bufPool.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func putBuf(p *[]byte, data []byte) {
	if cap(data) > maxPooledBuf {
		return
	}
	*p = data[:0]
	bufPool.Put(p)
}

// compact gives a mostly empty pooled buffer back at once and keeps an exact copy: a
// producer that flushes one line at a time (a quiet file, a synchronous client) must
// not pin a 64 KiB buffer per queued chunk, or the ring's byte bound would not bound
// memory.
func (c *Chunk) compact() {
	if c.buf == nil || cap(c.Data) < 16<<10 || cap(c.Data) < 2*len(c.Data) {
		return
	}
	exact := make([]byte, len(c.Data))
	copy(exact, c.Data)
	putBuf(c.buf, c.Data)
	c.buf = nil
	c.Data = exact
}

// NewPooledChunk returns an empty chunk whose Data comes from a buffer pool and goes back
// to it after Done. Append entries to Data, then set Count.
func NewPooledChunk(tag string) *Chunk {
	p := getBuf()
	c := &Chunk{Tag: tag, Data: (*p)[:0], Created: time.Now(), buf: p}
	c.ID = NewID()
	return c
}
