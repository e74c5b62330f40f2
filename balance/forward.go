package balance

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/wire"
)

var (
	errAckTimeout  = errors.New("ack timeout")
	errAckMismatch = errors.New("ack for a chunk not in flight on this connection")
	errConnClosed  = errors.New("connection closed")
)

// flight is one attempt to deliver a chunk on one connection.
type flight struct {
	c    *proxy.Chunk
	done func(error) // the breaker's second step; called exactly once
	seq  uint64      // send order on the upstream, to requeue in order
	id   [24]byte    // base64 of the chunk's 16-byte id: the "chunk" option
	sent time.Time
	// writing: the writer owns the chunk's bytes right now; fail leaves it to the
	// writer, which must not lose the race with a re-send elsewhere reusing Data.
	writing bool
	acked   bool // the ack arrived while the writer still held the flight
}

// conn is one live connection to an upstream. The upstream's connection loop runs
// the writer (serve); a reader goroutine reads acks. Chunks routed to the connection
// wait in queue, move to inflight when written, and leave it when acked; fail hands
// everything still held back to the pool, once.
type conn struct {
	u          *upstream
	nc         net.Conn
	dec        *wire.Decoder
	requireAck bool
	ackTimeout time.Duration

	load atomic.Int64  // routed and unresolved; only the dispatcher increments it
	wake chan struct{} // one slot: queue has work
	dead chan struct{} // closed by fail
	// released is closed by fail once every chunk it took is back with the pool.
	released chan struct{}

	mu       sync.Mutex
	closed   bool
	err      error
	queue    []*flight
	inflight map[[24]byte]*flight // by chunk id option

	gotAck atomic.Bool

	// writer scratch, reused
	head []byte
	opt  []byte
	ints []byte
	bufs net.Buffers
}

func newConn(u *upstream, nc net.Conn, dec *wire.Decoder) *conn {
	return &conn{
		u:          u,
		nc:         nc,
		dec:        dec,
		requireAck: u.cfg.AckRequired(),
		ackTimeout: u.pool.cfg.AckTimeout.D(),
		wake:       make(chan struct{}, 1),
		dead:       make(chan struct{}),
		released:   make(chan struct{}),
		inflight:   make(map[[24]byte]*flight, u.pool.cfg.MaxInFlight),
		bufs:       make(net.Buffers, 0, 3),
	}
}

// reserve takes one in-flight slot; called by the dispatcher only.
func (c *conn) reserve(maxInFlight int) bool {
	if c.load.Load() >= int64(maxInFlight) {
		return false
	}
	c.load.Add(1)
	return true
}

// enqueue hands f to the writer. false: the connection is closed; the caller still
// owns f and its slot.
func (c *conn) enqueue(f *flight) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, f)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// serve runs the writer until the connection fails or ctx ends, with a reader beside
// it. It returns whether the connection delivered anything (resets the backoff).
func (c *conn) serve(ctx context.Context) bool {
	var wg sync.WaitGroup
	wg.Go(c.readLoop)
	stop := context.AfterFunc(ctx, func() { c.fail(context.Canceled) })
	c.writeLoop()
	stop()
	c.fail(errConnClosed)
	<-c.released // fail may run on the AfterFunc goroutine: wait for its requeues
	wg.Wait()
	c.dec.Close()
	return c.gotAck.Load()
}

// next moves the next queued flight to inflight and marks it being written.
func (c *conn) next() *flight {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.queue) == 0 {
		return nil
	}
	f := c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = c.queue[:0:0]
	}
	f.writing = true
	f.sent = time.Now()
	if c.requireAck && len(c.inflight) == 0 {
		_ = c.nc.SetReadDeadline(f.sent.Add(c.ackTimeout))
	}
	c.inflight[f.id] = f
	return f
}

func (c *conn) writeLoop() {
	for {
		select {
		case <-c.dead:
			return
		case <-c.wake:
		}
		for {
			f := c.next()
			if f == nil {
				break
			}
			err := c.write(f)
			c.mu.Lock()
			f.writing = false
			closed, early := c.closed, f.acked
			if !closed && !early && (err != nil || !c.requireAck) {
				delete(c.inflight, f.id)
			}
			cerr := c.err
			c.mu.Unlock()
			switch {
			case early:
				// The peer read the whole chunk and acked before write returned.
				c.gotAck.Store(true)
				c.resolveAcked(f, time.Now())
			case closed:
				// fail ran during the write and left this flight to us.
				if err == nil {
					err = cerr
				}
				c.resolveFailed(f, err)
				return
			case err != nil:
				err = fmt.Errorf("write to %s: %w", c.u.cfg.Address, err)
				c.resolveFailed(f, err)
				c.fail(err)
				return
			case !c.requireAck:
				c.gotAck.Store(true)
				c.resolveAcked(f, time.Now())
			}
		}
	}
}

