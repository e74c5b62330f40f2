package tail

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
)

func rotationConfig(dir string) Config {
	cfg := fastConfig(dir)
	cfg.ChunkBytes = 8 << 10
	return cfg
}

func rotationTarget(path string) TargetConfig {
	return TargetConfig{ID: "rot", Path: path, Tag: "rot", ReadFromHead: yes(), RotateWait: confDur(300 * time.Millisecond)}
}

// TestRotationWhileWriting: rename and copytruncate rotations every N lines while
// writing at speed; every line arrives. The polling cases run without directory
// events (disable_file_events): the stat poll alone sees writes, renames and truncations.
func TestRotationWhileWriting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rotate func(w *seqWriter)
		poll   bool
	}{
		{"rename", (*seqWriter).rename, false},
		{"copytruncate", (*seqWriter).copyTruncate, false},
		{"rename-polling", (*seqWriter).rename, true},
		{"copytruncate-polling", (*seqWriter).copyTruncate, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const total, every = 30000, 3000
			dir := t.TempDir()
			path := filepath.Join(dir, "app.log")
			w := newSeqWriter(t, path, "s")
			defer w.close()
			cfg := rotationConfig(dir)
			cfg.DisableFileEvents = tc.poll
			m, col, _ := follow(t, cfg, rotationTarget(path))
			m.wmu.Lock()
			watching := m.watcher != nil
			m.wmu.Unlock()
			if watching == tc.poll {
				t.Fatalf("file watcher running: %v, want %v", watching, !tc.poll)
			}
			for w.next < total {
				w.write(100)
				if w.next%every == 0 {
					seen(t, w, func() map[int]int { return col.seqs("s") })
					tc.rotate(w)
				}
			}
			waitSeqs(t, 20*time.Second, col.seqs, "s", total)
			dups := checkSeqs(t, col.seqs("s"), total)
			t.Logf("%s: %d lines, %d rotations, %d duplicates", tc.name, total, w.gen, dups)
		})
	}
}

// asyncAcker acks chunks from a real ring after a random delay, and stops without
// acking what it holds: a kill -9 of everything downstream.
type asyncAcker struct {
	t    testing.TB
	ring *proxy.Ring
	mu   sync.Mutex
	seen map[int]int
}

func (a *asyncAcker) run(ctx context.Context, rnd *rand.Rand) {
	for {
		c, err := a.ring.Get(ctx)
		if err != nil {
			return
		}
		if rnd.IntN(4) == 0 {
			d := time.NewTimer(time.Duration(rnd.IntN(3)) * time.Millisecond)
			select {
			case <-d.C:
			case <-ctx.Done():
				d.Stop()
				return
			}
		}
		col := &collector{t: a.t}
		col.evs = decodeChunk(a.t, c)
		s := col.seqs("k")
		a.mu.Lock()
		for k, v := range s {
			a.seen[k] += v
		}
		a.mu.Unlock()
		c.Done(proxy.Acked)
	}
}

func (a *asyncAcker) seqs() map[int]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int]int, len(a.seen))
	for k, v := range a.seen {
		out[k] = v
	}
	return out
}

