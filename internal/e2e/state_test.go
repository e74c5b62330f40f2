package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// TestStateDirUnderAFile: a state dir whose parent is a regular file cannot be created
// (for root too): fwdmux says so clearly and keeps forwarding.
func TestStateDirUnderAFile(t *testing.T) {

	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "app.log")
	p := start(t, bench.ProcConfig{StateDir: filepath.Join(blocker, "state"),
		Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(60*time.Second))
	defer cancel()
	l := newLoad(t)
	l.forward(ctx, p.Listen, "fwd", 2, n(3000), bench.PackedForward, 0, "")
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(20000)) / dur(2*time.Second).Seconds()}, n(20000))
	sent := l.wait()
	verify(t, "state_dir_under_a_file", tr, sent, p)
	if !strings.Contains(p.Log(), "state directory unusable") {
		t.Errorf("no clear error about the state directory in the log:\n%s", tail(p.Log(), 4096))
	}
	if p.Exited() {
		t.Error("fwdmux exited")
	}
}

// TestStateDirChmod: the state dir becomes read-only after start (not for root, whom
// permissions do not stop).
func TestStateDirChmod(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; TestStateDirUnderAFile covers the failure")
	}
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	logPath := filepath.Join(dir, "app.log")
	p := start(t, bench.ProcConfig{StateDir: state, Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none"))})
	t.Cleanup(func() { os.Chmod(state, 0o755) })
	if err := os.Chmod(state, 0o500); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur(60*time.Second))
	defer cancel()
	l := newLoad(t)
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(20000)) / dur(2*time.Second).Seconds()}, n(20000))
	sent := l.wait()
	verify(t, "state_dir_read_only", tr, sent, p)
}