// write sends one chunk as a PackedForward message: head, entries and option with
// writev, so the entries are not copied.
func (c *conn) write(f *flight) error {
	ch := f.c
	data := ch.Data
	if c.u.cfg.TimeAsInteger {
		ints, err := wire.EntriesIntTime(c.ints[:0], data)
		if err != nil {
			c.u.log.Warn("time_as_integer: sending the chunk unchanged", "tag", ch.Tag, "err", err)
		} else {
			c.ints, data = ints, ints
		}
	}
	c.head = wire.AppendPackedForwardHead(c.head[:0], ch.Tag, len(data))
	var id []byte
	if c.requireAck {
		id = f.id[:]
	}
	c.opt = wire.AppendForwardOption(c.opt[:0], ch.Count, id, "")
	if err := c.nc.SetWriteDeadline(f.sent.Add(c.ackTimeout)); err != nil {
		return err
	}
	c.bufs = append(c.bufs[:0], c.head, data, c.opt)
	bufs := c.bufs
	n, err := bufs.WriteTo(c.nc)
	c.u.sentChunks.Add(1)
	c.u.sentEvents.Add(int64(ch.Count))
	c.u.sentBytes.Add(n)
	return err
}

func (c *conn) readLoop() {
	for {
		raw, err := c.dec.NextRaw()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("%s: no ack within %v: %w", c.u.cfg.Address, c.ackTimeout, errAckTimeout)
			} else {
				err = fmt.Errorf("read from %s: %w", c.u.cfg.Address, err)
			}
			c.fail(err)
			return
		}
		if !c.requireAck {
			continue // nothing is expected; keep reading to notice a close
		}
		id, err := wire.ParseAck(raw)
		if err != nil {
			c.fail(fmt.Errorf("read from %s: unexpected reply: %w", c.u.cfg.Address, err))
			return
		}
		now := time.Now()
		var key [24]byte
		copy(key[:], id)
		c.mu.Lock()
		var f *flight
		if len(id) == len(key) {
			f = c.inflight[key]
		}
		early := false
		if f != nil {
			delete(c.inflight, key)
			c.rearmLocked()
			if f.writing {
				f.acked, early = true, true // the writer resolves it when write returns
			}
		}
		c.mu.Unlock()
		if early {
			continue
		}
		if f == nil {
			c.fail(fmt.Errorf("read from %s: ack %q: %w", c.u.cfg.Address, id, errAckMismatch))
			return
		}
		c.gotAck.Store(true)
		c.resolveAcked(f, now)
	}
}

// rearmLocked sets the read deadline to the oldest in-flight chunk's ack deadline, or
// none while nothing waits for an ack (an idle keep-alive connection).
func (c *conn) rearmLocked() {
	var oldest time.Time
	for _, f := range c.inflight {
		if oldest.IsZero() || f.sent.Before(oldest) {
			oldest = f.sent
		}
	}
	if oldest.IsZero() {
		_ = c.nc.SetReadDeadline(time.Time{})
		return
	}
	_ = c.nc.SetReadDeadline(oldest.Add(c.ackTimeout))
}

// fail closes the connection once and hands every chunk it holds back to the pool:
// queued ones were never sent (not the upstream's fault), in-flight ones failed with
// err. A flight being written is left to the writer.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	queued := c.queue
	c.queue = nil
	var sent []*flight
	for _, f := range c.inflight {
		if !f.writing {
			sent = append(sent, f)
		}
	}
	c.inflight = nil
	c.mu.Unlock()
	close(c.dead)
	_ = c.nc.Close()

	if !errors.Is(err, context.Canceled) && !errors.Is(err, errConnClosed) {
		c.u.setErr(err)
		c.u.log.Warn("connection failed; re-queueing its chunks", "err", err,
			"in_flight", len(sent), "queued", len(queued))
	}
	// Requeue puts a chunk at the ring's head: newest first keeps the original order.
	slices.SortFunc(sent, func(a, b *flight) int { return cmp.Compare(b.seq, a.seq) })
	for _, f := range sent {
		c.resolveFailed(f, err)
	}
	for i := len(queued) - 1; i >= 0; i-- {
		c.resolveFailed(queued[i], errNotSent)
	}
	close(c.released)
}

func (c *conn) resolveAcked(f *flight, now time.Time) {
	u := c.u
	rtt := now.Sub(f.sent)
	u.lastRTT.Store(int64(rtt))
	f.done(nil)
	u.noteBreaker()
	u.acks.Add(1)
	if u.det.heartbeat(now, true) {
		u.log.Info("acks back: upstream up")
	}
	c.load.Add(-1)
	u.pool.delivered(f.c)
}

func (c *conn) resolveFailed(f *flight, err error) {
	u := c.u
	if errors.Is(err, errConnClosed) {
		err = errNotSent
	}
	f.done(err)
	u.noteBreaker()
	c.load.Add(-1)
	failed := !errors.Is(err, context.Canceled) && !errors.Is(err, errNotSent)
	u.pool.requeue(f.c, u, failed)
}

// newFlight builds an attempt for chunk ch; the chunk option is base64 of its id, the
// same on every attempt so logs and upstreams can correlate re-sends.
func newFlight(ch *proxy.Chunk, done func(error), seq uint64) *flight {
	f := &flight{c: ch, done: done, seq: seq}
	base64.StdEncoding.Encode(f.id[:], ch.ID[:])
	return f
}
