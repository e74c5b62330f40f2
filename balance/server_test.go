package balance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/wire"
	"github.com/tinylib/msgp/msgp"
)

// testServer is a real Forward server on 127.0.0.1 built on wire, with knobs to
// misbehave. It records the sequence numbers of the entries of every frame it acks
// (or, with require_ack off, every frame it reads).
type testServer struct {
	t    testing.TB
	addr string
	name string

	sharedKey string
	tlsConf   *tls.Config
	light     bool // benchmark sink: frame with NextRaw, ack from the option, no entry walk

	noAck      atomic.Bool
	ackDelay   atomic.Int64 // nanoseconds
	closeAfter atomic.Int64 // close each connection after this many frames (0: never)
	wrongAck   atomic.Bool  // ack every frame with an id that was never sent

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	seqs    map[int64]int
	frames  int // acked (recorded) frames
	chunkOp []bool
	intTime bool // every recorded entry had an integer time
	wg      sync.WaitGroup
}

type serverOpt func(*testServer)

func withSharedKey(k string) serverOpt { return func(s *testServer) { s.sharedKey = k } }
func withTLS(c *tls.Config) serverOpt  { return func(s *testServer) { s.tlsConf = c } }
func withLight() serverOpt             { return func(s *testServer) { s.light = true } }
func withName(n string) serverOpt      { return func(s *testServer) { s.name = n } }
func withAckDelay(d time.Duration) serverOpt {
	return func(s *testServer) { s.ackDelay.Store(int64(d)) }
}

func newTestServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	s := &testServer{t: t, conns: map[net.Conn]struct{}{}, seqs: map[int64]int{}, intTime: true}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.start(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) start(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.ln != ln {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c) })
		}
	})
}

// kill closes the listener and every connection: connects are refused from now on.
func (s *testServer) kill() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// restart listens again on the same address.
func (s *testServer) restart() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("restart %s: %v", s.addr, err)
	}
	s.start(ln)
}

func (s *testServer) stop() {
	s.kill()
	s.wg.Wait()
}

func (s *testServer) serve(c net.Conn) {
	rawConn := c
	defer func() {
		rawConn.Close()
		s.mu.Lock()
		delete(s.conns, rawConn)
		s.mu.Unlock()
	}()
	if s.tlsConf != nil {
		tc := tls.Server(c, s.tlsConf)
		if err := tc.Handshake(); err != nil {
			return
		}
		c = tc
	}
	dec := wire.NewDecoder(c, wire.Limits{})
	defer dec.Close()
	if s.sharedKey != "" {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := wire.ServerHandshake(dec, c, wire.ServerAuth{Hostname: "test-server", SharedKey: s.sharedKey}); err != nil {
			return
		}
		_ = c.SetDeadline(time.Time{})
	}
	var wmu sync.Mutex
	var late sync.WaitGroup
	defer late.Wait()
	var ackBuf []byte
	n := 0
	var f wire.Frame
	for {
		var chunk []byte
		var seqs []int64
		intTime := true
		if s.light {
			raw, err := dec.NextRaw()
			if err != nil {
				return
			}
			chunk = lightChunk(raw)
		} else {
			if err := dec.Next(&f); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
					s.t.Logf("%s: decode: %v", s.name, err)
				}
				return
			}
			seqs, intTime = entrySeqs(s.t, f.Entries)
			if f.Chunk != nil {
				chunk = append([]byte(nil), f.Chunk...)
			}
		}
		n++
		if ca := s.closeAfter.Load(); ca > 0 && int64(n) >= ca {
			return
		}
		if s.noAck.Load() {
			continue
		}
		record := func() {
			s.mu.Lock()
			for _, q := range seqs {
				s.seqs[q]++
			}
			s.frames++
			s.chunkOp = append(s.chunkOp, chunk != nil)
			s.intTime = s.intTime && intTime
			s.mu.Unlock()
		}
		if chunk == nil {
			record()
			continue
		}
		// Record before acking: once the ack is out the client may finish the chunk
		// and the test may look.
		if d := time.Duration(s.ackDelay.Load()); d > 0 {
			late.Go(func() {
				time.Sleep(d)
				wmu.Lock()
				defer wmu.Unlock()
				record()
				_, _ = c.Write(wire.AppendAck(nil, chunk))
			})
			continue
		}
		if s.wrongAck.Load() {
			chunk = []byte("bm90LXRoZS1jaHVuay1pZA==")
		} else {
			record()
		}
		wmu.Lock()
		ackBuf = wire.AppendAck(ackBuf[:0], chunk)
		_, err := c.Write(ackBuf)
		wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// lightChunk returns the chunk option of a PackedForward frame without walking its
// entries.
func lightChunk(raw []byte) []byte {
	_, rest, err := msgp.ReadArrayHeaderBytes(raw)
	if err != nil {
		return nil
	}
	if rest, err = msgp.Skip(rest); err != nil { // tag
		return nil
	}
	if rest, err = msgp.Skip(rest); err != nil { // stream
		return nil
	}
	n, rest, err := msgp.ReadMapHeaderBytes(rest)
	if err != nil {
		return nil
	}
	for range n {
		var k, v []byte
		if k, rest, err = msgp.ReadStringZC(rest); err != nil {
			return nil
		}
		if string(k) == "chunk" {
			v, _, err = msgp.ReadStringZC(rest)
			if err != nil {
				return nil
			}
			return v
		}
		if rest, err = msgp.Skip(rest); err != nil {
			return nil
		}
	}
	return nil
}

