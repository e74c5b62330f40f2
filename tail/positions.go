package tail

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// sigMax is how many leading bytes identify a file's content beside its inode, as
// Grafana Alloy's signature: enough to tell a copytruncate copy from another file.
const sigMax = 1024

// fileID is what identifies a file: device and inode, never the name.
type fileID struct {
	Dev uint64
	Ino uint64
}

func (id fileID) String() string { return fmt.Sprintf("%d:%d", id.Dev, id.Ino) }

// posKey names a position: one file followed by one target (two targets may follow the
// same file with different tags, each with its own offset).
type posKey struct {
	target string
	id     fileID
}

// point is a committed position: an offset and the signature of the content it refers to
// (after copytruncate the same inode holds other bytes, so the offset alone lies).
type point struct {
	Offset int64
	SigLen int
	Sig    uint64
}

// posEntry is one file's position, shared between its tailer (which creates it), the
// chunk callbacks (which move it) and the saver (which writes it).
type posEntry struct {
	key    posKey
	path   string // the target path the file was followed under; fixed for the entry
	commit atomic.Pointer[point]
	// final is the offset at which the tailer closed the file (-1 while open): once the
	// commit reaches it, every byte is delivered and the entry is done. A done entry is
	// kept while its file exists, so that a restart knows the file was read and does
	// not take it for a rotated generation it never saw (see target.recover).
	final atomic.Int64
}

// done reports whether e's file was closed and every byte of it committed.
func (e *posEntry) done() bool {
	f := e.final.Load()
	return f >= 0 && e.commit.Load().Offset >= f
}

// positions is the in-memory position table and its file. Commits only move entries in
// memory; save writes the whole table atomically when it changed.
type positions struct {
	file string
	log  *slog.Logger

	mu      sync.Mutex
	entries map[posKey]*posEntry
	targets map[string]bool // targets that have run before: their new files are read from the head
	// since is when each target first ran (for a version-1 file: when the file was last
	// written). A file of a target's rotation family changed after it and unknown to the
	// table holds lines nobody read: a restart reads it from its head.
	since map[string]time.Time

	gen     atomic.Uint64 // bumped on every change
	saveMu  sync.Mutex    // one writer at a time; held across I/O, never with mu
	savedAt uint64
	failing bool
	// allKnown: the position file exists but could not be read. Every target is then
	// treated as having run before, so its files are read from the head: duplicates
	// instead of the loss that "start at the end" would cause.
	allKnown bool
}

// posVersion is the version save writes. Version 1 (no since, no final) is still read.
const posVersion = 2

// posFile is the position file's format (JSON, human readable). Version 2 adds since
// (when each target first ran) and final (files closed and remembered while they exist).
type posFile struct {
	Version int                  `json:"version"`
	Targets []string             `json:"targets"`
	Since   map[string]time.Time `json:"since,omitempty"` // version 2
	Files   []posRecord          `json:"files"`
}

type posRecord struct {
	Target string `json:"target"`
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
	SigLen int    `json:"sig_len"`
	Sig    string `json:"sig"` // FNV-64a of the first sig_len bytes, hex
	// Final is where the file was closed after it was rotated away (version 2); with
	// offset == final every byte of it is delivered and the record only remembers the
	// file until it disappears.
	Final *int64 `json:"final,omitempty"`
}

func newPositions(file string, log *slog.Logger) *positions {
	return &positions{file: file, log: log, entries: map[posKey]*posEntry{}, targets: map[string]bool{}, since: map[string]time.Time{}}
}

