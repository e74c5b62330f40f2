package tail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/fwdmux/fwdmux/proxy"
)

// readBufSize is the read buffer: big enough that one read syscall carries hundreds of
// lines, small enough that the buffers of the files being read at once stay cheap.
const readBufSize = 64 << 10

// rotationCheckEvery bounds how often a busy file's path and signature are re-checked.
const rotationCheckEvery = 250 * time.Millisecond

// readBufs recycles read buffers: a file holds one only while it reads, so ten thousand
// idle files hold none.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

func idOf(fi os.FileInfo) (fileID, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, uint64(st.Nlink)
	}
	return fileID{}, 1
}

// tailer follows one file (one inode) for one target. Its goroutine owns the open file,
// the read state and the chunk being filled; other goroutines only wake it, read its
// atomic stats, or change the path it is known under.
type tailer struct {
	t      *target
	tag    string
	id     fileID
	f      *os.File
	entry  *posEntry
	tr     tracker
	path   atomic.Pointer[string] // where the file is now (changes when a glob re-finds it)
	head   atomic.Pointer[point]  // the signature of what was read (nil: none yet), for scan
	exited atomic.Bool
	// rotated is set by the scan that found another file at our path: check at once,
	// not at the next rotationCheckEvery.
	rotated atomic.Bool
	// polledMtime is the file's mtime at the target's last stat poll: a file copied,
	// truncated and written back to the same size changed only there.
	polledMtime atomic.Int64

	wake   chan struct{} // one slot: something may have changed
	cancel context.CancelFunc
	eof    chan struct{} // closed when the file was read to its end once while draining, or at exit
	eofOne sync.Once
	after  []*tailer // read these to their end before starting (restart recovery)

	// Owned by the tailer goroutine.
	readOff    int64 // next byte to read
	lineOff    int64 // file offset of carry[0]
	carry      []byte
	discarding bool // inside an over-long line whose head was already sent
	sigLen     int
	sigRaw     []byte // the first sigLen bytes, once read: the cheap check of sig
	sig        uint64
	emitEnd    int64 // end of the last line that is in a chunk or needs none
	chunk      *proxy.Chunk
	chunkN     int
	scratch    []byte
	ml         []byte // pending multiline record
	mlPending  bool
	mlEnd      int64
	mlAt       time.Time
	draining   bool
	drainOnly  bool // started to drain a rotated file or a copy: never follows again
	newGen     bool // truncated: the next signature starts the new content's position
	deadline   time.Time
	born       time.Time // when this tailer started: rotations seen after it are checked for missed generations
	lastData   time.Time // when a read last found new bytes (the read-interval clock)
	lastRotChk time.Time // when the path was last compared with our inode

	st fileCounters
}

// fileCounters are the per-file stats, written by the tailer and read by Stats.
type fileCounters struct {
	size        atomic.Int64
	readOff     atomic.Int64
	lines       atomic.Int64
	bytes       atomic.Int64
	parseErrors atomic.Int64
	truncated   atomic.Int64
	lastRead    atomic.Int64 // unix nanos
	draining    atomic.Bool
}

func (tl *tailer) wakeUp() {
	select {
	case tl.wake <- struct{}{}:
	default:
	}
}

func (tl *tailer) curPath() string { return *tl.path.Load() }

func (tl *tailer) markEOF() { tl.eofOne.Do(func() { close(tl.eof) }) }

