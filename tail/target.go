package tail

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/fsnotify/fsnotify"
)

// target follows every file matching one TargetConfig. Its goroutine (run) owns the
// discovery state and the tailers' goroutines; the lock guards the maps that the watcher
// dispatch and Stats read.
type target struct {
	m       *Manager
	cfg     TargetConfig
	log     *slog.Logger
	parser  *parser
	mlStart *regexp.Regexp
	dirPat  bool   // the directory part of the path has glob meta: glob the directories every poll
	dir     string // the directory to watch when dirPat is false

	dirCache map[string][]os.DirEntry // directory listings, only while recover or a scan runs

	runStart time.Time            // when run began: the oldest a missed generation can be
	seenAt   map[string]time.Time // path -> when we last started following a file there (t.mu)

	cancel  context.CancelFunc
	done    chan struct{} // closed when run returned and every tailer stopped
	ready   chan struct{} // closed after recovery and the first scan
	rescan  chan struct{} // one slot
	catchUp chan struct{} // one slot: the watcher lost events

	mu      sync.Mutex
	byPath  map[string]*tailer // the tailer following each path
	byID    map[fileID]*tailer // every live tailer, following or draining
	watched map[string]dirState
	blind   bool           // some directory has no working watch: poll every file every tick
	wg      sync.WaitGroup // tailers
}

func newTarget(m *Manager, cfg TargetConfig) (*target, error) {
	p, err := newParser(cfg)
	if err != nil {
		return nil, err
	}
	t := &target{
		m: m, cfg: cfg, parser: p,
		log:     m.log.With("target", cfg.ID),
		done:    make(chan struct{}),
		ready:   make(chan struct{}),
		rescan:  make(chan struct{}, 1),
		catchUp: make(chan struct{}, 1),
		byPath:  map[string]*tailer{},
		byID:    map[fileID]*tailer{},
		watched: map[string]dirState{},
	}
	if cfg.MultilineStart != "" {
		t.mlStart = regexp.MustCompile(cfg.MultilineStart)
	}
	d := filepath.Dir(filepath.Clean(cfg.Path))
	t.dirPat = strings.ContainsAny(d, "*?[{\\")
	t.dir = d
	return t, nil
}

// tagFor expands '*' in the tag with the path, as fluentd's in_tail.
func (t *target) tagFor(path string) string {
	if !strings.Contains(t.cfg.Tag, "*") {
		return t.cfg.Tag
	}
	p := strings.TrimLeft(strings.ReplaceAll(filepath.ToSlash(path), "/", "."), ".")
	return strings.ReplaceAll(t.cfg.Tag, "*", p)
}

func (t *target) rescanSoon() {
	select {
	case t.rescan <- struct{}{}:
	default:
	}
}

// notify is called by the watcher's goroutine; it never blocks.
func (t *target) notify(ev fsnotify.Event) {
	t.mu.Lock()
	tl := t.byPath[ev.Name]
	t.mu.Unlock()
	if tl != nil {
		tl.wakeUp()
	}
	if ev.Op&(fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
		t.rescanSoon()
	}
}

// run recovers the target's files from the position file, then discovers and follows
// files until ctx ends. It returns after every tailer stopped.
func (t *target) run(ctx context.Context) {
	defer close(t.done)
	defer t.unwatchAll()
	defer t.wg.Wait()
	t.runStart = time.Now()
	known := t.m.pos.knownTarget(t.cfg.ID)
	if !known {
		// Remember the target at once: after a crash its files are then read from the
		// head, so nothing written before the first periodic save is skipped.
		_ = t.m.pos.save()
	}
	t.recover(ctx, known)
	t.scan(ctx, !known)
	close(t.ready)
	tick := time.NewTicker(t.m.cfg.PollInterval.D())
	defer tick.Stop()
	// The safety nets: full rescans (with pruning) and stat polls of every file.
	fullScan := &pacer{every: 10 * t.m.cfg.PollInterval.D(), run: func() { t.scan(ctx, false); t.pruneDone() }}
	statPoll := &pacer{every: 5 * t.m.cfg.PollInterval.D(), run: t.pollFiles}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.rescan:
			t.scan(ctx, false)
		case <-t.catchUp:
			// The watcher lost events (queue overflow): look at everything now.
			fullScan.pass()
			statPoll.pass()
		case now := <-tick.C:
			// A changed directory (mtime) means files came or went. Full rescans and the
			// per-file stat poll are safety nets while directory events work (a missed
			// event, a filesystem that reports remote writes late): they run on a
			// schedule that keeps their cost small whatever the number of files. Without
			// events, the stat poll is how writes are seen: every tick.
			t.mu.Lock()
			blind := t.blind
			t.mu.Unlock()
			switch {
			case fullScan.due(now):
				fullScan.pass()
			case t.dirsChanged():
				t.scan(ctx, false)
			}
			if blind || statPoll.due(now) {
				statPoll.pass()
			}
		}
	}
}

