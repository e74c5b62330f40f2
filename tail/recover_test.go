package tail

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// restartRun runs one life of the manager on target tc: start, wait for its first
// scan, do(), stop. It returns the sink, whose chunks are acked unless hold.
func restartRun(t *testing.T, dir string, tc TargetConfig, hold bool, do func(col *collector)) *collector {
	t.Helper()
	col := &collector{t: t, hold: hold}
	m, err := NewManager(fastConfig(dir), col, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(tc); err != nil {
		t.Fatal(err)
	}
	stop := runManager(t, m)
	waitReady(t, m)
	do(col)
	stop()
	return col
}

func held(col *collector) int {
	col.mu.Lock()
	defer col.mu.Unlock()
	return len(col.held)
}

// logText captures the manager's logs.
type logText struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logText) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logText) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRestartFindsCopyOfUncommittedContent is the sequence TestKillDuringRotations
// lost lines to: the file's committed point carries no signature (offset 0: nothing of
// its content acked yet), the process stops with its lines in flight, and the file is
// copied and truncated while it is down. Its inode is still at the path and offset 0
// fits any content, so the restart resumed it and never looked for the copy: the
// lines in flight, which only the copy holds, were lost.
func TestRestartFindsCopyOfUncommittedContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "c")
	defer w.close()
	tc := rotationTarget(path)
	w.write(300)
	restartRun(t, dir, tc, true, func(col *collector) {
		eventually(t, 5*time.Second, func() bool { return held(col) > 0 }, "lines read")
	}) // never acked: the committed point stays {offset 0, no signature}
	w.copyTruncate() // app.log.1 holds c-0..c-299; app.log is empty again
	w.write(100)
	col := restartRun(t, dir, tc, false, func(col *collector) {
		waitSeqs(t, 10*time.Second, col.seqs, "c", w.next)
	})
	if dups := checkSeqs(t, col.seqs("c"), w.next); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestRestartFindsCopyAfterTruncationInFlight: a copytruncate seen while running, the
// lines written after it are in flight at the stop, and a second copytruncate happens
// while down. The committed point used to stay on the content before the first
// truncation, so the restart looked for a copy of that and never found the one holding
// the lines in flight. Now offset 0 of the new content, with its signature, is
// committed once the old content is acked, and the copy is found by that signature.
func TestRestartFindsCopyAfterTruncationInFlight(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "c")
	defer w.close()
	tc := rotationTarget(path)
	first := restartRun(t, dir, tc, false, func(col *collector) {
		w.write(300)
		seen(t, w, func() map[int]int { return col.seqs("c") })
		// Stop the tailer in Put with one more line of the old content; ack that chunk
		// and hold every later one.
		gate := make(chan struct{})
		col.mu.Lock()
		col.gate, col.holdAfter = gate, col.puts+1
		col.mu.Unlock()
		w.write(1)
		eventually(t, 5*time.Second, func() bool { col.mu.Lock(); defer col.mu.Unlock(); return col.blocked }, "tailer in Put")
		w.copyTruncate() // app.log.1: c-0..c-300
		w.write(200)     // the tailer first sees them with the truncation: in flight at the stop
		close(gate)
		eventually(t, 5*time.Second, func() bool { return held(col) > 0 }, "new content read")
	})
	w.copyTruncate() // app.log.2 holds c-300..c-499
	w.write(100)
	var logs logText
	col := &collector{t: t}
	m, err := NewManager(fastConfig(dir), col, newTextLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(tc); err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	waitSeqs(t, 10*time.Second, func(p string) map[int]int { return mergeSeqs(first.seqs(p), col.seqs(p)) }, "c", w.next)
	if !strings.Contains(logs.String(), "truncated while stopped; reading the rest from its copy") {
		t.Errorf("copy not found by signature:\n%s", logs.String())
	}
}

// TestRestartFindsGenerationsRotatedWhileStopped: generations created and renamed away
// entirely while the manager is down were never in the position file; a restart finds
// them in the rotation family (unknown inode, changed after the target first ran) and
// reads them from the head, oldest first.
func TestRestartFindsGenerationsRotatedWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "g")
	defer w.close()
	tc := rotationTarget(path)
	first := restartRun(t, dir, tc, false, func(col *collector) {
		w.write(100)
		seen(t, w, func() map[int]int { return col.seqs("g") })
	})
	w.write(50)
	w.rename() // app.log.1: known inode, found by the position file
	w.write(100)
	w.rename() // app.log.2: never seen
	w.write(100)
	w.copyTruncate() // app.log.3: a copy of a file never seen
	w.write(100)
	col := restartRun(t, dir, tc, false, func(col *collector) {
		waitSeqs(t, 10*time.Second, func(p string) map[int]int { return mergeSeqs(first.seqs(p), col.seqs(p)) }, "g", w.next)
	})
	got := mergeSeqs(first.seqs("g"), col.seqs("g"))
	if dups := checkSeqs(t, got, w.next); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestRestartDoesNotReadOldRotatedFilesAgain: rotated files read to their end, and
