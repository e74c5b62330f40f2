package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/wire"
	"github.com/tinylib/msgp/msgp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// eventually polls cond until it holds, failing the test after 20 s (generous: the
// package runs under -race on two cores). Call it from the test goroutine.
func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

// ---- events ----

// event is one decoded [time, record] entry as the output saw it.
type event struct {
	Tag    string
	Sec    int64
	Nsec   uint32
	Record map[string]any
	Raw    []byte // the entry's bytes in the chunk
}

// key identifies an event in a delivery test: every record carries "src" and "seq".
type key struct {
	Src string
	Seq int64
}

func (e event) key() key {
	src, _ := e.Record["src"].(string)
	return key{src, asInt(e.Record["seq"])}
}

// asInt reads any msgpack integer decoded by msgp.ReadIntfBytes (or a JSON number
// converted by wire) as an int64; -1 when v is not an integer.
func asInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case uint64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

// decodeEntries splits a chunk's data into events, keeping each entry's raw bytes.
func decodeEntries(tag string, data []byte) ([]event, error) {
	var out []event
	rest := data
	for len(rest) > 0 {
		start := rest
		n, body, err := msgp.ReadArrayHeaderBytes(rest)
		if err != nil || n != 2 {
			return nil, fmt.Errorf("entry %d: not a 2-array (%v)", len(out), err)
		}
		after, err := msgp.Skip(body)
		if err != nil {
			return nil, fmt.Errorf("entry %d time: %w", len(out), err)
		}
		sec, nsec, ok := wire.EventTimeOf(body[:len(body)-len(after)])
		if !ok {
			return nil, fmt.Errorf("entry %d: bad time % x", len(out), body[:len(body)-len(after)])
		}
		v, end, err := msgp.ReadIntfBytes(after)
		if err != nil {
			return nil, fmt.Errorf("entry %d record: %w", len(out), err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("entry %d: record is %T", len(out), v)
		}
		raw := start[:len(start)-len(end)]
		out = append(out, event{Tag: tag, Sec: sec, Nsec: nsec, Record: m, Raw: bytes.Clone(raw)})
		rest = end
	}
	return out, nil
}

// checkSeqs checks that src delivered exactly seqs [0, n): it fails on a missing or an
// unknown sequence number and returns the number of duplicates, which it logs.
func checkSeqs(t testing.TB, events []event, src string, n int) (dups int) {
	t.Helper()
	seen := make([]int, n)
	for _, e := range events {
		k := e.key()
		if k.Src != src {
			continue
		}
		if k.Seq < 0 || k.Seq >= int64(n) {
			t.Errorf("%s: unexpected seq %d", src, k.Seq)
			continue
		}
		seen[k.Seq]++
	}
	var missing []int
	for i, c := range seen {
		if c == 0 {
			missing = append(missing, i)
		}
		if c > 1 {
			dups += c - 1
		}
	}
	if len(missing) > 0 {
		if len(missing) > 10 {
			missing = append(missing[:10:10], -1)
		}
		t.Errorf("%s: %d of %d events missing (first: %v)", src, countZero(seen), n, missing)
	}
	if dups > 0 {
		t.Logf("%s: %d duplicate events", src, dups)
	}
	return dups
}

func countZero(s []int) int {
	n := 0
	for _, c := range s {
		if c == 0 {
			n++
		}
	}
	return n
}

// ---- msgpack builders ----

// record builds {"src": src, "seq": seq, "msg": "..."}; the message pads the record to
// about size bytes and is derived from src and seq, so a record can be rebuilt.
func record(src string, seq, size int) []byte {
	b := msgp.AppendMapHeader(nil, 3)
	b = msgp.AppendString(b, "src")
	b = msgp.AppendString(b, src)
	b = msgp.AppendString(b, "seq")
	b = msgp.AppendInt(b, seq)
	b = msgp.AppendString(b, "msg")
	return msgp.AppendString(b, message(src, seq, size-len(b)-5))
}

func message(src string, seq, size int) string {
	s := fmt.Sprintf("%s#%d ", src, seq)
	if size > len(s) {
		s += strings.Repeat(string(rune('a'+seq%26)), size-len(s))
	}
	return s
}

// eventTime is the time the tests give event seq: distinct seconds and nanoseconds.
func eventTime(seq int) (sec, nsec uint32) {
	return 1_700_000_000 + uint32(seq), uint32(seq*1000 + 7)
}

// entry is the raw [EventTime, record] entry for (src, seq).
func entry(src string, seq, size int) []byte {
	sec, nsec := eventTime(seq)
	return wire.AppendEntry(nil, wire.AppendEventTime(nil, sec, nsec), record(src, seq, size))
}

// entries concatenates the entries for seqs [from, from+n).
func entries(src string, from, n, size int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		b = append(b, entry(src, i, size)...)
	}
	return b
}