// load reads the position file; a missing file is an empty table.
func (p *positions) load() error {
	if p.file == "" {
		return nil
	}
	b, err := os.ReadFile(p.file)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// Never written (ENOTDIR: the state directory cannot even exist, so nothing was
		// ever saved there; saving will fail and say so, and tailing goes on).
		return nil
	}
	var f posFile
	if err == nil {
		if err = json.Unmarshal(b, &f); err == nil && f.Version != 1 && f.Version != posVersion {
			err = fmt.Errorf("unknown version %d", f.Version)
		}
	}
	if err != nil {
		// Refusing to start would stop every log from flowing; starting as if new
		// would skip what was written while we were down. Read everything again.
		p.log.Error("position file unreadable: every file is read from its beginning (duplicates possible, nothing skipped)",
			"file", p.file, "err", err)
		if b != nil {
			aside := p.file + ".unreadable"
			if rerr := os.Rename(p.file, aside); rerr == nil {
				p.log.Warn("unreadable position file kept for inspection", "file", aside)
			}
		}
		p.allKnown = true
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Version 1 forgot files once read to their end and did not say when a target
	// started: a rotated file changed since the last save is the oldest we can tell new.
	var written time.Time
	if fi, err := os.Stat(p.file); err == nil {
		written = fi.ModTime()
	}
	for _, t := range f.Targets {
		p.targets[t] = true
		if s, ok := f.Since[t]; ok {
			p.since[t] = s
		} else {
			p.since[t] = written
		}
	}
	for _, r := range f.Files {
		sig, _ := strconv.ParseUint(r.Sig, 16, 64)
		e := &posEntry{key: posKey{r.Target, fileID{r.Dev, r.Inode}}, path: r.Path}
		e.commit.Store(&point{Offset: r.Offset, SigLen: r.SigLen, Sig: sig})
		e.final.Store(-1)
		if r.Final != nil {
			e.final.Store(*r.Final)
		}
		p.entries[e.key] = e
	}
	p.savedAt = p.gen.Load()
	return nil
}

func (p *positions) changed() { p.gen.Add(1) }

// knownTarget reports whether target ran before, and remembers it from now on.
func (p *positions) knownTarget(target string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.targets[target] {
		return true
	}
	p.targets[target] = true
	if !p.allKnown {
		// With an unreadable file since stays zero: every unknown file is new.
		p.since[target] = time.Now()
	}
	p.changed()
	return p.allKnown
}

// sinceOf is when target first ran (zero: unknown, every unknown file counts as new).
func (p *positions) sinceOf(target string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.since[target]
}

func (p *positions) get(k posKey) *posEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.entries[k]
}

// put returns the entry for k, creating it at start when absent.
func (p *positions) put(k posKey, path string, start point) *posEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.entries[k]; e != nil {
		return e
	}
	e := &posEntry{key: k, path: path}
	e.commit.Store(&start)
	e.final.Store(-1)
	p.entries[k] = e
	p.changed()
	return e
}

func (p *positions) remove(e *posEntry) {
	p.mu.Lock()
	if p.entries[e.key] == e {
		delete(p.entries, e.key)
		p.changed()
	}
	p.mu.Unlock()
}

// forTarget returns the target's entries, by path then inode.
func (p *positions) forTarget(target string) []*posEntry {
	p.mu.Lock()
	var out []*posEntry
	for k, e := range p.entries {
		if k.target == target {
			out = append(out, e)
		}
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].path != out[j].path {
			return out[i].path < out[j].path
		}
		return out[i].key.id.Ino < out[j].key.id.Ino
	})
	return out
}

// commitTo moves e's committed point. A closed file fully delivered stays in the table
// as done until pruned (its file is gone).
func (p *positions) commitTo(e *posEntry, pt point) {
	e.commit.Store(&pt)
	p.changed()
}

// closeAt records that e's file was closed after reading to off.
func (p *positions) closeAt(e *posEntry, off int64) {
	e.final.Store(off)
	p.changed()
}

// reopen marks e's file as followed again (a tailer starts on it).
func (p *positions) reopen(e *posEntry) {
	if e.final.Swap(-1) != -1 {
		p.changed()
	}
}