// pacer schedules one of a target's safety nets (periodic full rescans, stat polls) while
// directory events work. A pass runs at most every `every`, and is spaced by
// safetyNetSpacing times what the last one took: ten thousand idle files cost a fraction
// of a percent of a core, and a busy machine (slower passes) polls less, not more.
type pacer struct {
	every time.Duration
	run   func()
	next  time.Time
}

// safetyNetSpacing lets a pass use 1/1000 of the time: 0.1 % of a core for each net.
const safetyNetSpacing = 1000

// due reports whether a pass is due at now; the first is one interval after the first call.
func (p *pacer) due(now time.Time) bool {
	if p.next.IsZero() {
		p.next = now.Add(p.every)
	}
	return !now.Before(p.next)
}

// pass runs the net now and schedules the next pass.
func (p *pacer) pass() {
	t0 := time.Now()
	p.run()
	p.next = time.Now().Add(max(p.every, safetyNetSpacing*time.Since(t0)))
}

// dirsChanged reports whether the target's directories changed since they were
// watched: files came or went (mtime), a directory was replaced or is gone, or (for a
// pattern in the directory part) the pattern matches other directories now.
func (t *target) dirsChanged() bool {
	t.mu.Lock()
	dirs := make(map[string]dirState, len(t.watched))
	for d, st := range t.watched {
		dirs[d] = st
	}
	t.mu.Unlock()
	if t.dirPat {
		ds, _ := doublestar.FilepathGlob(filepath.Dir(filepath.Clean(t.cfg.Path)))
		n := 0
		for _, d := range ds {
			if st, ok := statDir(d); ok {
				n++
				if old, known := dirs[d]; !known || old != st {
					return true
				}
			}
		}
		return n != len(dirs)
	}
	if len(dirs) == 0 {
		return true // nothing to watch yet: the directory may appear
	}
	for d, old := range dirs {
		if st, ok := statDir(d); !ok || st != old {
			return true
		}
	}
	return false
}

// pollFiles is the fallback for filesystems that send no events: one stat per followed
// file, and a wake-up only for files whose inode, size or mtime changed.
func (t *target) pollFiles() {
	t.mu.Lock()
	tls := make([]*tailer, 0, len(t.byID))
	for _, tl := range t.byID {
		tls = append(tls, tl)
	}
	t.mu.Unlock()
	for _, tl := range tls {
		fi, err := os.Stat(tl.curPath())
		if err != nil {
			tl.wakeUp()
			continue
		}
		mt := fi.ModTime().UnixNano()
		touched := tl.polledMtime.Swap(mt) != mt
		if id, _ := idOf(fi); id != tl.id || fi.Size() != tl.st.size.Load() || touched {
			tl.wakeUp()
		}
	}
}

// glob lists the files matching the target, without the excluded ones, and the
// directories to watch (those among them that exist).
func (t *target) glob() (files, dirs []string) {
	pat := filepath.Clean(t.cfg.Path)
	if t.dirPat {
		dirs, _ = doublestar.FilepathGlob(filepath.Dir(pat)) // watchDirs keeps the directories
	} else {
		dirs = []string{t.dir}
	}
	ms, _ := doublestar.FilepathGlob(pat, doublestar.WithFilesOnly())
	for _, f := range ms {
		if !t.excluded(f) {
			files = append(files, f)
		}
	}
	return files, dirs
}

