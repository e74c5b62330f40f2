package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestStateDirDiskFull: the state dir is a small tmpfs that fills up under load. The
// position saves fail with a clear error, tailing and forwarding go on and lose
// nothing, a runtime change through the API is refused (it could not be remembered),
// and once space is freed the positions are saved again. Needs root (a mount); skipped
// where mounting is not permitted.
func TestStateDirDiskFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", state, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a small tmpfs for the state dir (%v): needs root", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(state, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", state, err)
		}
	})
	tr := bench.NewTracker()
	s := newSink(t, tr)
	logPath := filepath.Join(dir, "app.log")
	p := start(t, bench.ProcConfig{StateDir: state,
		Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none")+
			fmt.Sprintf("[admin]\nallow_paths = [%q]\n", dir+"/**"))})

	// Fill the file system: every later write there fails with ENOSPC.
	filler := filepath.Join(state, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), dur(60*time.Second))
	defer cancel()
	l := newLoad(t)
	l.forward(ctx, p.Listen, "fwd", 2, n(3000), bench.PackedForward, 0, "")
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rate: float64(n(20000)) / dur(2*time.Second).Seconds()}, n(20000))

	var prob map[string]any
	code, err := p.Do("POST", "/logs", map[string]any{"path": filepath.Join(dir, "other.log"), "tag": "other"}, &prob)
	if code != 500 || prob["type"] == nil || !strings.Contains(fmt.Sprint(prob["type"]), "state-not-saved") {
		t.Errorf("POST /logs on a full disk: %d %v (%v), want 500 state-not-saved", code, prob, err)
	}

	sent := l.wait()
	verify(t, "state_dir_disk_full", tr, sent, p)
	if log := p.Log(); !strings.Contains(log, "cannot save tail positions") || !strings.Contains(log, "no space left on device") {
		t.Errorf("no clear error about the full disk in the log:\n%s", tail(log, 4096))
	}

	// Space again: the next save succeeds and says so.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Log(), "tail positions saved again") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.Log(), "tail positions saved again") {
		t.Errorf("positions not saved after space was freed:\n%s", tail(p.Log(), 4096))
	}
	if p.Exited() {
		t.Error("fwdmux exited")
	}
}
