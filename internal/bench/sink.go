package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/wire"
)

// Sink is a Forward server on 127.0.0.1 that records the sequence numbers of what it
// receives. An event counts as received when the sink acked its frame (the ack was
// written without error), or on arrival for frames that asked for no ack. The fault
// knobs may be changed at any time; they apply from the next frame on.
type Sink struct {
	Tracker *Tracker

	addr string

	noAck      atomic.Bool
	blackHole  atomic.Bool
	ackDelay   atomic.Int64  // ns
	closeAfter atomic.Int64  // frames per connection; 0 = never
	resetProb  atomic.Uint64 // float64 bits

	// Counters.
	Frames  atomic.Int64 // frames decoded
	Bytes   atomic.Int64 // frame bytes decoded
	Conns   atomic.Int64 // connections accepted
	Acked   atomic.Int64 // acks written
	Unacked atomic.Int64 // events in frames deliberately not acked (no-ack, close, reset)
	Errors  atomic.Int64 // decode errors
	Resets  atomic.Int64
	LastErr atomic.Value // string
	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	closed  bool
}

// NewSink starts a sink on 127.0.0.1:0 with a fresh tracker.
func NewSink() (*Sink, error) { return NewSinkTracker(NewTracker()) }

// NewSinkTracker starts a sink on 127.0.0.1:0 recording into t (shared by several sinks).
func NewSinkTracker(t *Tracker) (*Sink, error) {
	s := &Sink{Tracker: t, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	s.start(ln)
	return s, nil
}

// Addr is host:port, stable across Kill and Restart.
func (s *Sink) Addr() string { return s.addr }

// SetNoAck makes the sink accept frames and never ack them (the events do not count).
func (s *Sink) SetNoAck(v bool) { s.noAck.Store(v) }

// SetBlackHole makes the sink read and discard every byte: no frames, no acks, no close.
func (s *Sink) SetBlackHole(v bool) { s.blackHole.Store(v) }

// SetAckDelay delays every ack by d.
func (s *Sink) SetAckDelay(d time.Duration) { s.ackDelay.Store(int64(d)) }

// SetCloseAfter closes each connection after it delivered n frames (the nth is not
// acked); 0 turns it off.
func (s *Sink) SetCloseAfter(n int) { s.closeAfter.Store(int64(n)) }

// SetResetProb resets (RST) a connection after a frame with probability p, before acking it.
func (s *Sink) SetResetProb(p float64) { s.resetProb.Store(math.Float64bits(p)) }

func (s *Sink) start(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed || s.ln != ln {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.wg.Add(1)
			s.mu.Unlock()
			s.Conns.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
}

// Kill stops listening and resets every connection, as a crashed upstream would.
func (s *Sink) Kill() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		reset(c)
	}
}

// Restart listens again on the same address.
func (s *Sink) Restart() error {
	var err error
	for range 100 {
		var ln net.Listener
		ln, err = net.Listen("tcp", s.addr)
		if err == nil {
			s.start(ln)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("sink restart %s: %w", s.addr, err)
}

// Close stops the sink and waits for its goroutines.
func (s *Sink) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.Kill()
	s.wg.Wait()
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

type pendingAck struct {
	due   time.Time
	chunk []byte
	keys  []Key
	unk   int
}

func (s *Sink) serve(c net.Conn) {
	defer c.Close()
	acks := make(chan pendingAck, 256)
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		var buf []byte
		failed := false
		for a := range acks {
			if failed {
				continue
			}
			if d := time.Until(a.due); d > 0 {
				time.Sleep(d)
			}
			buf = wire.AppendAck(buf[:0], a.chunk)
			if _, err := c.Write(buf); err != nil {
				failed = true
				continue
			}
			s.Acked.Add(1)
			s.Tracker.Add(a.keys, a.unk)
		}
	}()
	defer func() {
		close(acks)
		<-ackDone
	}()

	dec := wire.NewDecoder(c, wire.Limits{})
	defer dec.Close()
	var f wire.Frame
	frames := int64(0)
	for {
		if s.blackHole.Load() {
			io.Copy(io.Discard, c)
			return
		}
		if err := dec.Next(&f); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				var ne net.Error
				if !errors.As(err, &ne) {
					s.Errors.Add(1)
					s.LastErr.Store(err.Error())
				}
			}
			return
		}
		if f.Mode == 0 {
			continue // heartbeat
		}
		frames++
		s.Frames.Add(1)
		s.Bytes.Add(int64(f.Bytes))
		if s.blackHole.Load() {
			io.Copy(io.Discard, c)
			return
		}
		if n := s.closeAfter.Load(); n > 0 && frames >= n {
			s.Unacked.Add(int64(f.Count))
			return
		}
		if p := math.Float64frombits(s.resetProb.Load()); p > 0 && rand.Float64() < p {
			s.Unacked.Add(int64(f.Count))
			s.Resets.Add(1)
			reset(c)
			return
		}
		keys, unk, err := ParseEntries(make([]Key, 0, f.Count), f.Tag, f.Entries)
		if err != nil {
			s.Errors.Add(1)
			s.LastErr.Store(err.Error())
			return
		}
		if f.Chunk == nil {
			s.Tracker.Add(keys, unk)
			continue
		}
		if s.noAck.Load() {
			s.Unacked.Add(int64(f.Count))
			continue
		}
		acks <- pendingAck{due: time.Now().Add(time.Duration(s.ackDelay.Load())), chunk: append([]byte(nil), f.Chunk...), keys: keys, unk: unk}
	}
}