func (t *target) excluded(path string) bool {
	ex := t.cfg.Exclude
	if ex == "" {
		return false
	}
	if ok, _ := doublestar.PathMatch(ex, path); ok {
		return true
	}
	if !strings.ContainsRune(ex, '/') {
		ok, _ := doublestar.Match(ex, filepath.Base(path))
		return ok
	}
	return false
}

// scan finds new files. initial is the target's first scan ever: files found then start
// at their end unless read_from_head; every later file is new and read from the head.
func (t *target) scan(ctx context.Context, initial bool) {
	files, dirs := t.glob()
	t.watchDirs(dirs)
	// Stat every file first, then look for missed generations in directory listings
	// taken after the last stat: a generation renamed away before its path was looked at
	// is in them, and each directory is listed once per scan, not once per new file
	// (ten thousand new files in one directory would cost a hundred million entries).
	type found struct {
		path string
		fi   os.FileInfo
		id   fileID
	}
	var fs []found
	for _, path := range files {
		if ctx.Err() != nil {
			return
		}
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		id, _ := idOf(fi)
		fs = append(fs, found{path, fi, id})
	}
	var claimed map[fileID]bool // built on first need: the files followed or found now
	t.dirCache = map[string][]os.DirEntry{}
	defer func() { t.dirCache = nil }()
	for _, f := range fs {
		if ctx.Err() != nil {
			return
		}
		path, fi, id := f.path, f.fi, f.id
		t.mu.Lock()
		cur, same := t.byPath[path], t.byID[id]
		if cur != nil && cur.id == id && !cur.exited.Load() {
			t.mu.Unlock()
			continue
		}
		if same != nil {
			// A file we already follow under another name (renamed into the glob): keep
			// following it there instead of reading it twice.
			same.path.Store(&path)
			t.byPath[path] = same
			t.mu.Unlock()
			same.wakeUp()
			continue
		}
		t.mu.Unlock()
		// A new inode where we followed another one: the path rotated. If it rotated
		// more than once between two looks (a writer faster than our reads), the
		// generations in between were renamed away unseen: find them among the rotated
		// names and read them from their head first, as a restart would.
		var missed []*tailer
		if cur != nil && cur.id != id {
			// The file we followed there was renamed away: its tailer may have read to
			// the end and be asleep, and the events of its new name do not reach it (they
			// are dispatched by path). Make it look now, so it drains what the writer
			// added after our last read and closes the file.
			cur.rotated.Store(true)
			cur.wakeUp()
		}
		if cur == nil || cur.id != id {
			// Since the last file we followed at this path started (or since this run
			// started, if we never followed one here): the tailer of the last one may
			// already have drained and gone while a storm of renames went on.
			t.mu.Lock()
			since, ok := t.seenAt[path]
			if claimed == nil {
				claimed = make(map[fileID]bool, len(t.byID)+len(fs))
				for id := range t.byID {
					claimed[id] = true
				}
				for _, f := range fs {
					claimed[f.id] = true
				}
			}
			t.mu.Unlock()
			if !ok {
				since = t.runStart
			}
			missed = t.readMissed(ctx, path, since, claimed)
		}
		k := posKey{t.cfg.ID, id}
		if e := t.m.pos.get(k); e != nil {
			if c := e.commit.Load(); !e.done() || fi.Size() >= c.Offset && sigMatches(path, c) {
				// Known: resume. A file closed and fully read earlier that matches the
				// glob (a rotated name) resumes at its end instead of being read again.
				t.start(ctx, path, path, id, e, missed, false)
				continue
			}
			t.m.pos.remove(e) // the inode of a file long gone, reused: a new file
		}
		var start int64
		if initial && (t.cfg.ReadFromHead == nil || !*t.cfg.ReadFromHead) {
			start = fi.Size()
		} else if t.copyOfFollowed(path, id) {
			// A copytruncate copy (that the glob matches) of a file we follow: its tailer
			// reads the rest from it when it sees the truncation; from the head it
			// would be read twice.
			continue
		}
		t.start(ctx, path, path, id, t.m.pos.put(k, path, point{Offset: start}), missed, false)
	}
}

