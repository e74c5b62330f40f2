package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/tinylib/msgp/msgp"

	"github.com/fwdmux/fwdmux/wire"
)

// Mode is how a ForwardClient frames its events.
type Mode int

const (
	Message Mode = iota + 1
	Forward
	PackedForward
	CompressedPackedForward
)

func (m Mode) String() string {
	switch m {
	case Message:
		return "message"
	case Forward:
		return "forward"
	case PackedForward:
		return "packed_forward"
	case CompressedPackedForward:
		return "compressed_packed_forward"
	}
	return "unknown"
}

// ForwardClientConfig configures a raw Forward client.
type ForwardClientConfig struct {
	Addr string
	// Tag of every frame (default "bench.<src>").
	Tag string
	// Src names the stream; sequence numbers start at 0.
	Src string
	// Mode (default PackedForward).
	Mode Mode
	// EventsPerFrame (default 100; Message mode always sends one).
	EventsPerFrame int
	// RecordBytes pads each record to about this size (default 100).
	RecordBytes int
	// Ack sets a chunk id on every frame, waits for the ack, and resends every unacked
	// frame on a new connection after an error or AckTimeout: at-least-once.
	Ack bool
	// Window is the number of frames in flight awaiting acks (default 8).
	Window int
	// AckTimeout (default 30s).
	AckTimeout time.Duration
	// RetryFor bounds how long the client keeps reconnecting (default: until ctx ends).
	RetryFor time.Duration
	// SharedKey runs the HELO/PING/PONG handshake on every connection.
	SharedKey string
}

// ForwardClient sends sequence-numbered events over the Forward protocol.
type ForwardClient struct {
	cfg ForwardClientConfig
	seq int64

	// Sent counts events handed to the connection (written; with Ack, acked is Acked).
	Written    atomic.Int64
	Acked      atomic.Int64
	Reconnects atomic.Int64
	Resent     atomic.Int64
	// LastErr is the last connect or handshake error.
	LastErr error

	conn    net.Conn
	ackc    chan []byte
	errc    chan error
	pending []frame
	entries []byte
	gzbuf   bytes.Buffer
	gz      *gzip.Writer
	pad     string
}

type frame struct {
	chunk  string
	data   []byte
	events int
}

