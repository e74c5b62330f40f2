package proxy

import (
	"context"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
)

// Sink takes finished chunks. *Ring is the Sink of every producer in fwdmux.
type Sink interface {
	Put(ctx context.Context, c *Chunk) error
}

// BatchConfig sets when a producer's partial chunk is handed on.
type BatchConfig struct {
	// ChunkBytes flushes a tag's chunk when it reaches this size (default 1 MiB).
	ChunkBytes int `toml:"chunk_bytes" json:"chunk_bytes"`
	// ChunkAge is the backstop for a chunk whose producer keeps receiving but never
	// drains (default 100ms). Producers flush the moment their input is drained, so a
	// lone synchronous client never waits for this.
	ChunkAge conf.Duration `toml:"chunk_age" json:"chunk_age"`
}

// WithDefaults fills zero fields.
func (c BatchConfig) WithDefaults() BatchConfig {
	if c.ChunkBytes <= 0 {
		c.ChunkBytes = 1 << 20
	}
	if c.ChunkAge <= 0 {
		c.ChunkAge = conf.Duration(100 * time.Millisecond)
	}
	return c
}

// Validate names the first bad field.
func (c BatchConfig) Validate() error {
	if c.ChunkBytes < 256 || c.ChunkBytes > 64<<20 {
		return &conf.FieldError{Field: "chunk_bytes", Reason: "must be between 256 and 67108864"}
	}
	if c.ChunkAge.D() < time.Millisecond {
		return &conf.FieldError{Field: "chunk_age", Reason: "must be at least 1ms"}
	}
	return nil
}

type pending struct {
	c     *Chunk
	early []func() // run once the chunk is in the sink (ack = "received")
}

// Batcher collects one producer's entries into per-tag chunks. It is owned by one
// goroutine (a connection, a tailer) and not safe for concurrent use.
type Batcher struct {
	sink    Sink
	cfg     BatchConfig
	tags    map[string]*pending
	oldest  time.Time
	entries int
}

// NewBatcher returns a batcher that puts chunks into sink.
func NewBatcher(sink Sink, cfg BatchConfig) *Batcher {
	return &Batcher{sink: sink, cfg: cfg.WithDefaults(), tags: make(map[string]*pending)}
}

// Add appends count raw entries of tag. done, if not nil, runs when the chunk holding
// them is finished; early, if not nil, runs as soon as that chunk is in the sink. A
// full chunk is put at once (which may block: backpressure). On error the entries
// added since the last successful put are still owned by the batcher.
func (b *Batcher) Add(ctx context.Context, tag []byte, entries []byte, count int, done func(Outcome), early func()) error {
	p := b.tags[string(tag)]
	if p != nil && p.c.Count > 0 && (len(p.c.Data)+len(entries) > b.cfg.ChunkBytes ||
		len(p.c.Data) >= congestedChunk && b.congested()) {
		if err := b.put(ctx, p); err != nil {
			return err
		}
		delete(b.tags, p.c.Tag)
		p = nil
	}
	if p == nil {
		p = &pending{c: NewPooledChunk(string(tag))}
		b.tags[p.c.Tag] = p
		if len(b.tags) == 1 {
			b.oldest = p.c.Created
		}
	}
	if need := len(p.c.Data) + len(entries); need > cap(p.c.Data) {
		// Grow to at most the chunk size: append's doubling would leave up to half of
		// a 1 MiB buffer unused in every full chunk.
		grown := make([]byte, len(p.c.Data), max(min(2*cap(p.c.Data), b.cfg.ChunkBytes), need))
		copy(grown, p.c.Data)
		p.c.Data = grown
	}
	p.c.Data = append(p.c.Data, entries...)
	p.c.Count += count
	b.entries += count
	if done != nil {
		p.c.OnDone(done)
	}
	if early != nil {
		p.early = append(p.early, early)
	}
	if len(p.c.Data) >= b.cfg.ChunkBytes || len(p.c.Data) >= congestedChunk && b.congested() {
		if err := b.put(ctx, p); err != nil {
			return err
		}
		delete(b.tags, p.c.Tag)
	}
	return nil
}

func (b *Batcher) put(ctx context.Context, p *pending) error {
	n := p.c.Count
	if err := b.sink.Put(ctx, p.c); err != nil {
		return err
	}
	b.entries -= n
	for _, f := range p.early {
		f()
	}
	return nil
}

// congestedChunk is the chunk size while the sink is congested (see Ring.Congested).
const congestedChunk = 64 << 10

func (b *Batcher) congested() bool {
	c, ok := b.sink.(interface{ Congested() bool })
	return ok && c.Congested()
}

// Pending reports whether entries wait in a partial chunk.
func (b *Batcher) Pending() bool { return len(b.tags) > 0 }

// PendingEvents is the number of events not yet handed to the sink.
func (b *Batcher) PendingEvents() int { return b.entries }

// Deadline is when the oldest partial chunk reaches ChunkAge (zero when none).
func (b *Batcher) Deadline() time.Time {
	if len(b.tags) == 0 {
		return time.Time{}
	}
	return b.oldest.Add(b.cfg.ChunkAge.D())
}

// Flush puts every partial chunk. On error the chunks not yet put stay pending.
func (b *Batcher) Flush(ctx context.Context) error {
	for tag, p := range b.tags {
		if err := b.put(ctx, p); err != nil {
			return err
		}
		delete(b.tags, tag)
	}
	return nil
}

// Abandon discards partial chunks that could not be put (shutdown). Their done
// callbacks never run, so forward clients get no ack and tailers keep their position.
func (b *Batcher) Abandon() int {
	n := b.entries
	for tag, p := range b.tags {
		p.c.callbacks = nil
		delete(b.tags, tag)
	}
	b.entries = 0
	return n
}