// entrySeqs reads the "seq" of each [time, record] entry.
func entrySeqs(t testing.TB, entries []byte) (seqs []int64, intTime bool) {
	intTime = true
	rest := entries
	for len(rest) > 0 {
		_, body, err := msgp.ReadArrayHeaderBytes(rest)
		if err != nil {
			t.Errorf("entry: %v", err)
			return
		}
		if ty := msgp.NextType(body); ty != msgp.IntType && ty != msgp.UintType {
			intTime = false
		}
		if body, err = msgp.Skip(body); err != nil {
			t.Errorf("time: %v", err)
			return
		}
		n, body, err := msgp.ReadMapHeaderBytes(body)
		if err != nil {
			t.Errorf("record: %v", err)
			return
		}
		for range n {
			var k []byte
			k, body, err = msgp.ReadStringZC(body)
			if err != nil {
				t.Errorf("key: %v", err)
				return
			}
			if string(k) == "seq" {
				var v int64
				v, body, err = msgp.ReadInt64Bytes(body)
				seqs = append(seqs, v)
			} else {
				body, err = msgp.Skip(body)
			}
			if err != nil {
				t.Errorf("value: %v", err)
				return
			}
		}
		rest = body
	}
	return seqs, intTime
}

func (s *testServer) received() (seqs map[int64]int, frames int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[int64]int, len(s.seqs))
	for k, v := range s.seqs {
		m[k] = v
	}
	return m, s.frames
}

func (s *testServer) frameCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames
}

// --- helpers ---------------------------------------------------------------------

// makeEntries builds n entries with sequence numbers from seq, each about size bytes.
func makeEntries(seq int64, n, size int) []byte {
	pad := strings.Repeat("x", max(size-40, 1))
	var b []byte
	for i := range n {
		b = append(b, 0x92)
		b = wire.AppendEventTime(b, 1700000000, uint32(i))
		b = msgp.AppendMapHeader(b, 2)
		b = msgp.AppendString(b, "seq")
		b = msgp.AppendInt64(b, seq+int64(i))
		b = msgp.AppendString(b, "msg")
		b = msgp.AppendString(b, pad)
	}
	return b
}

// producer puts chunks of sequence-numbered events into a ring and counts Done.
type producer struct {
	ring  *proxy.Ring
	next  int64
	sent  int64
	acked atomic.Int64
	dones atomic.Int64
}

func (pr *producer) put(t testing.TB, ctx context.Context, tag string, chunks, perChunk int) {
	t.Helper()
	for range chunks {
		c := proxy.NewChunk(tag, makeEntries(pr.next, perChunk, 60), perChunk)
		c.OnDone(func(o proxy.Outcome) {
			pr.dones.Add(1)
			if o == proxy.Acked {
				pr.acked.Add(1)
			}
		})
		if err := pr.ring.Put(ctx, c); err != nil {
			t.Errorf("put: %v", err)
			return
		}
		pr.next += int64(perChunk)
		pr.sent += int64(perChunk)
	}
}

// checkDelivered asserts that every sequence number below total reached one of the
// servers, and reports duplicates.
func checkDelivered(t testing.TB, total int64, servers ...*testServer) (dups int) {
	t.Helper()
	all := map[int64]int{}
	for _, s := range servers {
		m, _ := s.received()
		for k, v := range m {
			all[k] += v
		}
	}
	missing := 0
	for i := range total {
		switch n := all[i]; {
		case n == 0:
			missing++
		case n > 1:
			dups += n - 1
		}
	}
	if missing > 0 {
		t.Errorf("zero loss violated: %d of %d events missing", missing, total)
	}
	if dups > 0 {
		t.Logf("%d duplicate events (at-least-once re-sends)", dups)
	}
	return dups
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() || os.Getenv("BALANCE_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fastConfig makes failures visible in test time.
func fastConfig() Config {
	return Config{
		AckTimeout:         conf.Duration(2 * time.Second),
		ConnectTimeout:     conf.Duration(time.Second),
		MaxInFlight:        8,
		BreakerFailures:    3,
		BreakerOpenTimeout: conf.Duration(200 * time.Millisecond),
		ReconnectMin:       conf.Duration(10 * time.Millisecond),
		ReconnectMax:       conf.Duration(100 * time.Millisecond),
	}
}

// running starts p.Run and returns a stop function that cancels it and returns its
// error; the test fails if Run does not return.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func startPool(t testing.TB, p *Pool) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t testing.TB) error {
	r.cancel()
	return r.wait(t, 10*time.Second)
}

// wait returns Run's result (once; later calls return nil).
func (r *running) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
		return nil
	}
}

func upstreamFor(s *testServer, opts ...func(*UpstreamConfig)) UpstreamConfig {
	u := UpstreamConfig{ID: s.name, Address: s.addr, HeartbeatInterval: conf.Duration(50 * time.Millisecond)}
	if u.ID == "" {
		u.ID = s.addr
	}
	for _, o := range opts {
		o(&u)
	}
	return u
}

func mustAdd(t testing.TB, p *Pool, u UpstreamConfig) {
	t.Helper()
	if _, err := p.Add(u); err != nil {
		t.Fatalf("add %s: %v", u.ID, err)
	}
}

func allConnected(p *Pool, ids ...string) func() bool {
	return func() bool {
		for _, id := range ids {
			st, ok := p.Get(id)
			if !ok || !st.Connected {
				return false
			}
		}
		return true
	}
}