// save writes the table if it changed since the last successful save: to a temp file in
// the same directory, fsync, rename over the old one, fsync the directory. A failure is
// logged once per failure streak and returned; the table stays in memory.
func (p *positions) save() error {
	if p.file == "" {
		return nil
	}
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	gen := p.gen.Load()
	if gen == p.savedAt && !p.failing {
		return nil
	}
	p.mu.Lock()
	f := posFile{Version: posVersion, Since: make(map[string]time.Time, len(p.since)), Files: make([]posRecord, 0, len(p.entries))}
	for t := range p.targets {
		f.Targets = append(f.Targets, t)
		if s, ok := p.since[t]; ok {
			f.Since[t] = s.Round(0).UTC()
		}
	}
	for _, e := range p.entries {
		c := e.commit.Load()
		r := posRecord{
			Target: e.key.target, Path: e.path, Dev: e.key.id.Dev, Inode: e.key.id.Ino,
			Offset: c.Offset, SigLen: c.SigLen, Sig: strconv.FormatUint(c.Sig, 16),
		}
		if fin := e.final.Load(); fin >= 0 {
			r.Final = &fin
		}
		f.Files = append(f.Files, r)
	}
	p.mu.Unlock()
	sort.Strings(f.Targets)
	sort.Slice(f.Files, func(i, j int) bool {
		a, b := f.Files[i], f.Files[j]
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Inode < b.Inode
	})
	err := writeAtomic(p.file, &f)
	if err != nil {
		if !p.failing {
			p.log.Error("cannot save tail positions; tailing goes on, a restart may re-send lines", "file", p.file, "err", err)
		}
		p.failing = true
		return err
	}
	if p.failing {
		p.log.Info("tail positions saved again", "file", p.file)
	}
	p.failing = false
	p.savedAt = gen
	return nil
}

func writeAtomic(path string, v any) (err error) {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("positions %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("positions %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("positions %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("positions %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("positions %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("positions %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// signature hashes the first n bytes of f (n <= sigMax).
func signature(f io.ReaderAt, n int) (uint64, int, error) {
	var buf [sigMax]byte
	if n > sigMax {
		n = sigMax
	}
	m, err := f.ReadAt(buf[:n], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, err
	}
	h := fnv.New64a()
	h.Write(buf[:m])
	return h.Sum64(), m, nil
}

// tracker moves a file's committed position in order: chunk N+1 acked before chunk N
// waits until N is finished too. Chunk callbacks run on the output's goroutines.
type tracker struct {
	pos   *positions
	entry *posEntry

	mu      sync.Mutex
	base    uint64 // sequence number of q[0]
	q       []trackItem
	flushed atomic.Int64 // offset of the last point handed out (for stats)
}

type trackItem struct {
	pt   point
	done bool
}

// add registers the next point in order and returns its sequence number.
func (t *tracker) add(pt point, done bool) uint64 {
	t.mu.Lock()
	seq := t.base + uint64(len(t.q))
	t.q = append(t.q, trackItem{pt: pt, done: done})
	t.mu.Unlock()
	if done {
		t.advance()
	}
	return seq
}

// done marks seq finished and commits the longest finished prefix.
func (t *tracker) done(seq uint64) {
	t.mu.Lock()
	if seq >= t.base && seq-t.base < uint64(len(t.q)) {
		t.q[seq-t.base].done = true
	}
	t.mu.Unlock()
	t.advance()
}

func (t *tracker) advance() {
	t.mu.Lock()
	n := 0
	for n < len(t.q) && t.q[n].done {
		n++
	}
	if n == 0 {
		t.mu.Unlock()
		return
	}
	pt := t.q[n-1].pt
	rest := copy(t.q, t.q[n:])
	clear(t.q[rest:])
	t.q = t.q[:rest]
	t.base += uint64(n)
	// Commit under the lock so two callbacks cannot store their points out of order.
	t.pos.commitTo(t.entry, pt)
	t.mu.Unlock()
}

// idle reports whether every point handed out is committed.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.q) == 0
}