// TestKillDuringRotations kills the manager (and the output, so in-flight chunks are
// never acked) at random moments while rename and copytruncate rotations happen, also
// while it is down, and restarts it from the position file: zero loss every round.
// TAIL_STRESS=1 runs more rounds.
func TestKillDuringRotations(t *testing.T) {
	rounds, perRound := 8, 4000
	if os.Getenv("TAIL_STRESS") != "" {
		rounds = 40
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "k")
	defer w.close()
	rnd := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	acker := &asyncAcker{t: t, seen: map[int]int{}}
	rotate := func() {
		if rnd.IntN(2) == 0 {
			w.rename()
		} else {
			w.copyTruncate()
		}
	}
	for r := 0; r < rounds; r++ {
		ring := proxy.NewRing(proxy.RingConfig{MaxBytes: 256 << 10, MaxChunks: 64})
		acker.ring = ring
		m, err := NewManager(rotationConfig(dir), ring, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Add(rotationTarget(path)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { acker.run(ctx, rand.New(rand.NewPCG(uint64(r), 7))) })
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		// Write and rotate while running, then kill at a random point.
		n := perRound/2 + rnd.IntN(perRound/2)
		waitReady(t, m)
		for i := 0; i < n; i += 100 {
			w.write(100)
			if rnd.IntN(8) == 0 {
				seen(t, w, acker.seqs)
				rotate()
			}
		}
		seen(t, w, acker.seqs)
		followed(t, m, path)
		w.write(rnd.IntN(200)) // lines in flight at the kill
		cancel()               // manager and output die together: in-flight chunks are never acked
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		// While down: more lines and up to two rotations (a generation created and
		// rotated away entirely while we are down is found by the restart).
		w.write(50)
		for range rnd.IntN(3) {
			rotate()
			w.write(50)
		}
	}
	// Final run: everything must arrive.
	ring := proxy.NewRing(proxy.RingConfig{})
	acker.ring = ring
	m, err := NewManager(rotationConfig(dir), ring, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(rotationTarget(path)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { acker.run(ctx, rand.New(rand.NewPCG(99, 7))) })
	wg.Go(func() { m.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	waitSeqs(t, 20*time.Second, func(string) map[int]int { return acker.seqs() }, "k", w.next)
	dups := checkSeqs(t, acker.seqs(), w.next)
	t.Logf("%d lines, %d rotations, %d kills, %d duplicates (re-sent in-flight lines)", w.next, w.gen, rounds, dups)
}

// seen waits until the last line written arrived: while running, a generation nobody
// saw at its path is found only by the next restart (see the package doc), so rotations
// wait for it while the writing between them goes at full speed.
func seen(t testing.TB, w *seqWriter, got func() map[int]int) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return got()[w.next-1] > 0 }, "line %d delivered", w.next-1)
}

// followed waits until the file now at path is known to the manager.
func followed(t testing.TB, m *Manager, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := idOf(fi)
	eventually(t, 10*time.Second, func() bool {
		for _, s := range m.Stats() {
			if s.Inode == id.Ino && s.State == "following" {
				return true
			}
		}
		return false
	}, "%s followed", path)
}

// TestRenameStorm renames the file every few hundred lines without waiting for the
// reader: generations come and go between two scans, and some are renamed while a
// directory listing is in progress. Every line arrives. TAIL_STRESS=1 runs longer.
func TestRenameStorm(t *testing.T) {
	total, every := 120000, 300
	if os.Getenv("TAIL_STRESS") != "" {
		total = 600000
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := newSeqWriter(t, path, "s")
	defer w.close()
	m, col, _ := follow(t, rotationConfig(dir), rotationTarget(path))
	for w.next < total {
		w.write(100)
		if w.next%every == 0 {
			w.rename()
		}
	}
	waitSeqsOr(t, 20*time.Second, col.seqs, "s", total, func() {
		for _, st := range m.Stats() {
			t.Logf("file: %+v", st)
		}
	})
	dups := checkSeqs(t, col.seqs("s"), total)
	t.Logf("%d lines, %d generations, %d duplicates", total, w.gen, dups)
}

// TestRenamedFollowerDrainsLateWrites: the writer appends to its open descriptor after
// the rename (logrotate without copytruncate, before the app reopens). The tailer that
// followed the path has read everything and sleeps; the events of the file's new name
// are not dispatched to it. The scan that finds the new file must make it look again.
func TestRenamedFollowerDrainsLateWrites(t *testing.T) {
	for round := range 3 {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		w := newSeqWriter(t, path, "s")
		tc := rotationTarget(path)
		tc.RotateWait = confDur(3 * time.Second)
		_, col, stop := follow(t, rotationConfig(dir), tc)
		w.write(10)
		seen(t, w, func() map[int]int { return col.seqs("s") })
		w.write(10)
		old := w.f
		w.gen++
		if err := os.Rename(path, fmt.Sprintf("%s.%d", path, w.gen)); err != nil {
			t.Fatal(err)
		}
		w.open()
		w.write(10) // into the new file
		nf := w.f
		// Late: after the read interval and the busy file's rotation-check interval,
		// within rotate_wait.
		time.Sleep(2 * rotationCheckEvery)
		w.f = old
		w.write(10) // late lines into the renamed one
		w.f = nf
		old.Close()
		waitSeqs(t, 5*time.Second, col.seqs, "s", w.next)
		w.close()
		stop()
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
}