// run follows the file until ctx ends or the file was rotated away and drained.
func (tl *tailer) run(ctx context.Context) {
	defer tl.markEOF()
	defer tl.f.Close()
	for _, p := range tl.after {
		select {
		case <-p.eof:
		case <-ctx.Done():
			return
		}
	}
	log := tl.t.log.With("path", tl.curPath(), "inode", tl.id.Ino)
	poll := time.NewTimer(time.Hour)
	defer poll.Stop()
	interval := tl.t.m.cfg.ReadInterval.D()
	for {
		if interval > 0 && !tl.draining {
			// A file that found data at its last read is busy: let more lines gather
			// before the next read instead of one read (and one chunk) per write.
			if wait := time.Until(tl.lastData.Add(interval)); wait > 0 {
				poll.Reset(wait)
				select {
				case <-ctx.Done():
					return
				case <-poll.C:
				}
			}
		}
		if err := tl.readAvailable(ctx); err != nil {
			if ctx.Err() == nil && !errors.Is(err, proxy.ErrRingClosed) {
				log.Error("tail stopped", "err", err)
			}
			return
		}
		tl.checkRotation(log)
		if tl.draining && !time.Now().Before(tl.deadline) {
			// Read to the end one last time: the deadline only starts the close, it never
			// cuts a backlog short.
			if err := tl.readAvailable(ctx); err != nil {
				return
			}
			if err := tl.finish(ctx); err != nil {
				return
			}
			log.Info("closed rotated file", "offset", tl.readOff)
			return
		}
		if tl.draining {
			tl.markEOF()
		}
		// Sleep until woken; a pending multiline record and a draining file also wake on
		// time, following files rely on events and the target's stat poll.
		d := time.Duration(-1)
		if tl.mlPending {
			d = time.Until(tl.mlAt.Add(tl.t.cfg.MultilineTimeout.D()))
			if d <= 0 {
				tl.emitML()
				if err := tl.flush(ctx); err != nil {
					return
				}
				continue
			}
		}
		if tl.draining {
			pd := min(time.Until(tl.deadline), tl.t.m.cfg.PollInterval.D())
			if d < 0 || pd < d {
				d = pd
			}
		}
		var tc <-chan time.Time
		if d >= 0 {
			poll.Reset(d)
			tc = poll.C
		}
		select {
		case <-ctx.Done():
			return
		case <-tl.wake:
		case <-tc:
		}
		poll.Stop()
	}
}

// finish sends what is left of a file that is going away: the pending multiline record
// and a last line without newline (it will never be completed now).
func (tl *tailer) finish(ctx context.Context) error {
	if len(tl.carry) > 0 && !tl.discarding {
		tl.line(tl.carry, tl.lineOff+int64(len(tl.carry)), time.Now())
		tl.lineOff += int64(len(tl.carry))
		tl.carry = tl.carry[:0]
	}
	tl.emitML()
	if err := tl.flush(ctx); err != nil {
		return err
	}
	tl.t.m.pos.closeAt(tl.entry, tl.lineOff)
	return nil
}

// checkRotation compares the file at our path with our inode: renamed away or replaced
// starts draining for rotate_wait; deleted (no links left) drains at once.
func (tl *tailer) checkRotation(log interface {
	Info(string, ...any)
}) {
	if tl.drainOnly {
		return
	}
	// Renames and deletions also come as directory events that rescan the target; this
	// stat is the backstop, so a busy file pays for it a few times a second, not per read.
	if now := time.Now(); !tl.draining && !tl.rotated.Swap(false) && now.Sub(tl.lastRotChk) < rotationCheckEvery {
		return
	} else {
		tl.lastRotChk = now
	}
	fi, err := os.Stat(tl.curPath())
	same := err == nil && func() bool { id, _ := idOf(fi); return id == tl.id }()
	if same {
		if tl.draining {
			tl.draining = false
			tl.st.draining.Store(false)
		}
		return
	}
	if tl.draining {
		return
	}
	wait := tl.t.cfg.RotateWait.D()
	if ofi, err := tl.f.Stat(); err == nil {
		if _, nlink := idOf(ofi); nlink == 0 {
			wait = 0 // deleted: nobody can write to it any more
		}
	}
	tl.draining = true
	tl.st.draining.Store(true)
	tl.deadline = time.Now().Add(wait)
	log.Info("file rotated away; reading it to its end", "rotate_wait", wait)
	tl.t.rescanSoon()
}

// readAvailable reads the file to its current end, turning lines into chunk entries;
// it blocks in the sink's Put while the ring is full. At the end it flushes.
func (tl *tailer) readAvailable(ctx context.Context) error {
	for {
		if !tl.checkSig() {
			if err := tl.truncated(ctx, -1); err != nil {
				return err
			}
			continue
		}
		if tl.newGen {
			// Offset 0 of the content the file holds since its truncation, with the
			// signature of its first bytes, commits as soon as the lines before the
			// truncation are acked. Without it the committed point would stay on the
			// old content (or carry no signature at all), and a restart could not tell
			// that the file was copied and truncated once more while we were down.
			tl.newGen = false
			tl.tr.flushed.Store(0)
			tl.tr.add(point{SigLen: tl.sigLen, Sig: tl.sig}, true)
		}
		size, err := tl.readToEnd(ctx)
		if err != nil {
			return err
		}
		tl.st.size.Store(size)
		if size >= tl.readOff {
			break
		}
		if err := tl.truncated(ctx, size); err != nil {
			return err
		}
	}
	return tl.flush(ctx)
}

