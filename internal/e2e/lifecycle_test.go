package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// TestFwdmuxSIGKILL kills fwdmux under load and restarts it with the same state dir:
// files resume from their committed positions, acking clients resend what was not acked.
func TestFwdmuxSIGKILL(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	logPath := filepath.Join(t.TempDir(), "app.log")
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	total := dur(4 * time.Second)
	l := newLoad(t)
	l.forward(ctx, p.Listen, "fwd", 4, n(8000), bench.PackedForward, float64(n(8000))/total.Seconds(), "")
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(40000)) / total.Seconds()}, n(40000))
	sleepCtx(ctx, 1500*time.Millisecond)
	p.Kill()
	peak := p.PeakRSS()
	sleepCtx(ctx, 500*time.Millisecond)
	q, err := p.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Cleanup)
	sent := l.wait()
	r := verify(t, "sigkill_restart", tr, sent, p, q)
	_ = r
	_ = peak
}

// TestFwdmuxSIGTERM stops fwdmux under load: it must drain, exit 0, and have delivered
// everything acked to clients; the rest of the files arrives after a restart.
func TestFwdmuxSIGTERM(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	logPath := filepath.Join(t.TempDir(), "app.log")
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	total := dur(4 * time.Second)
	// Files only while stopping: acking clients are checked on what they had acked.
	var acked bench.Sent = bench.Sent{}
	c := bench.NewForwardClient(bench.ForwardClientConfig{Addr: p.Listen, Src: "fwd", Ack: true, EventsPerFrame: 50, RetryFor: time.Second})
	fwdDone := make(chan struct{})
	go func() {
		defer close(fwdDone)
		c.SendRate(ctx, n(100000), float64(n(8000))/total.Seconds())
	}()
	l := newLoad(t)
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(40000)) / total.Seconds()}, n(40000))
	sleepCtx(ctx, 1500*time.Millisecond)
	code, err := p.Stop(30 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("SIGTERM: exit code %d, %v", code, err)
	}
	<-fwdDone
	c.Close()
	// Every event the client saw acked is upstream; the unacked tail is the client's
	// to resend (it counts as sent only up to its acked prefix here).
	acked["fwd"] = c.Acked.Load()
	first := tr.Report(acked)
	if first.Missing != 0 {
		t.Errorf("acked to the client but not delivered at exit: %v", first)
	}
	q, err := p.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Cleanup)
	sent := l.wait()
	sent.Add(acked)
	verify(t, "sigterm_drain", tr, sent, p, q)
	code, err = q.Stop(30 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("second SIGTERM: exit code %d, %v", code, err)
	}
}