// readMissed starts draining tailers, from their head, for root's rotated generations
// that nobody followed and that changed since the generation we last followed there
// was born; it returns them so the file now at root is read after them. claimed holds
// the files followed or found by the scan (the one now at root among them) and gains
// the generations started here.
func (t *target) readMissed(ctx context.Context, root string, since time.Time, claimed map[fileID]bool) []*tailer {
	var out []*tailer
	for _, u := range t.unseen(root, fileID{}, since, claimed) {
		e := t.m.pos.put(posKey{t.cfg.ID, u.id}, root, point{})
		t.log.Info("a generation rotated away before it was seen; reading it from its head", "path", root, "rotated", u.path, "inode", u.id.Ino, "size", u.size)
		if tl := t.start(ctx, u.path, root, u.id, e, nil, true); tl != nil {
			out = append(out, tl)
		}
	}
	return out
}

// start opens path and runs a tailer for it from the entry's committed offset. A
// draining tailer reads a rotated file to its end and closes it; after names tailers
// that must reach their end first.
func (t *target) start(ctx context.Context, path, entryPath string, id fileID, e *posEntry, after []*tailer, draining bool) *tailer {
	f, err := os.Open(path)
	if err != nil {
		// Renamed away between the scan's stat and this open (a rotation storm): the
		// inode is in the same directory under its rotated name. Its position entry
		// exists already, so no later search would take it for unseen: read it now.
		if errors.Is(err, os.ErrNotExist) && !draining {
			if moved := findByID(filepath.Dir(path), id); moved != "" {
				return t.start(ctx, moved, entryPath, id, e, after, true)
			}
		}
		t.log.Warn("cannot open file", "path", path, "err", err)
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil
	}
	if fid, _ := idOf(fi); fid != id {
		// Rotated between stat and open: the file we meant is renamed in the same
		// directory; read it to its end, and let the next scan find the new one.
		f.Close()
		t.rescanSoon()
		if draining {
			return nil
		}
		if moved := findByID(filepath.Dir(path), id); moved != "" {
			return t.start(ctx, moved, entryPath, id, e, after, true)
		}
		return nil
	}
	t.m.pos.reopen(e)
	c := e.commit.Load()
	tl := &tailer{
		t: t, tag: t.tagFor(entryPath), id: id, f: f, entry: e,
		wake: make(chan struct{}, 1), eof: make(chan struct{}), after: after,
		readOff: c.Offset, lineOff: c.Offset, emitEnd: c.Offset,
		draining: draining, drainOnly: draining,
		sigLen: c.SigLen, sig: c.Sig, born: time.Now(),
	}
	tl.tr = tracker{pos: t.m.pos, entry: e}
	tl.tr.flushed.Store(c.Offset)
	tl.path.Store(&path)
	tl.st.size.Store(fi.Size())
	tl.st.readOff.Store(c.Offset)
	tl.st.draining.Store(draining)
	if draining {
		tl.deadline = time.Now().Add(t.cfg.RotateWait.D())
	}
	tctx, cancel := context.WithCancel(ctx)
	tl.cancel = cancel
	t.mu.Lock()
	if !draining {
		t.byPath[path] = tl
		if t.seenAt == nil {
			t.seenAt = map[string]time.Time{}
		}
		t.seenAt[path] = tl.born
	}
	t.byID[id] = tl
	t.mu.Unlock()
	t.log.Debug("following file", "path", path, "inode", id.Ino, "offset", c.Offset, "draining", draining)
	t.wg.Go(func() {
		defer cancel()
		tl.run(tctx)
		t.mu.Lock()
		if t.byID[id] == tl {
			delete(t.byID, id)
		}
		if p := tl.curPath(); t.byPath[p] == tl {
			delete(t.byPath, p)
		}
		tl.exited.Store(true) // a stale byPath entry under an older name is ignored
		t.mu.Unlock()
	})
	return tl
}