// checkSig verifies, before reading, that the file still starts with the bytes our
// signature covers, and extends the signature up to sigMax bytes. False means the file
// was truncated and written again past our offset before we looked (copytruncate under
// load). One pread of at most 1 KiB per wake-up.
func (tl *tailer) checkSig() bool {
	var buf [sigMax]byte
	n, err := readOnce(tl.f, buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return true // a read error shows up in the read that follows
	}
	if n < tl.sigLen {
		return false // shorter than what we signed: truncated
	}
	// The signed bytes are kept raw once seen: comparing them is a memcmp, where
	// hashing 1 KiB on every read of every busy file was a tenth of the CPU.
	if len(tl.sigRaw) == tl.sigLen && tl.sigLen > 0 {
		if !bytes.Equal(buf[:tl.sigLen], tl.sigRaw) {
			return false
		}
		if n == tl.sigLen {
			return true
		}
	}
	h := fnv.New64a()
	h.Write(buf[:tl.sigLen])
	if tl.sigLen > 0 && h.Sum64() != tl.sig {
		return false
	}
	if n > tl.sigLen {
		h.Write(buf[tl.sigLen:n])
		tl.sig, tl.sigLen = h.Sum64(), n
		tl.head.Store(&point{SigLen: n, Sig: tl.sig})
	}
	tl.sigRaw = append(tl.sigRaw[:0], buf[:tl.sigLen]...)
	return true
}

// readToEnd reads until a read returns nothing and reports the file's size then.
func (tl *tailer) readToEnd(ctx context.Context) (int64, error) {
	bp := readBufs.Get().(*[]byte)
	buf := append((*bp)[:0], tl.carry...)
	defer func() {
		// Keep the unfinished line in a small owned slice; the big buffer goes back.
		tl.carry = append(tl.carry[:0], buf...)
		if cap(buf) == readBufSize {
			*bp = buf[:0]
			readBufs.Put(bp)
		}
	}()
	maxLine := tl.t.cfg.MaxLineBytes
	got := false
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxLine || tl.discarding {
				// An over-long line: send its head once, drop the rest up to its newline.
				if !tl.discarding {
					tl.st.truncated.Add(1)
					tl.line(buf[:maxLine], tl.lineOff+int64(len(buf)), time.Now())
					tl.discarding = true
				}
				tl.lineOff += int64(len(buf))
				buf = buf[:0]
			} else {
				nb := make([]byte, len(buf), min(2*cap(buf), maxLine+1))
				copy(nb, buf)
				buf = nb
			}
		}
		dst := buf[len(buf):cap(buf)]
		n, err := readOnce(tl.f, dst, tl.readOff)
		if n > 0 {
			got = true
			now := time.Now()
			tl.readOff += int64(n)
			tl.st.readOff.Store(tl.readOff)
			tl.st.bytes.Add(int64(n))
			tl.st.lastRead.Store(now.UnixNano())
			buf = buf[:len(buf)+n]
			rest, ferr := tl.lines(ctx, buf, now)
			if ferr != nil {
				buf = buf[:0]
				return 0, ferr
			}
			buf = buf[:copy(buf, rest)]
			if tl.chunk != nil && now.Sub(tl.chunk.Created) >= tl.t.m.cfg.ChunkAge.D() {
				if err := tl.flush(ctx); err != nil {
					return 0, err
				}
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("tail %s: %w", tl.curPath(), err)
		}
		if n < len(dst) || err != nil {
			break // a short read is the end of the file for now
		}
	}
	if got {
		// New bytes were there, so the file did not shrink below our offset; a
		// truncation shows on the next read that finds nothing, through its size.
		tl.lastData = time.Now()
		return tl.readOff, nil
	}
	fi, err := tl.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("tail %s: %w", tl.curPath(), err)
	}
	return fi.Size(), nil
}

// lines handles every complete line in buf and returns the unfinished rest.
func (tl *tailer) lines(ctx context.Context, buf []byte, now time.Time) ([]byte, error) {
	chunkBytes := tl.t.m.cfg.ChunkBytes
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return buf, nil
		}
		end := tl.lineOff + int64(i) + 1
		if tl.discarding {
			tl.discarding = false
			if !tl.mlPending {
				tl.emitEnd = end
			}
		} else {
			tl.line(buf[:i], end, now)
		}
		tl.lineOff = end
		buf = buf[i+1:]
		if tl.chunk != nil && len(tl.chunk.Data) >= chunkBytes {
			if err := tl.flush(ctx); err != nil {
				return nil, err
			}
		}
	}
}

