package tail

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
	"go.uber.org/goleak"

	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: "+format, append([]any{d}, args...)...)
		}
		<-tick.C
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type event struct {
	tag    string
	sec    uint32
	record map[string]any
}

// decodeChunk walks a chunk's entries as an upstream would.
func decodeChunk(t testing.TB, c *proxy.Chunk) []event {
	t.Helper()
	var out []event
	b := c.Data
	for len(b) > 0 {
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil || n != 2 {
			t.Fatalf("entry header: n=%d err=%v", n, err)
		}
		if len(rest) < 10 || rest[0] != 0xd7 || rest[1] != 0 {
			t.Fatalf("entry time is not a fixext8 EventTime: % x", rest[:min(len(rest), 10)])
		}
		sec := uint32(rest[2])<<24 | uint32(rest[3])<<16 | uint32(rest[4])<<8 | uint32(rest[5])
		rec, rest, err := readRecord(rest[10:])
		if err != nil {
			t.Fatalf("record: %v", err)
		}
		out = append(out, event{tag: c.Tag, sec: sec, record: rec})
		b = rest
	}
	if len(out) != c.Count {
		t.Fatalf("chunk count %d, entries %d", c.Count, len(out))
	}
	return out
}

// collector is a Sink that records what it acks. With hold set it keeps chunks unacked
// until ackAll (or forever: a kill before the ack); with holdAfter it holds every chunk
// after that many. With gate set, Put waits until the gate is closed (blocked says it
// does): the tailer stops where the test wants it.
type collector struct {
	t         testing.TB
	mu        sync.Mutex
	hold      bool
	holdAfter int
	gate      chan struct{}
	blocked   bool
	held      []*proxy.Chunk
	evs       []event
	puts      int
}

func (c *collector) Put(ctx context.Context, ch *proxy.Chunk) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	evs := decodeChunk(c.t, ch)
	c.mu.Lock()
	if gate := c.gate; gate != nil {
		c.blocked = true
		c.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
		c.blocked, c.gate = false, nil
	}
	c.puts++
	if c.hold || c.holdAfter > 0 && c.puts > c.holdAfter {
		c.held = append(c.held, ch)
		c.mu.Unlock()
		return nil
	}
	c.evs = append(c.evs, evs...)
	c.mu.Unlock()
	ch.Done(proxy.Acked)
	return nil
}

// ackN acks up to n held chunks, oldest first, and returns how many it acked.
func (c *collector) ackN(n int) int {
	c.mu.Lock()
	n = min(n, len(c.held))
	acked := c.held[:n]
	c.held = c.held[n:]
	for _, ch := range acked {
		c.evs = append(c.evs, decodeChunk(c.t, ch)...)
	}
	c.mu.Unlock()
	for _, ch := range acked {
		ch.Done(proxy.Acked)
	}
	return n
}

func (c *collector) events() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.evs...)
}

func (c *collector) messages() []string {
	var out []string
	for _, e := range c.events() {
		s, _ := e.record["message"].(string)
		out = append(out, s)
	}
	return out
}

// seqs counts each sequence number seen in "<prefix>-<n> ..." messages.
func (c *collector) seqs(prefix string) map[int]int {
	m := map[int]int{}
	for _, s := range c.messages() {
		p, rest, ok := strings.Cut(s, "-")
		if !ok || p != prefix {
			continue
		}
		f, _, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(f)
		if err == nil {
			m[n]++
		}
	}
	return m
}

