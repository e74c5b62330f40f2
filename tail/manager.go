package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/fwdmux/fwdmux/proxy"
)

var (
	// ErrDuplicate is returned by Add for an id already in use.
	ErrDuplicate = errors.New("duplicate tail target")
	// ErrNotFound is returned by Remove for an unknown id.
	ErrNotFound = errors.New("tail target not found")
	// ErrStopped is returned by Add after Run returned.
	ErrStopped = errors.New("tail manager stopped")
)

// Sink takes finished chunks; *proxy.Ring is one. Put blocks while the sink is full
// (that is how a tailer stops reading) and returns an error when it will never take the
// chunk (ctx ended, intake closed); the caller then still owns the chunk.
type Sink interface {
	Put(ctx context.Context, c *proxy.Chunk) error
}

// TargetInfo is a target's configuration and the files it follows now.
type TargetInfo struct {
	TargetConfig
	Files []string `json:"files"`
}

// Manager follows the files of many targets and keeps their positions.
type Manager struct {
	cfg  Config
	sink Sink
	log  *slog.Logger
	pos  *positions

	mu      sync.Mutex
	targets map[string]*target
	order   []string
	runCtx  context.Context // set while Run runs
	wg      *sync.WaitGroup
	stopped bool

	wmu     sync.Mutex
	watcher *fsnotify.Watcher
	dirs    map[string][]*target
}

// NewManager validates cfg and loads the position file. It starts no goroutine.
func NewManager(cfg Config, sink Sink, log *slog.Logger) (*Manager, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	if sink == nil {
		return nil, errors.New("tail: nil sink")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "tail")
	m := &Manager{cfg: cfg, sink: sink, log: log, targets: map[string]*target{}, dirs: map[string][]*target{}}
	m.pos = newPositions(cfg.PositionFile, log)
	if err := m.pos.load(); err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	return m, nil
}

// watchBuffer lets the watcher's reader queue events while dispatch is busy: a thousand
// files written line by line make a hundred thousand events a second, and an unbuffered
// channel costs a goroutine switch for each.
const watchBuffer = 1024

// Run follows every target until ctx ends, then stops the tailers, waits for them and
// saves the positions. Chunks still in flight then may be acked later: call
// SavePositions after the output drained to keep those commits too.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var w *fsnotify.Watcher
	var err error
	if m.cfg.DisableFileEvents {
		m.log.Info("file events disabled; polling every file", "poll_interval", m.cfg.PollInterval)
	} else if w, err = fsnotify.NewBufferedWatcher(watchBuffer); err != nil {
		m.log.Warn("no file events; polling only", "err", err, "poll_interval", m.cfg.PollInterval)
	} else {
		m.wmu.Lock()
		m.watcher = w
		m.wmu.Unlock()
		wg.Go(func() { m.dispatch(w) })
	}
	m.mu.Lock()
	if m.stopped || m.runCtx != nil {
		m.mu.Unlock()
		if w != nil {
			w.Close()
		}
		wg.Wait()
		return errors.New("tail: Run called twice")
	}
	m.runCtx, m.wg = ctx, &wg
	for _, id := range m.order {
		m.startLocked(m.targets[id])
	}
	m.mu.Unlock()

	tick := time.NewTicker(m.cfg.SavePositionsEvery.D())
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			_ = m.pos.save()
		}
	}
	m.mu.Lock()
	m.stopped = true
	ts := make([]*target, 0, len(m.targets))
	for _, t := range m.targets {
		ts = append(ts, t)
	}
	m.mu.Unlock()
	for _, t := range ts {
		<-t.done
	}
	m.wmu.Lock()
	if m.watcher != nil {
		m.watcher.Close()
		m.watcher = nil
	}
	m.wmu.Unlock()
	wg.Wait()
	if err := m.pos.save(); err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	return nil
}