// messageFrame is a Message-mode frame [tag, EventTime, record, {chunk}?].
func messageFrame(tag, src string, seq, size int, chunk []byte) []byte {
	sec, nsec := eventTime(seq)
	return wire.AppendMessage(nil, tag, wire.AppendEventTime(nil, sec, nsec), record(src, seq, size), chunk)
}

// checkRaw verifies that every event of src is byte for byte the entry the test built.
func checkRaw(t testing.TB, events []event, src string, size int) {
	t.Helper()
	bad := 0
	for _, e := range events {
		k := e.key()
		if k.Src != src {
			continue
		}
		if want := entry(src, int(k.Seq), size); !bytes.Equal(e.Raw, want) {
			bad++
			if bad <= 3 {
				t.Errorf("%s seq %d: entry differs from what was sent\n got % x\nwant % x", src, k.Seq, e.Raw, want)
			}
		}
	}
}

// ---- test output ----

// testOutput plays the balancer: it takes chunks from the ring, records their events
// and finishes them with Done(Acked), unless held, in which case it keeps them until
// Release.
type testOutput struct {
	t    testing.TB
	ring *Ring

	mu     sync.Mutex
	events []event
	chunks []*Chunk // every chunk taken, in order (their Data is gone after Done)
	held   []*Chunk
	hold   bool
	tags   map[string]int // chunks per tag
	errs   []error

	stop context.CancelFunc
	done chan struct{}
}

// startOutput runs a test output on ring until the test ends.
func startOutput(t testing.TB, ring *Ring) *testOutput {
	ctx, cancel := context.WithCancel(context.Background())
	o := &testOutput{t: t, ring: ring, stop: cancel, done: make(chan struct{}), tags: map[string]int{}}
	go o.run(ctx)
	t.Cleanup(o.close)
	return o
}

func (o *testOutput) run(ctx context.Context) {
	defer close(o.done)
	for {
		c, err := o.ring.Get(ctx)
		if err != nil {
			return
		}
		evs, err := decodeEntries(c.Tag, c.Data)
		o.mu.Lock()
		if err == nil && len(evs) != c.Count {
			err = fmt.Errorf("chunk %s: Count %d, %d entries", c.Tag, c.Count, len(evs))
		}
		if err != nil {
			o.errs = append(o.errs, err)
		}
		o.events = append(o.events, evs...)
		o.chunks = append(o.chunks, c)
		o.tags[c.Tag]++
		hold := o.hold
		if hold {
			o.held = append(o.held, c)
		}
		o.mu.Unlock()
		if !hold {
			c.Done(Acked)
		}
	}
}

// close stops the output and finishes held chunks; it reports decode errors.
func (o *testOutput) close() {
	o.stop()
	<-o.done
	o.Release()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, err := range o.errs {
		o.t.Errorf("test output: %v", err)
	}
}

// Hold makes the output keep the chunks it takes instead of finishing them.
func (o *testOutput) Hold() {
	o.mu.Lock()
	o.hold = true
	o.mu.Unlock()
}

// Release finishes the held chunks and stops holding.
func (o *testOutput) Release() {
	o.mu.Lock()
	held := o.held
	o.held, o.hold = nil, false
	o.mu.Unlock()
	for _, c := range held {
		c.Done(Acked)
	}
}

// Held is the number of chunks taken and not finished.
func (o *testOutput) Held() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.held)
}

// Events returns a copy of the events received so far.
func (o *testOutput) Events() []event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.events)
}