// copyOfFollowed reports whether the file at path is named as a rotated generation of
// a file a live tailer follows and starts with what that tailer has read: a copy of it.
// A copy still being written does not match yet and is read from its head (duplicates).
func (t *target) copyOfFollowed(path string, id fileID) bool {
	name := filepath.Base(path)
	t.mu.Lock()
	var heads []*point
	for fid, tl := range t.byID {
		h := tl.head.Load()
		if fid != id && h != nil && h.SigLen > 0 && rotatedName(filepath.Base(tl.curPath()), name) {
			heads = append(heads, h)
		}
	}
	t.mu.Unlock()
	if len(heads) == 0 {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var buf [sigMax]byte
	n, _ := f.ReadAt(buf[:], 0)
	for _, h := range heads {
		if h.SigLen <= n {
			hs := fnv.New64a()
			hs.Write(buf[:h.SigLen])
			if hs.Sum64() == h.Sig {
				return true
			}
		}
	}
	return false
}

// startCopy reads a copytruncate copy from off to its end (called from a tailer).
func (t *target) startCopy(ctx context.Context, path string, off int64, entryPath string) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	id, _ := idOf(fi)
	t.mu.Lock()
	busy := t.byID[id] != nil
	t.mu.Unlock()
	if busy {
		return // the glob matches the copy and we read it already
	}
	e := t.m.pos.put(posKey{t.cfg.ID, id}, entryPath, point{Offset: off})
	t.start(ctx, path, entryPath, id, e, nil, true)
}