// history that was there before the target's first start, are remembered while they
// exist, also renamed (logrotate shifts app.log.1 to app.log.2 at every rotation).
func TestRestartDoesNotReadOldRotatedFilesAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	if err := os.WriteFile(path+".1", []byte("history-0 before the first start\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newSeqWriter(t, path, "o")
	defer w.close()
	w.write(10) // before the first start: skipped (read_from_head false)
	tc := TargetConfig{ID: "old", Path: path, Tag: "old", RotateWait: confDur(50 * time.Millisecond)}
	var all []*collector
	all = append(all, restartRun(t, dir, tc, false, func(col *collector) {
		w.write(100)
		eventually(t, 5*time.Second, func() bool { return col.seqs("o")[w.next-1] > 0 }, "lines")
		w.gen = 1
		w.rename() // app.log -> app.log.2, read to its end and closed after rotate_wait
		w.write(100)
		eventually(t, 5*time.Second, func() bool { return col.seqs("o")[w.next-1] > 0 }, "lines")
		eventually(t, 5*time.Second, func() bool { return len(m0Files(t, dir)) == 3 }, "rotated file closed and remembered")
	}))
	for r := range 3 {
		// Down: logrotate shifts every old generation (ctime moves) and rotates.
		for i := 2 + r; i >= 1; i-- {
			if err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)); err != nil {
				t.Fatal(err)
			}
		}
		w.f.Close()
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		w.open()
		w.write(20)
		all = append(all, restartRun(t, dir, tc, false, func(col *collector) {
			eventually(t, 5*time.Second, func() bool { return col.seqs("o")[w.next-1] > 0 }, "lines")
		}))
	}
	got := map[int]int{}
	for _, c := range all {
		for _, m := range c.messages() {
			if strings.HasPrefix(m, "history") {
				t.Fatalf("history read: %q", m)
			}
		}
		got = mergeSeqs(got, c.seqs("o"))
	}
	for i := 10; i < w.next; i++ {
		if got[i] != 1 {
			t.Errorf("line %d arrived %d times", i, got[i])
		}
	}
	for i := range 10 {
		if got[i] != 0 {
			t.Errorf("line %d from before the first start arrived", i)
		}
	}
	// Gone files are forgotten.
	for i := 1; i <= 5; i++ {
		os.Remove(fmt.Sprintf("%s.%d", path, i))
	}
	restartRun(t, dir, tc, false, func(*collector) {})
	if fs := m0Files(t, dir); len(fs) != 1 {
		t.Errorf("position file keeps %d files after the rotated ones were deleted: %+v", len(fs), fs)
	}
}

// m0Files reads the position file's records.
func m0Files(t *testing.T, dir string) []posRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "positions.json"))
	if err != nil {
		return nil
	}
	var f posFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Files
}

// TestPositionFileVersion1 reads a version-1 file: offsets resume, rotated files older
// than the file's last write count as read, and the next save writes version 2.
func TestPositionFileVersion1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "v")
	defer w.close()
	w.write(100)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := idOf(fi)
	if err := os.WriteFile(path+".1", []byte("v-old rotated before the upgrade\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var off int64 // the end of line v-49
	for i := range 50 {
		off += int64(len(fmt.Sprintf("v-%d gen=0 padding-padding-padding-padding\n", i)))
	}
	v1 := fmt.Sprintf(`{"version": 1, "targets": ["v1"], "files": [
 {"target": "v1", "path": %q, "dev": %d, "inode": %d, "offset": %d, "sig_len": 0, "sig": "0"}]}`,
		path, id.Dev, id.Ino, off)
	pf := filepath.Join(dir, "positions.json")
	if err := os.WriteFile(pf, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	// The file was last written after app.log.1 changed.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(pf, later, later); err != nil {
		t.Fatal(err)
	}
	col := restartRun(t, dir, TargetConfig{ID: "v1", Path: path, Tag: "v", ReadFromHead: yes()}, false, func(col *collector) {
		eventually(t, 5*time.Second, func() bool { return col.seqs("v")[99] > 0 }, "line 99")
	})
	got := col.seqs("v")
	for i := range 100 {
		if want := map[bool]int{true: 0, false: 1}[i < 50]; got[i] != want {
			t.Errorf("line %d arrived %d times, want %d", i, got[i], want)
		}
	}
	for _, m := range col.messages() {
		if strings.Contains(m, "before the upgrade") {
			t.Error("read a rotated file older than the version-1 file")
		}
	}
	b, _ := os.ReadFile(pf)
	var f posFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != posVersion || f.Since["v1"].IsZero() {
		t.Errorf("saved %s (%v), want version %d with since", b, err, posVersion)
	}
}

// TestGlobMatchingRotatedFileNotReadTwice: with a glob that also matches the rotated
// names, a copy drained from where the tailer stopped used to be read again from its
// head by the next scan once its rotate_wait ended and its position was forgotten; and
// a scan that found the copy before the tailer saw the truncation read it from its head.
// The copy appears complete (written aside, renamed in): one being written in place
// can still be found half-written by a scan and read twice.
func TestGlobMatchingRotatedFileNotReadTwice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "d")
	defer w.close()
	tc := TargetConfig{ID: "glob", Path: path + "*", Tag: "glob", ReadFromHead: yes(), RotateWait: confDur(50 * time.Millisecond)}
	col := restartRun(t, dir, tc, false, func(col *collector) {
		for range 3 {
			w.write(100)
			seen(t, w, func() map[int]int { return col.seqs("d") })
			w.gen++
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			aside := filepath.Join(dir, "copy.tmp")
			if err := os.WriteFile(aside, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(aside, fmt.Sprintf("%s.%d", path, w.gen)); err != nil {
				t.Fatal(err)
			}
			if err := w.f.Truncate(0); err != nil {
				t.Fatal(err)
			}
		}
		w.write(100)
		seen(t, w, func() map[int]int { return col.seqs("d") })
		time.Sleep(20 * 50 * time.Millisecond) // rotate_wait and many scans
	})
	if dups := checkSeqs(t, col.seqs("d"), w.next); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}
