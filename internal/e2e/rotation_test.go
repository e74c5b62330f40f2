package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

func TestRotationRenameStorm(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	logPath := filepath.Join(t.TempDir(), "app.log")
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	l := newLoad(t)
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rotate: bench.RotateRename, RotateEvery: 10000}, n(100000))
	sent := l.wait()
	verify(t, "rotation_rename_every_10k", tr, sent, p)
}

func TestRotationCopyTruncate(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	logPath := filepath.Join(t.TempDir(), "app.log")
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, logConfig("app", logPath, "none"))})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	l := newLoad(t)
	// copytruncate loses whatever the reader had not read at truncate time, by nature
	// (logrotate's documented race): the writer waits until fwdmux read the whole file,
	// then truncates and keeps writing at once.
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "file", Rotate: bench.RotateCopyTruncate, RotateEvery: 5000,
		Rate: float64(n(30000)) / dur(4*time.Second).Seconds(),
		BeforeTruncate: func(size int64) {
			for ctx.Err() == nil {
				if m, err := p.FileOffsets(); err == nil && m[logPath] >= size {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}}, n(30000))
	sent := l.wait()
	verify(t, "rotation_copytruncate", tr, sent, p)
}
