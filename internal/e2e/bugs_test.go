package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// TestBugReadyBeforeTailScan: a file that exists (empty) when fwdmux starts, tailed
// without read_from_head: lines written right after /ready answers 200 are skipped,
// because the target's first scan (tail/target.go: start = fi.Size() when initial)
// runs after readiness and the "fwdmux started" line.
func TestBugReadyBeforeTailScan(t *testing.T) {
	knownBug(t, "lines written just after /ready are skipped: the initial tail scan positions at EOF after readiness")
	tr := bench.NewTracker()
	s := newSink(t, tr)
	logPath := filepath.Join(t.TempDir(), "app.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, bench.ProcConfig{Args: []string{"-server", s.Addr(), "-log", "app=" + logPath}})
	w, err := bench.NewFileWriter(bench.FileWriterConfig{Path: logPath, Src: "file"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.Write(ctx, 5000)
	w.Close()
	verify(t, "bug_ready_before_tail_scan", tr, bench.Sent{"file": 5000}, p)
}

// TestBugSlowAcksThroughput: an upstream that acks every chunk after 500ms. With the
// default max_in_flight (8) fwdmux sends at most 16 chunks/s, and the tailer's chunks
// stay tiny (flushed at every end of file), so a 5,000 lines/s file falls behind
// without bound: queued chunks are not merged while they wait.
func TestBugSlowAcksThroughput(t *testing.T) {
	knownBug(t, "with 500ms acks throughput collapses to max_in_flight/RTT tiny chunks (~100 events/s)")
	tr := bench.NewTracker()
	s := newSink(t, tr)
	s.SetAckDelay(500 * time.Millisecond)
	logPath := filepath.Join(t.TempDir(), "app.log")
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newLoad(t)
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: 5000}, 15000)
	sent := l.wait()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	err := tr.Wait(wctx, sent)
	r := tr.Report(sent)
	t.Logf("RESULT case=bug_slow_acks_throughput sent=%d received=%d lost=%d dup=%d peak_rss_kb=%d", r.Sent, r.Received, r.Missing, r.Dup, p.PeakRSS())
	if err != nil {
		t.Errorf("3s of a 5,000 lines/s file not delivered 10s later with 500ms acks: %v", r)
	}
}