// line handles one line ending at file offset end (after its newline).
func (tl *tailer) line(b []byte, end int64, now time.Time) {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) > tl.t.cfg.MaxLineBytes {
		b = b[:tl.t.cfg.MaxLineBytes]
		tl.st.truncated.Add(1)
	}
	tl.st.lines.Add(1)
	if len(b) == 0 {
		// Empty lines carry nothing; inside a multiline record they are kept.
		if tl.mlPending {
			tl.ml = append(tl.ml, '\n')
			tl.mlEnd, tl.mlAt = end, now
		} else {
			tl.emitEnd = end
		}
		return
	}
	if !tl.t.cfg.KeepInvalidUTF8 && !utf8.Valid(b) {
		tl.scratch = appendValidUTF8(tl.scratch[:0], b)
		b = tl.scratch
	}
	if tl.t.mlStart != nil {
		if tl.mlPending && !tl.t.mlStart.Match(b) {
			if len(tl.ml)+1+len(b) <= tl.t.cfg.MaxLineBytes {
				tl.ml = append(tl.ml, '\n')
				tl.ml = append(tl.ml, b...)
			} else {
				tl.st.truncated.Add(1)
			}
			tl.mlEnd, tl.mlAt = end, now
			return
		}
		tl.emitML()
		tl.ml = append(tl.ml[:0], b...)
		tl.mlPending, tl.mlEnd, tl.mlAt = true, end, now
		return
	}
	tl.emit(b, end, now)
}

func (tl *tailer) emitML() {
	if !tl.mlPending {
		return
	}
	tl.mlPending = false
	tl.emit(tl.ml, tl.mlEnd, tl.mlAt)
}

// emit appends one record to the chunk being filled.
func (tl *tailer) emit(b []byte, end int64, now time.Time) {
	if tl.chunk == nil {
		tl.chunk = proxy.NewPooledChunk(tl.tag)
	}
	var perr bool
	tl.chunk.Data, perr = tl.t.parser.appendEntry(tl.chunk.Data, b, now, tl.curPath())
	if perr {
		tl.st.parseErrors.Add(1)
	}
	tl.chunkN++
	tl.emitEnd = end
}

// flush hands the chunk to the sink with a callback that commits its end. Lines that
// needed no chunk (empty ones) still move the position, in order behind the chunks.
func (tl *tailer) flush(ctx context.Context) error {
	pt := point{Offset: tl.emitEnd, SigLen: tl.sigLen, Sig: tl.sig}
	if tl.chunkN == 0 {
		if tl.emitEnd != tl.tr.flushed.Load() {
			tl.tr.flushed.Store(tl.emitEnd)
			tl.tr.add(pt, true)
		}
		return nil
	}
	c := tl.chunk
	c.Count = tl.chunkN
	tl.chunk, tl.chunkN = nil, 0
	tl.tr.flushed.Store(tl.emitEnd)
	seq := tl.tr.add(pt, false)
	tr := &tl.tr
	c.OnDone(func(proxy.Outcome) { tr.done(seq) })
	if err := tl.t.m.sink.Put(ctx, c); err != nil {
		return fmt.Errorf("tail %s: %w", tl.curPath(), err)
	}
	return nil
}

// truncated handles copytruncate: the file shrank below what we read. Lines we had not
// read yet are in the copy, found by our signature and read from where we stopped; then
// the file is read again from its start.
func (tl *tailer) truncated(ctx context.Context, size int64) error {
	log := tl.t.log.With("path", tl.curPath(), "inode", tl.id.Ino)
	tl.emitML()
	cp := ""
	if tl.sigLen > 0 {
		cp = findBySig(tl.curPath(), tl.sigLen, tl.sig, tl.lineOff, tl.id)
	}
	if cp != "" {
		// The copy starts the unfinished line again: drop ours.
		tl.carry = tl.carry[:0]
		tl.emitEnd = max(tl.emitEnd, tl.lineOff)
		if err := tl.flush(ctx); err != nil {
			return err
		}
		log.Info("file truncated (copytruncate); reading the rest from the copy", "copy", cp, "offset", tl.lineOff)
		tl.t.startCopy(ctx, cp, tl.lineOff, tl.curPath())
	} else {
		if len(tl.carry) > 0 {
			tl.line(tl.carry, tl.lineOff+int64(len(tl.carry)), time.Now())
		}
		if err := tl.flush(ctx); err != nil {
			return err
		}
		log.Warn("file truncated and no copy found; lines written after our last read before the truncation may be lost", "offset", tl.readOff, "size", size)
	}
	tl.readOff, tl.lineOff, tl.emitEnd, tl.sigLen, tl.sig = 0, 0, 0, 0, 0
	tl.sigRaw = tl.sigRaw[:0]
	tl.discarding = false
	tl.newGen = true
	tl.head.Store(nil)
	tl.st.readOff.Store(0)
	return nil
}
