package tail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
)

func TestFollowLinesPartialAndCRLF(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	if err := os.WriteFile(path, []byte("old line\r\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	col := &collector{t: t}
	m, err := NewManager(fastConfig(dir), col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.Add(TargetConfig{Path: path, Tag: "app.*", ReadFromHead: yes()})
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	eventually(t, 5*time.Second, func() bool { return len(col.messages()) == 1 }, "first line")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("second\nthird without newline")
	eventually(t, 5*time.Second, func() bool { return len(col.messages()) == 2 }, "second line")
	// The unfinished line is held until its newline comes.
	if got := col.messages(); len(got) != 2 {
		t.Fatalf("partial line sent early: %q", got)
	}
	f.WriteString(" yet\n")
	eventually(t, 5*time.Second, func() bool { return len(col.messages()) == 3 }, "third line")
	want := []string{"old line", "second", "third without newline yet"}
	if got := col.messages(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	wantTag := "app." + strings.TrimLeft(strings.ReplaceAll(path, "/", "."), ".")
	if tag := col.events()[0].tag; tag != wantTag {
		t.Fatalf("tag %q, want %q", tag, wantTag)
	}
	eventually(t, 5*time.Second, func() bool {
		st := m.Stats()
		return len(st) == 1 && st[0].CommittedOffset == st[0].Size
	}, "committed to the end")
	st := m.Stats()[0]
	if st.Lines != 4 || st.Target != info.ID || st.LagBytes != 0 || st.State != "following" {
		t.Fatalf("stats %+v", st)
	}
	ti, ok := m.Target(info.ID)
	if !ok || len(ti.Files) != 1 || ti.Files[0] != path {
		t.Fatalf("Target: %+v %v", ti, ok)
	}
}

func TestReadFromHeadDefault(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.log")
	os.WriteFile(old, []byte("before start\n"), 0o644)
	col := &collector{t: t}
	m, err := NewManager(fastConfig(dir), col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(TargetConfig{Path: filepath.Join(dir, "*.log"), Tag: "app"}); err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	waitReady(t, m)
	// A file created after start is read from its head; the old one from its end.
	os.WriteFile(filepath.Join(dir, "new.log"), []byte("new-0\n"), 0o644)
	f, _ := os.OpenFile(old, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("old-1\n")
	f.Close()
	eventually(t, 5*time.Second, func() bool { return len(col.messages()) == 2 }, "two lines")
	for _, s := range col.messages() {
		if s == "before start" {
			t.Fatal("read a file present at start from its head")
		}
	}
}

func TestFileCreatedLaterAndGlobPickup(t *testing.T) {
	dir := t.TempDir()
	col := &collector{t: t}
	cfg := fastConfig(dir)
	cfg.PollInterval = confDur(time.Second) // pick-up must come from events, or the 1 s poll
	m, err := NewManager(cfg, col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "logs")
	if _, err := m.Add(TargetConfig{Path: filepath.Join(sub, "**", "*.log"), Tag: "g.*", Exclude: "*.skip.log"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(TargetConfig{ID: "single", Path: filepath.Join(dir, "later.log"), Tag: "single"}); err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	waitReady(t, m)
	start := time.Now()
	os.MkdirAll(filepath.Join(sub, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(dir, "later.log"), []byte("later-0\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "a", "b", "x.log"), []byte("glob-0\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "top.log"), []byte("glob-1\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "a", "no.skip.log"), []byte("skipped\n"), 0o644)
	eventually(t, 5*time.Second, func() bool { return len(col.messages()) >= 3 }, "files picked up: %q", col.messages)
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("pick-up took %v", d)
	}
	for _, s := range col.messages() {
		if s == "skipped" {
			t.Fatal("excluded file read")
		}
	}
	if len(m.Targets()) != 2 {
		t.Fatalf("targets %+v", m.Targets())
	}
}

// Without directory events (disable_file_events) the poll alone finds files created
// later, in new directories too, and the lines appended to them.
func TestPollingWithoutFileEvents(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig(dir)
	cfg.DisableFileEvents = true
	sub := filepath.Join(dir, "logs")
	m, col, _ := follow(t, cfg, TargetConfig{Path: filepath.Join(sub, "*.log"), Tag: "p"})
	os.MkdirAll(sub, 0o755) // the directory appears after start
	w := newSeqWriter(t, filepath.Join(sub, "a.log"), "p")
	defer w.close()
	for i := 0; i < 20; i++ {
		w.write(50)
		time.Sleep(10 * time.Millisecond)
	}
	waitSeqs(t, 10*time.Second, col.seqs, "p", w.next)
	m.mu.Lock()
	for _, tg := range m.targets {
		tg.mu.Lock()
		if !tg.blind {
			t.Error("target not polling every file although file events are disabled")
		}
		tg.mu.Unlock()
	}
	m.mu.Unlock()
}

func TestDeletedFileReadToEndAndClosed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "del.log")
	w := newSeqWriter(t, path, "d")
	col := &collector{t: t}
	m, err := NewManager(fastConfig(dir), col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(TargetConfig{Path: path, Tag: "d", ReadFromHead: yes(), RotateWait: confDur(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	w.write(100)
	eventually(t, 5*time.Second, func() bool { return len(m.Stats()) == 1 }, "followed")
	w.write(1000)
	os.Remove(path)
	w.write(10) // still written through the open descriptor: read too
	w.f.WriteString("d-1110 last line without newline")
	w.close()
	// Deleted: no rotate_wait (an hour here), read to the end, closed.
	eventually(t, 5*time.Second, func() bool { return len(m.Stats()) == 0 }, "closed")
	checkSeqs(t, col.seqs("d"), 1111)
	// A fully delivered, deleted file leaves no position behind.
	eventually(t, 5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "positions.json"))
		var f posFile
		json.Unmarshal(b, &f)
		return len(f.Files) == 0 && len(f.Targets) == 1
	}, "position removed")
}

func TestManyFiles(t *testing.T) {
	const files, lines = 1000, 10
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.Mkdir(logs, 0o755)
	for i := 0; i < files; i++ {
		var b []byte
		for j := 0; j < lines; j++ {
			b = fmt.Appendf(b, "m-%d\n", i*lines+j)
		}
		os.WriteFile(filepath.Join(logs, fmt.Sprintf("f%04d.log", i)), b, 0o644)
	}
	col := &collector{t: t}
	m, err := NewManager(fastConfig(dir), col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(TargetConfig{Path: filepath.Join(logs, "*.log"), Tag: "many.*", ReadFromHead: yes()}); err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	eventually(t, 20*time.Second, func() bool { return complete(col.seqs("m"), files*lines) }, "all lines of %d files", files)
	if dups := checkSeqs(t, col.seqs("m"), files*lines); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	if n := len(m.Stats()); n != files {
		t.Fatalf("%d files in stats", n)
	}
}

// TestOutOfOrderAcks: chunk 2 acked before chunk 1 must not commit past chunk 1.
func TestOutOfOrderAcks(t *testing.T) {
	pos := newPositions("", testLogger(t))
	e := pos.put(posKey{"t", fileID{1, 2}}, "p", point{})
	tr := &tracker{pos: pos, entry: e}
	s1 := tr.add(point{Offset: 10}, false)
	s2 := tr.add(point{Offset: 20}, false)
	tr.add(point{Offset: 25}, true) // empty lines: no chunk, behind chunk 2
	tr.done(s2)
	if got := e.commit.Load().Offset; got != 0 {
		t.Fatalf("committed %d before chunk 1 was acked", got)
	}
	tr.done(s1)
	if got := e.commit.Load().Offset; got != 25 {
		t.Fatalf("committed %d, want 25", got)
	}
	tr.done(s1) // a second Done is ignored
	if !tr.idle() {
		t.Fatal("tracker not idle")
	}
}

// TestRestartFromPositions: the manager is stopped with chunks in flight (never acked);
// a new one resumes from the committed offsets: nothing lost, duplicates only the
// lines that were in flight.
func TestRestartFromPositions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "r")
	defer w.close()
	w.write(5000)
	col := &collector{t: t, hold: true}
	cfg := fastConfig(dir)
	cfg.ChunkBytes = 4096
	m, err := NewManager(cfg, col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tc := TargetConfig{ID: "app", Path: path, Tag: "app", ReadFromHead: yes()}
	if _, err := m.Add(tc); err != nil {
		t.Fatal(err)
	}
	stop := runManager(t, m)
	eventually(t, 5*time.Second, func() bool { col.mu.Lock(); defer col.mu.Unlock(); return len(col.held) > 20 }, "chunks put")
	col.ackN(5)
	stop() // the rest is in flight and never acked
	b, err := os.ReadFile(filepath.Join(dir, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pf posFile
	if err := json.Unmarshal(b, &pf); err != nil || len(pf.Files) != 1 {
		t.Fatalf("position file %s: %v", b, err)
	}
	acked := len(col.events())
	if pf.Files[0].Offset == 0 || pf.Files[0].Offset >= int64(5000*40) {
		t.Fatalf("committed offset %d after 5 of many chunks", pf.Files[0].Offset)
	}
	w.write(1000) // written while stopped

	col2 := &collector{t: t}
	m2, err := NewManager(cfg, col2, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Add(tc); err != nil {
		t.Fatal(err)
	}
	runManager(t, m2)
	eventually(t, 10*time.Second, func() bool { return complete(mergeSeqs(col.seqs("r"), col2.seqs("r")), 6000) }, "all lines after restart")
	dups := checkSeqs(t, mergeSeqs(col.seqs("r"), col2.seqs("r")), 6000)
	if dups != 0 {
		t.Fatalf("%d duplicates: only acked chunks were recorded, and the restart starts after them", dups)
	}
	if acked == 0 {
		t.Fatal("nothing acked in the first run")
	}
}

func mergeSeqs(ms ...map[int]int) map[int]int {
	out := map[int]int{}
	for _, m := range ms {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// TestBackpressure: with a small ring and no consumer the tailer stops reading.
func TestBackpressure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.log")
	w := newSeqWriter(t, path, "b")
	w.write(200000) // ~10 MB
	w.close()
	ring := proxy.NewRing(proxy.RingConfig{MaxBytes: 64 << 10, MaxChunks: 4})
	cfg := fastConfig(dir)
	cfg.ChunkBytes = 16 << 10
	m, err := NewManager(cfg, ring, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(TargetConfig{Path: path, Tag: "b", ReadFromHead: yes()}); err != nil {
		t.Fatal(err)
	}
	stop := runManager(t, m)
	eventually(t, 5*time.Second, func() bool { return ring.Stats().Chunks >= 3 }, "ring full")
	// Let a blocked tailer try to read more: it must not.
	before := m.Stats()[0].ReadOffset
	tick := time.NewTimer(200 * time.Millisecond)
	<-tick.C
	st := m.Stats()[0]
	if st.ReadOffset != before || st.ReadOffset > 256<<10 || ring.Stats().Chunks > 4 {
		t.Fatalf("read on while the ring was full: %d -> %d of %d", before, st.ReadOffset, st.Size)
	}
	// Drain it now: consume and ack everything, the file is read to its end.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ring.Get(ctx)
			if err != nil {
				return
			}
			c.Done(proxy.Acked)
		}
	}()
	eventually(t, 20*time.Second, func() bool { s := m.Stats()[0]; return s.CommittedOffset == s.Size }, "drained")
	stop()
	cancel()
	<-done
}

func TestAddRemove(t *testing.T) {
	dir := t.TempDir()
	col := &collector{t: t}
	m, err := NewManager(fastConfig(dir), col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tc := TargetConfig{ID: "x", Path: filepath.Join(dir, "x.log"), Tag: "x"}
	if _, err := m.Add(tc); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(tc); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := m.Remove("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := m.Add(TargetConfig{Path: "x", Tag: "t", Format: "yaml"}); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("bad format: %v", err)
	}
	runManager(t, m)
	path := filepath.Join(dir, "y.log")
	w := newSeqWriter(t, path, "y")
	defer w.close()
	w.write(10)
	info, err := m.Add(TargetConfig{Path: path, Tag: "y", ReadFromHead: yes()})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return len(col.messages()) == 10 }, "added during Run")
	if err := m.Remove(info.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Target(info.ID); ok {
		t.Fatal("removed target still listed")
	}
	w.write(10)
	// Added again, it resumes from its committed position: no duplicates.
	if _, err := m.Add(TargetConfig{Path: path, Tag: "y"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return complete(col.seqs("y"), 20) }, "resumed")
	if dups := checkSeqs(t, col.seqs("y"), 20); dups != 0 {
		t.Fatalf("%d duplicates after re-adding", dups)
	}
}

func TestPositionWriteFailureKeepsTailing(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig(dir)
	cfg.PositionFile = filepath.Join(dir, "missing-dir", "positions.json")
	col := &collector{t: t}
	var logs strings.Builder
	m, err := NewManager(cfg, col, newTextLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a.log")
	w := newSeqWriter(t, path, "a")
	defer w.close()
	if _, err := m.Add(TargetConfig{Path: path, Tag: "a", ReadFromHead: yes()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	for i := 0; i < 5; i++ {
		w.write(10)
		eventually(t, 5*time.Second, func() bool { return len(col.messages()) == (i+1)*10 }, "lines")
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "missing-dir") {
		t.Fatalf("Run: %v, want the failed final save", err)
	}
	if n := strings.Count(logs.String(), "cannot save tail positions"); n != 1 {
		t.Fatalf("logged %d times, want once per failure streak:\n%s", n, logs.String())
	}
}

// An unreadable position file must neither stop tailing nor skip lines: the file is put
// aside and every file is read from its beginning (duplicates rather than loss), even
// without read_from_head.
func TestUnreadablePositionFileReadsFromHead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "u")
	defer w.close()
	w.write(300)
	cfg := fastConfig(dir)
	if err := os.WriteFile(cfg.PositionFile, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	col := &collector{t: t}
	m, err := NewManager(cfg, col, testLogger(t))
	if err != nil {
		t.Fatalf("NewManager with a corrupt position file: %v", err)
	}
	if _, err := m.Add(TargetConfig{ID: "app", Path: path, Tag: "app"}); err != nil {
		t.Fatal(err)
	}
	stop := runManager(t, m)
	defer stop()
	waitSeqs(t, 5*time.Second, col.seqs, "u", 300)
	if _, err := os.Stat(cfg.PositionFile + ".unreadable"); err != nil {
		t.Errorf("corrupt position file not kept aside: %v", err)
	}
}

// A state directory that cannot exist (its parent is a regular file): tailing goes on,
// positions stay in memory.
func TestPositionFileUnderARegularFile(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(dir)
	cfg.PositionFile = filepath.Join(blocker, "state", "positions.json")
	col := &collector{t: t}
	m, err := NewManager(cfg, col, testLogger(t))
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "s")
	defer w.close()
	if _, err := m.Add(TargetConfig{ID: "app", Path: path, Tag: "app", ReadFromHead: yes()}); err != nil {
		t.Fatal(err)
	}
	w.write(200)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitSeqs(t, 5*time.Second, col.seqs, "s", 200)
	cancel()
	// The final save fails, and Run says so; tailing was not affected.
	if err := <-done; err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Run: %v, want the failed final save reported", err)
	}
}

// The safety nets keep their minimum interval and back off in proportion to what a
// pass cost, so that many files cannot make them expensive.
func TestSafetyNetSpacing(t *testing.T) {
	now := time.Now()
	scan := &pacer{every: time.Second, run: func() { time.Sleep(5 * time.Millisecond) }} // costly
	poll := &pacer{every: 500 * time.Millisecond, run: func() {}}                        // cheap
	if scan.due(now) || poll.due(now) {
		t.Fatal("due before the first interval")
	}
	if !scan.due(now.Add(time.Second)) || !poll.due(now.Add(500*time.Millisecond)) {
		t.Fatal("not due after the first interval")
	}
	poll.pass() // cheap: the minimum interval
	if d := time.Until(poll.next); d > 500*time.Millisecond || d < 400*time.Millisecond {
		t.Fatalf("cheap poll: next in %v, want the 500ms minimum", d)
	}
	scan.pass() // costly: 1000x its cost
	if d := time.Until(scan.next); d < 5*time.Second {
		t.Fatalf("5 ms scan: next in %v, want at least 5 s", d)
	}
}

// When the watcher reports lost events, every target rescans and polls at once: a write
// whose event was lost arrives without waiting for the safety net.
func TestLostEventsCaughtUp(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig(dir)
	cfg.PollInterval = confDur(time.Hour) // no safety-net pass during the test
	m, col, _ := follow(t, cfg, TargetConfig{Path: filepath.Join(dir, "*.log"), Tag: "lost", ReadFromHead: yes()})
	w := newSeqWriter(t, filepath.Join(dir, "a.log"), "lost")
	defer w.close()
	w.write(10)
	waitSeqs(t, 5*time.Second, col.seqs, "lost", w.next)
	m.wmu.Lock()
	if err := m.watcher.Remove(dir); err != nil { // events for the directory are lost from now on
		t.Fatal(err)
	}
	m.wmu.Unlock()
	w.write(10)
	time.Sleep(300 * time.Millisecond)
	if got := col.seqs("lost"); complete(got, w.next) {
		t.Fatal("the write arrived without its event: the test does not lose events")
	}
	m.catchUpAll()
	waitSeqs(t, 2*time.Second, col.seqs, "lost", w.next)
}

// A log directory deleted and created again (an app that cleans up, a volume remounted)
// is watched again: lines appended to a file in the new directory arrive at once, not
// at the next safety-net poll.
func TestDirectoryRecreated(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	os.Mkdir(sub, 0o755)
	cfg := fastConfig(dir)
	cfg.PollInterval = confDur(time.Second) // the safety-net poll: every 5 s at the soonest
	_, col, _ := follow(t, cfg, TargetConfig{Path: filepath.Join(sub, "*.log"), Tag: "d"})
	w := newSeqWriter(t, filepath.Join(sub, "a.log"), "d")
	w.write(10)
	waitSeqs(t, 5*time.Second, col.seqs, "d", w.next)
	w.close()
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a poll interval notices the directory gone
	os.Mkdir(sub, 0o755)
	w = newSeqWriter(t, filepath.Join(sub, "b.log"), "d")
	defer w.close()
	w.write(10)
	waitSeqs(t, 5*time.Second, col.seqs, "d", w.next) // found by a rescan
	for round := range 3 {
		start := time.Now()
		w.write(10)
		waitSeqs(t, 5*time.Second, col.seqs, "d", w.next)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("round %d: appended lines took %v: the new directory is not watched", round, d)
		}
	}
}