// Count is the number of events received so far.
func (o *testOutput) Count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.events)
}

// Chunks is the number of chunks received so far.
func (o *testOutput) Chunks() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.chunks)
}

// Of returns the events received from src.
func (o *testOutput) Of(src string) []event {
	var out []event
	for _, e := range o.Events() {
		if e.key().Src == src {
			out = append(out, e)
		}
	}
	return out
}

// waitCount waits until at least n events arrived.
func (o *testOutput) waitCount(t testing.TB, n int) {
	t.Helper()
	eventually(t, func() bool { return o.Count() >= n }, "%d events (have %d)", n, o.Count())
}

// waitSrc waits until src delivered at least n events.
func (o *testOutput) waitSrc(t testing.TB, src string, n int) {
	t.Helper()
	eventually(t, func() bool { return len(o.Of(src)) >= n }, "%d events from %s (have %d)", n, src, len(o.Of(src)))
}

// ---- logs ----

// logBuf collects log lines for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the log lines that contain every one of subs.
func (l *logBuf) lines(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// ---- listener harness ----

// harness is a listener on 127.0.0.1:0 (unless cfg says otherwise) feeding a real ring
// drained by a testOutput.
type harness struct {
	ring *Ring
	ln   *Listener
	out  *testOutput
	logs *logBuf
	addr string // host:port, or the socket path

	cancel context.CancelFunc
	runErr chan error
}

func newHarness(t testing.TB, cfg ListenerConfig) *harness {
	return newHarnessRing(t, cfg, RingConfig{})
}

func newHarnessRing(t testing.TB, cfg ListenerConfig, rc RingConfig) *harness {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	h := &harness{ring: NewRing(rc), logs: &logBuf{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ln, err := NewListener(cfg, h.ring, log)
	if err != nil {
		t.Fatalf("NewListener: %v", err)
	}
	h.ln = ln
	h.out = startOutput(t, h.ring)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- ln.Run(ctx) }()
	select {
	case <-ln.Ready():
	case err := <-h.runErr:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("listener not ready")
	}
	h.addr = ln.Addr().String()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop cancels the listener and waits for Run; idempotent.
func (h *harness) stop(t testing.TB) {
	t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.runErr:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(h.runErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func (h *harness) port() int {
	return h.ln.Addr().(*net.TCPAddr).Port
}

// errors returns the per-reason error counters.
func (h *harness) errors() map[string]int64 { return h.ln.Stats().Errors }

// rawClient is a hand-driven forward client: it writes bytes and reads acks.
type rawClient struct {
	t   testing.TB
	c   net.Conn
	dec *wire.Decoder
}

func dialRaw(t testing.TB, network, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, dec: wire.NewDecoder(c, wire.Limits{})}
}

func (rc *rawClient) write(b []byte) error {
	_ = rc.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	_, err := rc.c.Write(b)
	return err
}

// readAck reads one ack reply (msgpack) and returns its chunk id.
func (rc *rawClient) readAck() ([]byte, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	raw, err := rc.dec.NextRaw()
	if err != nil {
		return nil, err
	}
	return wire.ParseAck(raw)
}

// waitClosed reads until the server closes the connection; it fails if the server
// keeps it open for d.
func (rc *rawClient) waitClosed(d time.Duration) error {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := rc.c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("connection still open after %v", d)
		}
		return nil // EOF or reset: closed by the server
	}
}

// sendAcked sends events [from, from+n) of src one Message frame at a time, each with a
// chunk id, and waits for each ack: when it returns, every event was acknowledged.
func (rc *rawClient) sendAcked(tag, src string, from, n, size int) error {
	for i := from; i < from+n; i++ {
		id := fmt.Appendf(nil, "%s-%d", src, i)
		if err := rc.write(messageFrame(tag, src, i, size, id)); err != nil {
			return err
		}
		got, err := rc.readAck()
		if err != nil {
			return fmt.Errorf("ack for %s: %w", id, err)
		}
		if !bytes.Equal(got, id) {
			return fmt.Errorf("ack %q, want %q", got, id)
		}
	}
	return nil
}