// NewForwardClient returns a client; it connects on the first Send.
func NewForwardClient(cfg ForwardClientConfig) *ForwardClient {
	if cfg.Mode == 0 {
		cfg.Mode = PackedForward
	}
	if cfg.EventsPerFrame <= 0 {
		cfg.EventsPerFrame = 100
	}
	if cfg.Mode == Message {
		cfg.EventsPerFrame = 1
	}
	if cfg.RecordBytes <= 0 {
		cfg.RecordBytes = 100
	}
	if cfg.Tag == "" {
		cfg.Tag = "bench." + cfg.Src
	}
	if cfg.Window <= 0 {
		cfg.Window = 8
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	padLen := cfg.RecordBytes - len(cfg.Src) - 30
	if padLen < 0 {
		padLen = 0
	}
	return &ForwardClient{cfg: cfg, pad: strings.Repeat("x", padLen)}
}

// Seq is the next sequence number: the number of events generated so far.
func (c *ForwardClient) Seq() int64 { return c.seq }

// Src is the stream name.
func (c *ForwardClient) Src() string { return c.cfg.Src }

// AppendRecord appends the msgpack record {"src", "seq", "msg"} of event seq.
func AppendRecord(dst []byte, src string, seq int64, pad string) []byte {
	dst = msgp.AppendMapHeader(dst, 3)
	dst = msgp.AppendString(dst, "src")
	dst = msgp.AppendString(dst, src)
	dst = msgp.AppendString(dst, "seq")
	dst = msgp.AppendInt64(dst, seq)
	dst = msgp.AppendString(dst, "msg")
	return msgp.AppendString(dst, pad)
}

func (c *ForwardClient) buildFrame() frame {
	n := c.cfg.EventsPerFrame
	now := time.Now()
	var chunk string
	if c.cfg.Ack {
		var id [16]byte
		rand.Read(id[:])
		chunk = base64.StdEncoding.EncodeToString(id[:])
	}
	c.entries = c.entries[:0]
	var tm [10]byte
	t := wire.AppendTime(tm[:0], now)
	var rec []byte
	for i := 0; i < n; i++ {
		rec = AppendRecord(rec[:0], c.cfg.Src, c.seq, c.pad)
		c.seq++
		if c.cfg.Mode == Message {
			return frame{chunk: chunk, events: 1, data: wire.AppendMessage(nil, c.cfg.Tag, t, rec, []byte(chunk))}
		}
		c.entries = wire.AppendEntry(c.entries, t, rec)
	}
	var data []byte
	switch c.cfg.Mode {
	case Forward:
		data = wire.AppendForward(nil, c.cfg.Tag, c.entries, n, []byte(chunk))
	case PackedForward:
		data = wire.AppendPackedForward(nil, c.cfg.Tag, c.entries, n, []byte(chunk))
	case CompressedPackedForward:
		c.gzbuf.Reset()
		if c.gz == nil {
			c.gz = gzip.NewWriter(&c.gzbuf)
		} else {
			c.gz.Reset(&c.gzbuf)
		}
		c.gz.Write(c.entries)
		c.gz.Close()
		data = wire.AppendCompressedPackedForward(nil, c.cfg.Tag, c.gzbuf.Bytes(), n, []byte(chunk))
	}
	return frame{chunk: chunk, events: n, data: data}
}

func (c *ForwardClient) connect(ctx context.Context) error {
	deadline := time.Time{}
	if c.cfg.RetryFor > 0 {
		deadline = time.Now().Add(c.cfg.RetryFor)
	}
	wait := 20 * time.Millisecond
	for {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
		if err == nil {
			dec := wire.NewDecoder(conn, wire.Limits{})
			if c.cfg.SharedKey != "" {
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = wire.ClientHandshake(dec, conn, wire.ClientAuth{Hostname: "bench-client", SharedKey: c.cfg.SharedKey})
				conn.SetDeadline(time.Time{})
			}
			if err == nil {
				c.conn = conn
				c.ackc = make(chan []byte, c.cfg.Window+1)
				c.errc = make(chan error, 1)
				if c.cfg.Ack {
					go readAcks(dec, c.ackc, c.errc)
				} else {
					dec.Close()
				}
				return nil
			}
			dec.Close()
			conn.Close()
			c.LastErr = err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("connect %s: %w", c.cfg.Addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait < time.Second {
			wait *= 2
		}
	}
}

func readAcks(dec *wire.Decoder, ackc chan<- []byte, errc chan<- error) {
	defer dec.Close()
	for {
		raw, err := dec.NextRaw()
		if err != nil {
			errc <- err
			close(ackc)
			return
		}
		id, err := wire.ParseAck(raw)
		if err != nil {
			errc <- err
			close(ackc)
			return
		}
		ackc <- append([]byte(nil), id...)
	}
}

func (c *ForwardClient) drop() {
	if c.conn != nil {
		c.conn.Close()
		if c.cfg.Ack {
			for range c.ackc { // until the reader exits
			}
		}
		c.conn = nil
		c.Reconnects.Add(1)
	}
}

// reconnect opens a new connection and resends every unacked frame.
func (c *ForwardClient) reconnect(ctx context.Context) error {
	c.drop()
	for {
		if err := c.connect(ctx); err != nil {
			return err
		}
		ok := true
		for _, f := range c.pending {
			c.conn.SetWriteDeadline(time.Now().Add(c.cfg.AckTimeout))
			if _, err := c.conn.Write(f.data); err != nil {
				ok = false
				break
			}
			c.Resent.Add(int64(f.events))
		}
		if ok {
			return nil
		}
		c.drop()
	}
}

// Send generates n more events and sends them. With Ack it returns once all are acked
// (resending across reconnects); otherwise once all are written.
func (c *ForwardClient) Send(ctx context.Context, n int64) error {
	return c.SendRate(ctx, n, 0)
}

// SendRate is Send paced to about rate events/s (0: as fast as possible).
func (c *ForwardClient) SendRate(ctx context.Context, n int64, rate float64) error {
	if c.conn == nil {
		if err := c.reconnect(ctx); err != nil {
			return err
		}
	}
	start := time.Now()
	end := c.seq + n
	base := c.seq
	for c.seq < end || len(c.pending) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.seq < end && (!c.cfg.Ack || len(c.pending) < c.cfg.Window) {
			if rate > 0 {
				due := start.Add(time.Duration(float64(c.seq-base) / rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(d):
					}
				}
			}
			saved := c.cfg.EventsPerFrame
			if rem := end - c.seq; rem < int64(saved) {
				c.cfg.EventsPerFrame = int(rem)
			}
			f := c.buildFrame()
			c.cfg.EventsPerFrame = saved
			if c.cfg.Ack {
				c.pending = append(c.pending, f)
			}
			c.conn.SetWriteDeadline(time.Now().Add(c.cfg.AckTimeout))
			if _, err := c.conn.Write(f.data); err != nil {
				if !c.cfg.Ack {
					// Without acks a failed write may lose this frame; count it as written.
					c.Written.Add(int64(f.events))
				}
				if err := c.reconnect(ctx); err != nil {
					return err
				}
				continue
			}
			c.Written.Add(int64(f.events))
			continue
		}
		if !c.cfg.Ack {
			break
		}
		// Window full or all sent: wait for an ack.
		t := time.NewTimer(c.cfg.AckTimeout)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case id, ok := <-c.ackc:
			t.Stop()
			if !ok {
				if err := c.reconnect(ctx); err != nil {
					return err
				}
				continue
			}
			c.ack(string(id))
		case <-t.C:
			if err := c.reconnect(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *ForwardClient) ack(id string) {
	for i, f := range c.pending {
		if f.chunk == id {
			c.Acked.Add(int64(f.events))
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return
		}
	}
}

// Close closes the connection.
func (c *ForwardClient) Close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	if c.cfg.Ack {
		for range c.ackc {
		}
	}
	c.conn = nil
	return err
}

// Pending is the number of frames sent and not acked.
func (c *ForwardClient) Pending() int { return len(c.pending) }