// checkSeqs fails on any missing number below n and reports duplicates.
func checkSeqs(t testing.TB, got map[int]int, n int) (dups int) {
	t.Helper()
	var missing []int
	for i := 0; i < n; i++ {
		switch c := got[i]; {
		case c == 0:
			missing = append(missing, i)
		case c > 1:
			dups += c - 1
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d lines missing, first %v", len(missing), n, missing[:min(10, len(missing))])
	}
	return dups
}

func complete(got map[int]int, n int) bool {
	for i := 0; i < n; i++ {
		if got[i] == 0 {
			return false
		}
	}
	return true
}

// seqWriter writes numbered lines and rotates its file like logrotate.
type seqWriter struct {
	t      testing.TB
	path   string
	prefix string
	f      *os.File
	next   int
	gen    int
}

func newSeqWriter(t testing.TB, path, prefix string) *seqWriter {
	w := &seqWriter{t: t, path: path, prefix: prefix}
	w.open()
	return w
}

func (w *seqWriter) open() {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func (w *seqWriter) write(n int) {
	var b []byte
	for i := 0; i < n; i++ {
		b = fmt.Appendf(b, "%s-%d gen=%d padding-padding-padding-padding\n", w.prefix, w.next, w.gen)
		w.next++
	}
	if _, err := w.f.Write(b); err != nil {
		w.t.Fatal(err)
	}
}

// rename rotates by rename: app.log -> app.log.<gen>, then a new app.log.
func (w *seqWriter) rename() {
	w.gen++
	w.f.Close()
	if err := os.Rename(w.path, fmt.Sprintf("%s.%d", w.path, w.gen)); err != nil {
		w.t.Fatal(err)
	}
	w.open()
}

// copyTruncate copies app.log to app.log.<gen> and truncates app.log in place.
func (w *seqWriter) copyTruncate() {
	w.gen++
	b, err := os.ReadFile(w.path)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(fmt.Sprintf("%s.%d", w.path, w.gen), b, 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := w.f.Truncate(0); err != nil {
		w.t.Fatal(err)
	}
}

func (w *seqWriter) close() { w.f.Close() }

// runManager runs m until the returned stop is called; stop waits for Run.
func runManager(t testing.TB, m *Manager) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// follow runs a manager with cfg over the targets, collecting what it sends, and waits
// until every target is ready. stop ends it (cleanup does too).
func follow(t testing.TB, cfg Config, tcs ...TargetConfig) (m *Manager, col *collector, stop func()) {
	t.Helper()
	col = &collector{t: t}
	m, err := NewManager(cfg, col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tcs {
		if _, err := m.Add(tc); err != nil {
			t.Fatal(err)
		}
	}
	stop = runManager(t, m)
	waitReady(t, m)
	return m, col, stop
}

func fastConfig(dir string) Config {
	return Config{
		PositionFile:       dir + "/positions.json",
		PollInterval:       confDur(50 * time.Millisecond),
		SavePositionsEvery: confDur(50 * time.Millisecond),
	}
}

func yes() *bool { b := true; return &b }

func confDur(d time.Duration) conf.Duration { return conf.Duration(d) }

type lockedWriter struct {
	mu sync.Mutex
	w  interface{ Write([]byte) (int, error) }
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func newTextLogger(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

// waitReady waits until every target recovered its positions and scanned once: files
// created after that are "created later".
func waitReady(t testing.TB, m *Manager) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, tg := range m.targets {
			select {
			case <-tg.ready:
			default:
				return false
			}
		}
		return m.runCtx != nil
	}, "targets ready")
}

// waitSeqs waits until every number below n arrived, then reports what is missing.
func waitSeqs(t testing.TB, d time.Duration, get func(string) map[int]int, prefix string, n int) {
	t.Helper()
	waitSeqsOr(t, d, get, prefix, n, nil)
}

// waitSeqsOr is waitSeqs that calls explain, when lines are missing, before failing.
func waitSeqsOr(t testing.TB, d time.Duration, get func(string) map[int]int, prefix string, n int, explain func()) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !complete(get(prefix), n) && time.Now().Before(deadline) {
		<-tick.C
	}
	if explain != nil && !complete(get(prefix), n) {
		explain()
	}
	checkSeqs(t, get(prefix), n)
}

// readRecord decodes a record map pair by pair (msgp.ReadIntfBytes fails on a map with
// duplicate keys, which a JSON line may have; the last one wins, as in encoding/json).
func readRecord(b []byte) (map[string]any, []byte, error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, b, err
	}
	rec := make(map[string]any, n)
	for i := uint32(0); i < n; i++ {
		var k []byte
		if k, b, err = msgp.ReadStringZC(b); err != nil {
			return nil, b, err
		}
		var v any
		if v, b, err = msgp.ReadIntfBytes(b); err != nil {
			return nil, b, err
		}
		rec[string(k)] = v
	}
	return rec, b, nil
}
