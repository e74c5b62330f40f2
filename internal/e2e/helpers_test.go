package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

func TestMain(m *testing.M) {
	// 1,000 client connections need a few thousand descriptors here and in fwdmux.
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < 8192 {
		lim.Cur = min(8192, lim.Max)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	code := m.Run()
	bench.CleanupBinary()
	os.Exit(code)
}

// soak is true for the long runs (FWDMUX_SOAK=1).
var soak = os.Getenv("FWDMUX_SOAK") == "1"

// logDir, from FWDMUX_E2E_LOGDIR, runs fwdmux at debug level and keeps the whole log of
// every process of a failed case there (the failure message shows only its end).
var logDir = os.Getenv("FWDMUX_E2E_LOGDIR")

// n scales an event count: short by default, x10 in soak mode.
func n(short int64) int64 {
	if soak {
		return short * 10
	}
	return short
}

// dur scales a duration the same way.
func dur(short time.Duration) time.Duration {
	if soak {
		return short * 6
	}
	return short
}

// baseConfig is a TOML config with fast failover and the given upstreams.
func baseConfig(servers []string, extra string) string {
	return baseConfigF(servers, "", extra)
}

// baseConfigF is baseConfig with more [forward] keys.
func baseConfigF(servers []string, forward, extra string) string {
	var b strings.Builder
	b.WriteString("drain_timeout = \"20s\"\n[forward]\n")
	for _, kv := range []string{`ack_timeout = "2s"`, `connect_timeout = "1s"`, `breaker_failures = 2`,
		`breaker_open_timeout = "1s"`, `reconnect_min = "50ms"`, `reconnect_max = "500ms"`} {
		k, _, _ := strings.Cut(kv, " ")
		if !strings.Contains(forward, k+" ") {
			b.WriteString(kv + "\n")
		}
	}
	b.WriteString(forward + "\n")
	b.WriteString(`[tail]
poll_interval = "200ms"
save_positions_every = "200ms"
`)
	for _, s := range servers {
		fmt.Fprintf(&b, "[[servers]]\naddress = %q\nheartbeat_interval = \"200ms\"\n", s)
	}
	b.WriteString(extra)
	return b.String()
}

// logConfig adds a tail target read from the head.
func logConfig(tag, path, format string) string {
	return fmt.Sprintf("[[logs]]\ntag = %q\npath = %q\nformat = %q\nread_from_head = true\nrotate_wait = \"3s\"\n", tag, path, format)
}

func start(t *testing.T, cfg bench.ProcConfig) *bench.Proc {
	t.Helper()
	if logDir != "" {
		cfg.Args = append(cfg.Args, "-log-level", "debug")
	}
	p, err := bench.StartProc(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fwdmux log (last 8 KiB):\n%s", tail(p.Log(), 8<<10))
			if logDir != "" {
				name := filepath.Join(logDir, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), p.Pid))
				if err := os.WriteFile(name, []byte(p.Log()), 0o644); err != nil {
					t.Log(err)
				} else {
					t.Logf("whole fwdmux log: %s", name)
				}
			}
		}
		p.Cleanup()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatalf("%v\n%s", err, p.Log())
	}
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func newSink(t *testing.T, tr *bench.Tracker) *bench.Sink {
	t.Helper()
	if tr == nil {
		tr = bench.NewTracker()
	}
	s, err := bench.NewSinkTracker(tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// load drives sequence-numbered traffic at a fwdmux: acking Forward clients and files.
type load struct {
	t    *testing.T
	mu   sync.Mutex
	sent bench.Sent
	errs []error
	wg   sync.WaitGroup
}

func newLoad(t *testing.T) *load { return &load{t: t, sent: bench.Sent{}} }

func (l *load) fail(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

// forward starts k acking clients of the given mode, each sending total events in
// frames of per events at about rate events/s (0 = max).
func (l *load) forward(ctx context.Context, addr string, prefix string, k int, total int64, mode bench.Mode, rate float64, sharedKey string) {
	for i := range k {
		src := fmt.Sprintf("%s%d", prefix, i)
		l.wg.Go(func() {
			c := bench.NewForwardClient(bench.ForwardClientConfig{Addr: addr, Src: src, Mode: mode, Ack: true,
				EventsPerFrame: 50, AckTimeout: 10 * time.Second, SharedKey: sharedKey})
			defer c.Close()
			err := c.SendRate(ctx, total, rate)
			l.mu.Lock()
			l.sent[src] += c.Seq()
			l.mu.Unlock()
			if err != nil {
				l.fail(fmt.Errorf("client %s: %w (acked %d of %d)", src, err, c.Acked.Load(), c.Seq()))
			}
		})
	}
}

// file starts a writer on path.
func (l *load) file(ctx context.Context, cfg bench.FileWriterConfig, total int64) {
	w, err := bench.NewFileWriter(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	l.wg.Go(func() {
		defer w.Close()
		err := w.Write(ctx, total)
		l.mu.Lock()
		l.sent[cfg.Src] += w.Seq()
		l.mu.Unlock()
		if err != nil {
			l.fail(fmt.Errorf("writer %s: %w", cfg.Src, err))
		}
	})
}

// wait waits for the producers and returns what they sent.
func (l *load) wait() bench.Sent {
	l.wg.Wait()
	for _, err := range l.errs {
		l.t.Error(err)
	}
	return l.sent
}

// verify waits until the tracker holds every sent event, then logs the RESULT line.
func verify(t *testing.T, name string, tr *bench.Tracker, sent bench.Sent, procs ...*bench.Proc) bench.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dur(60*time.Second))
	defer cancel()
	err := tr.WaitQuiet(ctx, sent, 300*time.Millisecond)
	r := tr.Report(sent)
	var peak int64
	for _, p := range procs {
		peak = max(peak, p.PeakRSS())
	}
	t.Logf("RESULT case=%s sent=%d received=%d lost=%d dup=%d peak_rss_kb=%d", name, r.Sent, r.Received, r.Missing, r.Dup, peak)
	if err != nil || r.Missing != 0 {
		t.Errorf("lost events: %v (%v)", r, err)
	}
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