// recover finds again the files of the target's saved positions. A file still at its
// path resumes at its committed offset. One renamed away (rotation while we were down or
// behind) is found in the same directory by inode and read to its end before the file
// now at the path; after copytruncate the copy is found by signature and read from the
// committed offset. Positions whose file is gone are forgotten, with a warning unless
// the file was read to its end.
//
// Then every file of a path's rotation family (rotatedName) that the table does not
// know and that changed after the target first ran is read from its head, before the
// file now at the path: a generation created and rotated away while we were down or
// between two scans, or a copytruncate copy of content we never committed a signature
// for (the offset was 0). Duplicates are possible there; losses are not. Files read to
// their end stay known (done entries) while they exist, so a normal restart reads no
// old rotated file again.
//
// On a target's first start (known false) there is nothing to recover: the rotated
// files already there are history and are remembered as read.
func (t *target) recover(ctx context.Context, known bool) {
	// Every root of a glob target lives in one of a few directories: list each once,
	// not once per file (a thousand files in a directory would cost a million entries).
	t.dirCache = map[string][]os.DirEntry{}
	defer func() { t.dirCache = nil }()
	if !known {
		t.adoptHistory()
		return
	}
	entries := t.m.pos.forTarget(t.cfg.ID)
	byPath := map[string][]*posEntry{}
	var paths []string
	for _, e := range entries {
		if byPath[e.path] == nil {
			paths = append(paths, e.path)
		}
		byPath[e.path] = append(byPath[e.path], e)
	}
	// Paths the table has no entry for may have unseen generations too.
	for _, r := range t.roots() {
		if byPath[r] == nil {
			paths = append(paths, r)
			byPath[r] = []*posEntry{}
		}
	}
	since := t.m.pos.sinceOf(t.cfg.ID)
	claimed := map[fileID]bool{}
	dirs := map[string]map[fileID]string{} // directory listings by inode, built once
	index := func(dir string) map[fileID]string {
		if ix, ok := dirs[dir]; ok {
			return ix
		}
		ix := dirIndex(dir)
		dirs[dir] = ix
		return ix
	}
	for _, path := range paths {
		var curID fileID
		var curSize int64 = -1
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			curID, _ = idOf(fi)
			curSize = fi.Size()
		}
		type pred struct {
			path  string
			e     *posEntry
			id    fileID
			mtime time.Time
		}
		var preds []pred
		var resume *posEntry
		for _, e := range byPath[path] {
			c := e.commit.Load()
			if e.done() && (curSize < 0 || e.key.id != curID) {
				// Read to its end before the stop: remember it while it exists.
				where := index(filepath.Dir(path))[e.key.id]
				if where == "" || !sigMatches(where, c) {
					t.m.pos.remove(e) // gone, or its inode reused by another file
					continue
				}
				if fi, err := os.Stat(where); err != nil || fi.Size() <= c.Offset {
					continue
				}
				// Written after it was closed: read the rest below.
			}
			if curSize >= 0 && e.key.id == curID {
				if curSize >= c.Offset && sigMatches(path, c) {
					resume = e
					continue
				}
				// Truncated (or replaced in place) while we were down.
				cp := findBySig(path, c.SigLen, c.Sig, c.Offset, curID)
				if cp != "" {
					fi, _ := os.Stat(cp)
					id, _ := idOf(fi)
					ne := t.m.pos.put(posKey{t.cfg.ID, id}, path, *c)
					preds = append(preds, pred{cp, ne, id, fi.ModTime()})
					t.log.Info("file was truncated while stopped; reading the rest from its copy", "path", path, "copy", cp, "offset", c.Offset)
				} else {
					t.log.Warn("file was truncated while stopped and no copy was found; reading it from the start", "path", path, "offset", c.Offset)
				}
				t.m.pos.commitTo(e, point{})
				resume = e
				continue
			}
			where := index(filepath.Dir(path))[e.key.id]
			if where != "" && !sigMatches(where, c) {
				// Truncated (copytruncate) and then renamed: the lines after the committed
				// offset are in the copy; what the inode holds now came after them.
				if cp := findBySig(path, c.SigLen, c.Sig, c.Offset, e.key.id); cp != "" {
					if fi, err := os.Stat(cp); err == nil {
						id, _ := idOf(fi)
						if ne := t.m.pos.put(posKey{t.cfg.ID, id}, path, *c); ne != e {
							preds = append(preds, pred{cp, ne, id, fi.ModTime().Add(-time.Nanosecond)})
						}
					}
				}
				t.m.pos.commitTo(e, point{})
				c = e.commit.Load()
			}
			if where == "" {
				where = findBySig(path, c.SigLen, c.Sig, c.Offset, curID)
				if where != "" {
					fi, _ := os.Stat(where)
					id, _ := idOf(fi)
					t.m.pos.remove(e)
					e = t.m.pos.put(posKey{t.cfg.ID, id}, path, *c)
				}
			}
			if where == "" {
				t.log.Warn("rotated file no longer exists; lines after the committed offset are lost", "path", path, "inode", e.key.id.Ino, "offset", c.Offset)
				t.m.pos.remove(e)
				continue
			}
			fi, err := os.Stat(where)
			if err != nil {
				continue
			}
			id, _ := idOf(fi)
			if fi.Size() <= c.Offset && c.Offset > 0 {
				// Fully delivered before the stop: nothing to read; remember it as read.
				t.m.pos.closeAt(e, c.Offset)
				continue
			}
			preds = append(preds, pred{where, e, id, fi.ModTime()})
			t.log.Info("found rotated file; reading it to its end first", "path", path, "rotated", where, "offset", c.Offset)
		}
		for _, u := range t.unseen(path, curID, since, claimed) {
			e := t.m.pos.put(posKey{t.cfg.ID, u.id}, path, point{})
			preds = append(preds, pred{u.path, e, u.id, u.mtime})
			t.log.Info("found a rotated file never read; reading it from its head", "path", path, "rotated", u.path, "inode", u.id.Ino, "size", u.size)
		}
		sort.Slice(preds, func(i, j int) bool { return preds[i].mtime.Before(preds[j].mtime) })
		var after []*tailer
		for _, p := range preds {
			if tl := t.start(ctx, p.path, path, p.id, p.e, nil, true); tl != nil {
				after = append(after, tl)
			}
		}
		if curSize < 0 || t.excluded(path) {
			continue
		}
		if resume == nil {
			resume = t.m.pos.put(posKey{t.cfg.ID, curID}, path, point{})
		}
		t.start(ctx, path, path, curID, resume, after, false)
	}
}

// historySlack widens "changed after the target first ran": file times come from the
// kernel's coarse clock, which may lag time.Now by a tick.
const historySlack = 2 * time.Second

// compressedExt are the suffixes of rotated files compressed by logrotate & co: their
// bytes are not lines, and their content was in the uncompressed generation before.
var compressedExt = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".Z", ".br"}

