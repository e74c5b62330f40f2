package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// upstreamCase runs files and acking clients through fwdmux while fault() acts on the
// upstreams, and checks that everything arrives.
func upstreamCase(t *testing.T, name string, sinks []*bench.Sink, tr *bench.Tracker, forward string, fault func(ctx context.Context)) {
	t.Parallel()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	var addrs []string
	for _, s := range sinks {
		addrs = append(addrs, s.Addr())
	}
	p := start(t, bench.ProcConfig{Config: baseConfigF(addrs, forward, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	l := newLoad(t)
	l.forward(ctx, p.Listen, "fwd", 4, n(5000), bench.PackedForward, float64(n(5000))/dur(3*time.Second).Seconds(), "")
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(20000)) / dur(3*time.Second).Seconds()}, n(20000))
	fault(ctx)
	sent := l.wait()
	verify(t, name, tr, sent, p)
}

func TestUpstreamKilledRestarted(t *testing.T) {
	tr := bench.NewTracker()
	s := newSink(t, tr)
	upstreamCase(t, "upstream_killed_restarted", []*bench.Sink{s}, tr, "", func(ctx context.Context) {
		sleepCtx(ctx, time.Second)
		s.Kill()
		sleepCtx(ctx, 1500*time.Millisecond)
		if err := s.Restart(); err != nil {
			t.Error(err)
		}
	})
}

func TestUpstreamNeverAcks(t *testing.T) {
	tr := bench.NewTracker()
	bad, good := newSink(t, tr), newSink(t, tr)
	bad.SetNoAck(true)
	upstreamCase(t, "upstream_never_acks", []*bench.Sink{bad, good}, tr, "", func(ctx context.Context) {})
	if bad.Unacked.Load() == 0 {
		t.Log("note: the never-acking upstream got no frames")
	}
}

func TestUpstreamAcksLate(t *testing.T) {
	tr := bench.NewTracker()
	s := newSink(t, tr)
	s.SetAckDelay(500 * time.Millisecond) // under the 2s ack_timeout
	// With the default max_in_flight (8) a 500ms ack caps fwdmux at 16 chunks/s however
	// small the chunks are: see TestBugSlowAcksThroughput.
	upstreamCase(t, "upstream_acks_late", []*bench.Sink{s}, tr, "max_in_flight = 64", func(ctx context.Context) {})
}

func TestUpstreamResetsRandomly(t *testing.T) {
	tr := bench.NewTracker()
	s := newSink(t, tr)
	s.SetResetProb(0.02)
	upstreamCase(t, "upstream_random_resets", []*bench.Sink{s}, tr, "breaker_failures = 10", func(ctx context.Context) {})
	t.Logf("resets=%d", s.Resets.Load())
}

func TestUpstreamBlackholed(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	hidden, good := newSink(t, tr), newSink(t, tr)
	px, err := bench.NewProxy(hidden.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	// Build the sink list by address: the proxy stands for the hidden sink.
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{px.Addr(), good.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	l := newLoad(t)
	l.forward(ctx, p.Listen, "fwd", 4, n(5000), bench.PackedForward, float64(n(5000))/dur(3*time.Second).Seconds(), "")
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(20000)) / dur(3*time.Second).Seconds()}, n(20000))
	sleepCtx(ctx, time.Second)
	px.Stop()
	sent := l.wait()
	verify(t, "upstream_blackholed", tr, sent, p)
}

func TestAllUpstreamsDown(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	a, b := newSink(t, tr), newSink(t, tr)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{a.Addr(), b.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(120*time.Second))
	defer cancel()
	down := dur(5 * time.Second)
	total := dur(8 * time.Second)
	l := newLoad(t)
	l.forward(ctx, p.Listen, "fwd", 8, n(4000), bench.PackedForward, float64(n(4000))/total.Seconds(), "")
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(40000)) / total.Seconds()}, n(40000))
	sleepCtx(ctx, time.Second)
	rssBefore := p.RSS()
	a.Kill()
	b.Kill()
	sleepCtx(ctx, down)
	rssDown := p.PeakRSS()
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	sent := l.wait()
	verify(t, "all_upstreams_down", tr, sent, p)
	t.Logf("rss_before_kb=%d peak_rss_while_down_kb=%d", rssBefore, rssDown)
	// The ring is bounded (64 MiB by default); fwdmux must stay well under it plus its
	// baseline while everything queues.
	if rssDown > 200<<10 {
		t.Errorf("RSS grew to %d kB while upstreams were down", rssDown)
	}
}
