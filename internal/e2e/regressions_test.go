package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// TestLinesRightAfterReadyAreTailed: a file that exists (empty) when fwdmux starts,
// tailed without read_from_head, is positioned at its end by the target's first scan.
// /ready must answer 200 only after that scan, or lines written right after it would be
// skipped (a regression seen during development).
func TestLinesRightAfterReadyAreTailed(t *testing.T) {

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
	verify(t, "lines_right_after_ready", tr, bench.Sent{"file": 5000}, p)
}

// TestSlowAcksKeepUp: an upstream that acks every chunk after 500ms. The tailer flushes
// a tiny chunk at every end of file; with max_in_flight 8 that would cap delivery at 16
// tiny chunks/s. The ring merges queued chunks of one tag when the pool takes them, so a
// 5,000 lines/s file keeps up.
func TestSlowAcksKeepUp(t *testing.T) {

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
	t.Logf("RESULT case=slow_acks_keep_up sent=%d received=%d lost=%d dup=%d peak_rss_kb=%d", r.Sent, r.Received, r.Missing, r.Dup, p.PeakRSS())
	if err != nil {
		t.Errorf("3s of a 5,000 lines/s file not delivered 10s later with 500ms acks: %v", r)
	}
}