// rotatedName reports whether name is a rotated generation of base: base followed by
// '.', '-' or '_' and a suffix, as logrotate names them (app.log.1, app.log-20240101,
// app.log.2024-01-01T00:00), not compressed.
func rotatedName(base, name string) bool {
	if len(name) < len(base)+2 || !strings.HasPrefix(name, base) || !strings.ContainsRune(".-_", rune(name[len(base)])) {
		return false
	}
	for _, ext := range compressedExt {
		if strings.HasSuffix(name, ext) {
			return false
		}
	}
	return true
}

// matches reports whether path is one of the target's own files (glob, not excluded).
func (t *target) matches(path string) bool {
	ok, _ := doublestar.PathMatch(filepath.Clean(t.cfg.Path), path)
	return ok && !t.excluded(path)
}

// roots are the paths whose rotation families the target owns: the files its glob
// matches now, and its path itself when it has no glob meta (it may be missing now).
func (t *target) roots() []string {
	files, _ := t.glob()
	if !strings.ContainsAny(filepath.Base(t.cfg.Path), "*?[{\\") && !t.dirPat {
		p := filepath.Clean(t.cfg.Path)
		if !t.excluded(p) && !slices.Contains(files, p) {
			files = append(files, p)
		}
	}
	return files
}

type familyFile struct {
	path  string
	id    fileID
	size  int64
	mtime time.Time
	ctime time.Time
}

// family lists root's rotated generations in its directory that the table does not
// know for this target and that are not files of the target themselves.
func (t *target) family(root string, not fileID, claimed map[fileID]bool) []familyFile {
	dir, base := filepath.Split(root)
	clean := filepath.Clean(dir)
	des, cached := t.dirCache[clean]
	if !cached {
		var err error
		des, err = os.ReadDir(clean)
		if err != nil {
			return nil
		}
		if t.dirCache != nil {
			t.dirCache[clean] = des
		}
	}
	var out []familyFile
	// ReadDir sorts by name: base's generations (base + suffix) follow it, so a binary
	// search skips the rest of a directory of thousands of files.
	i, _ := slices.BinarySearchFunc(des, base, func(de os.DirEntry, b string) int { return strings.Compare(de.Name(), b) })
	for _, de := range des[i:] {
		if !strings.HasPrefix(de.Name(), base) {
			break
		}
		if !rotatedName(base, de.Name()) {
			continue // decided on the name alone, before building a path
		}
		p := filepath.Join(dir, de.Name())
		if t.matches(p) || t.excluded(p) {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		id, _ := idOf(fi)
		if id == not || claimed[id] || t.m.pos.get(posKey{t.cfg.ID, id}) != nil {
			continue
		}
		claimed[id] = true
		out = append(out, familyFile{path: p, id: id, size: fi.Size(), mtime: fi.ModTime(), ctime: changeTime(fi)})
	}
	return out
}

// unseen is root's unknown rotated generations that changed after since: nobody read
// them (a file read to its end is known until it disappears).
func (t *target) unseen(root string, cur fileID, since time.Time, claimed map[fileID]bool) []familyFile {
	var out []familyFile
	for _, f := range t.family(root, cur, claimed) {
		if since.IsZero() || !f.ctime.Before(since.Add(-historySlack)) {
			out = append(out, f)
		}
	}
	return out
}

// adoptHistory runs at a target's first start: the rotated generations already there
// are history nobody asked for (read_from_head covers the target's own files only).
// They are remembered as read so that a restart does not take them for new ones.
func (t *target) adoptHistory() {
	claimed := map[fileID]bool{}
	for _, root := range t.roots() {
		for _, f := range t.family(root, fileID{}, claimed) {
			pt := point{Offset: f.size}
			if fh, err := os.Open(f.path); err == nil {
				pt.Sig, pt.SigLen, _ = signature(fh, int(min(f.size, sigMax)))
				fh.Close()
			}
			e := t.m.pos.put(posKey{t.cfg.ID, f.id}, root, pt)
			t.m.pos.closeAt(e, f.size)
			t.log.Debug("rotated file there before the first start; not read", "path", f.path, "inode", f.id.Ino)
		}
	}
}

// pruneDone forgets the files read to their end that no longer exist (or whose inode
// now holds another file). Called from run's goroutine.
func (t *target) pruneDone() {
	dirs := map[string]map[fileID]string{}
	for _, e := range t.m.pos.forTarget(t.cfg.ID) {
		if !e.done() {
			continue
		}
		t.mu.Lock()
		live := t.byID[e.key.id] != nil
		t.mu.Unlock()
		if live {
			continue
		}
		d := filepath.Dir(e.path)
		ix, ok := dirs[d]
		if !ok {
			ix = dirIndex(d)
			dirs[d] = ix
		}
		if p := ix[e.key.id]; p == "" || !sigMatches(p, e.commit.Load()) {
			t.m.pos.remove(e)
		}
	}
}

// dirIndex lists dir's regular files by device and inode.
func dirIndex(dir string) map[fileID]string {
	ix := map[fileID]string{}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			id, _ := idOf(fi)
			ix[id] = p
		}
	}
	return ix
}