// WaitStarted blocks until Run has started and every target added so far has recovered
// its files from the position file and made its first scan, or ctx ends. Until then,
// lines written to a file that exists at start may land before the position the scan
// takes for it (its end, without read_from_head): callers report readiness after this.
func (m *Manager) WaitStarted(ctx context.Context) error {
	for {
		m.mu.Lock()
		running := m.runCtx != nil || m.stopped
		var readies []chan struct{}
		for _, id := range m.order {
			readies = append(readies, m.targets[id].ready)
		}
		m.mu.Unlock()
		if running {
			for _, r := range readies {
				select {
				case <-r:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// startLocked starts t's goroutine under Run's context. m.mu is held.
func (m *Manager) startLocked(t *target) {
	ctx, cancel := context.WithCancel(m.runCtx)
	t.cancel = cancel
	m.wg.Go(func() {
		defer cancel()
		t.run(ctx)
	})
}

// SavePositions writes the position file now if it changed; the lead calls it after the
// output drained at shutdown, so acks that arrived after Run returned are kept.
func (m *Manager) SavePositions() error {
	if err := m.pos.save(); err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	return nil
}

// Add adds a target; it starts at once when Run is running. A duplicate id is an error
// wrapping ErrDuplicate; an invalid config a *conf.FieldError.
func (m *Manager) Add(tc TargetConfig) (TargetInfo, error) {
	tc = tc.WithDefaults()
	if err := tc.Validate(); err != nil {
		return TargetInfo{}, err
	}
	t, err := newTarget(m, tc)
	if err != nil {
		return TargetInfo{}, fmt.Errorf("tail %s: %w", tc.ID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return TargetInfo{}, ErrStopped
	}
	if _, ok := m.targets[tc.ID]; ok {
		return TargetInfo{}, fmt.Errorf("tail target %s: %w", tc.ID, ErrDuplicate)
	}
	m.targets[tc.ID] = t
	m.order = append(m.order, tc.ID)
	if m.runCtx != nil {
		m.startLocked(t)
	}
	return TargetInfo{TargetConfig: tc, Files: []string{}}, nil
}

// Remove stops the target's tailers and saves the positions; they are kept, so adding
// the target again resumes where it stopped. Chunks in flight still commit when acked.
func (m *Manager) Remove(id string) error {
	m.mu.Lock()
	t, ok := m.targets[id]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("tail target %s: %w", id, ErrNotFound)
	}
	delete(m.targets, id)
	for i, x := range m.order {
		if x == id {
			m.order = append(m.order[:i], m.order[i+1:]...)
			break
		}
	}
	running := t.cancel != nil
	m.mu.Unlock()
	if running {
		t.cancel()
		<-t.done
	}
	return m.SavePositions()
}

// Targets lists the targets in the order they were added.
func (m *Manager) Targets() []TargetInfo {
	m.mu.Lock()
	ts := make([]*target, 0, len(m.order))
	for _, id := range m.order {
		ts = append(ts, m.targets[id])
	}
	m.mu.Unlock()
	out := make([]TargetInfo, 0, len(ts))
	for _, t := range ts {
		out = append(out, TargetInfo{TargetConfig: t.cfg, Files: t.files()})
	}
	return out
}

// Target returns one target.
func (m *Manager) Target(id string) (TargetInfo, bool) {
	m.mu.Lock()
	t, ok := m.targets[id]
	m.mu.Unlock()
	if !ok {
		return TargetInfo{}, false
	}
	return TargetInfo{TargetConfig: t.cfg, Files: t.files()}, true
}

// FileStats is one followed file, for the admin API.
type FileStats struct {
	Target          string    `json:"target"`
	Path            string    `json:"path"`
	Tag             string    `json:"tag"`
	Device          uint64    `json:"device"`
	Inode           uint64    `json:"inode"`
	State           string    `json:"state"` // following | draining (rotated away, read to its end)
	ReadOffset      int64     `json:"read_offset"`
	CommittedOffset int64     `json:"committed_offset"`
	Size            int64     `json:"size"`
	LagBytes        int64     `json:"lag_bytes"` // size - committed: read or not, not yet acked
	Lines           int64     `json:"lines"`
	Bytes           int64     `json:"bytes"`
	ParseErrors     int64     `json:"parse_errors"`
	TruncatedLines  int64     `json:"truncated_lines"`
	LastRead        time.Time `json:"last_read,omitzero"`
}

// Stats returns one entry per followed file, by target then path.
func (m *Manager) Stats() []FileStats {
	m.mu.Lock()
	ts := make([]*target, 0, len(m.order))
	for _, id := range m.order {
		ts = append(ts, m.targets[id])
	}
	m.mu.Unlock()
	var out []FileStats
	for _, t := range ts {
		t.mu.Lock()
		tls := make([]*tailer, 0, len(t.byID))
		for _, tl := range t.byID {
			tls = append(tls, tl)
		}
		t.mu.Unlock()
		for _, tl := range tls {
			s := FileStats{
				Target: t.cfg.ID, Path: tl.curPath(), Tag: tl.tag, Device: tl.id.Dev, Inode: tl.id.Ino,
				State: "following", ReadOffset: tl.st.readOff.Load(), CommittedOffset: tl.entry.commit.Load().Offset,
				Size: tl.st.size.Load(), Lines: tl.st.lines.Load(), Bytes: tl.st.bytes.Load(),
				ParseErrors: tl.st.parseErrors.Load(), TruncatedLines: tl.st.truncated.Load(),
			}
			if tl.st.draining.Load() {
				s.State = "draining"
			}
			s.LagBytes = max(0, s.Size-s.CommittedOffset)
			if ns := tl.st.lastRead.Load(); ns != 0 {
				s.LastRead = time.Unix(0, ns).UTC()
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// watch adds a directory watch for t; several targets may share a directory. It
// reports whether events will arrive for the directory.
func (m *Manager) watch(dir string, t *target) bool {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	ts := m.dirs[dir]
	ok := m.watcher != nil
	if len(ts) == 0 && m.watcher != nil {
		if err := m.watcher.Add(dir); err != nil {
			m.log.Warn("cannot watch directory; polling it", "dir", dir, "err", err)
			ok = false
		}
	}
	m.dirs[dir] = append(ts, t)
	return ok
}

// rewatch watches dir again after it was replaced: the old directory's watch ended
// with it. Reports whether events will arrive for the directory.
func (m *Manager) rewatch(dir string) bool {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.watcher == nil {
		return false
	}
	_ = m.watcher.Remove(dir) // the old watch, if the watcher has not dropped it yet
	if err := m.watcher.Add(dir); err != nil {
		m.log.Warn("cannot watch directory; polling it", "dir", dir, "err", err)
		return false
	}
	return true
}

func (m *Manager) unwatch(dir string, t *target) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	ts := m.dirs[dir]
	for i, x := range ts {
		if x == t {
			ts = append(ts[:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(m.dirs, dir)
		if m.watcher != nil {
			_ = m.watcher.Remove(dir)
		}
		return
	}
	m.dirs[dir] = ts
}

// dispatch hands directory events to the targets watching the directory. It owns no
// state of its own and ends when the watcher is closed.
func (m *Manager) dispatch(w *fsnotify.Watcher) {
	var buf []*target
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			m.wmu.Lock()
			buf = append(buf[:0], m.dirs[dirOf(ev.Name)]...)
			m.wmu.Unlock()
			for _, t := range buf {
				t.notify(ev)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// Overflow: events were lost. Every target rescans and polls its files now
			// instead of waiting for its safety net.
			m.log.Warn("file watcher lost events; rescanning every target", "err", err)
			m.catchUpAll()
		}
	}
}

// catchUpAll makes every target rescan and stat-poll its files at once.
func (m *Manager) catchUpAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.targets {
		select {
		case t.catchUp <- struct{}{}:
		default:
		}
	}
}