// sigMatches reports whether the file at path starts with the bytes the point was
// taken on. A point without signature matches.
func sigMatches(path string, c *point) bool {
	if c.SigLen == 0 {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sig, n, err := signature(f, c.SigLen)
	return err == nil && n == c.SigLen && sig == c.Sig
}

// findBySig looks in path's directory for another file that starts with the signed
// bytes and holds at least minSize bytes: the copy copytruncate left. The newest wins.
func findBySig(path string, sigLen int, sig uint64, minSize int64, not fileID) string {
	if sigLen == 0 {
		return ""
	}
	dir := filepath.Dir(path)
	des, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	best, bestT := "", time.Time{}
	c := &point{SigLen: sigLen, Sig: sig}
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if p == path || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil || fi.Size() < minSize || fi.Size() < int64(sigLen) {
			continue
		}
		if id, _ := idOf(fi); id == not {
			continue
		}
		if sigMatches(p, c) && fi.ModTime().After(bestT) {
			best, bestT = p, fi.ModTime()
		}
	}
	return best
}

// dirState is what a watched directory looked like: its identity tells a directory
// deleted and created again (whose old watch died with it) from one that changed.
type dirState struct {
	mtime time.Time
	id    fileID
}

func statDir(d string) (dirState, bool) {
	fi, err := os.Stat(d)
	if err != nil || !fi.IsDir() {
		return dirState{}, false
	}
	id, _ := idOf(fi)
	return dirState{fi.ModTime(), id}, true
}

// watchDirs makes the watched set the directories that exist among dirs: new ones are
// watched, a directory replaced by another is watched again, and gone ones are dropped
// (a pattern's directories come and go: pods, dated folders).
func (t *target) watchDirs(dirs []string) {
	keep := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		st, ok := statDir(d)
		if !ok {
			continue
		}
		keep[d] = true
		t.mu.Lock()
		old, known := t.watched[d]
		t.watched[d] = st
		t.mu.Unlock()
		var watching bool
		switch {
		case !known:
			watching = t.m.watch(d, t)
		case old.id != st.id:
			t.log.Info("directory replaced; watching the new one", "dir", d)
			watching = t.m.rewatch(d)
		default:
			continue
		}
		if !watching {
			t.mu.Lock()
			t.blind = true
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	var gone []string
	for d := range t.watched {
		if !keep[d] {
			gone = append(gone, d)
			delete(t.watched, d)
		}
	}
	t.mu.Unlock()
	for _, d := range gone {
		t.m.unwatch(d, t)
	}
}

func (t *target) unwatchAll() {
	t.mu.Lock()
	dirs := make([]string, 0, len(t.watched))
	for d := range t.watched {
		dirs = append(dirs, d)
	}
	t.mu.Unlock()
	for _, d := range dirs {
		t.m.unwatch(d, t)
	}
}

// files lists the paths the target follows now.
func (t *target) files() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.byID))
	for _, tl := range t.byID {
		out = append(out, tl.curPath())
	}
	sort.Strings(out)
	return out
}

func dirOf(p string) string { return filepath.Dir(p) }

// findByID looks in dir for the file with id.
func findByID(dir string, id fileID) string {
	des, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if fi, err := os.Stat(p); err == nil {
			if fid, _ := idOf(fi); fid == id {
				return p
			}
		}
	}
	return ""
}
