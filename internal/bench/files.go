package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Line formats a FileWriter writes.
const (
	FormatNone   = "none"
	FormatLTSV   = "ltsv"
	FormatJSON   = "json"
	FormatApache = "apache"
)

// Rotation styles.
const (
	RotateNone         = ""
	RotateRename       = "rename"
	RotateCopyTruncate = "copytruncate"
)

// FileWriterConfig configures a log-file writer.
type FileWriterConfig struct {
	Path string
	Src  string
	// Format is none (default), ltsv, json or apache. Every line carries the stream
	// and the sequence number: "src=S seq=N" (none, apache path), src/seq fields
	// (ltsv, json).
	Format string
	// LineBytes pads each line to about this many bytes, newline included (default 100).
	LineBytes int
	// Rate in lines/s; 0 writes as fast as possible.
	Rate float64
	// Rotate is "", "rename" or "copytruncate"; RotateEvery lines per file.
	Rotate      string
	RotateEvery int64
	// BeforeTruncate, for copytruncate, is called after the copy and before the
	// truncate with the file's size; a test waits there until fwdmux read that far.
	BeforeTruncate func(size int64)
}

// FileWriter appends sequence-numbered lines to a file.
type FileWriter struct {
	cfg     FileWriterConfig
	seq     int64
	inFile  int64
	rotated int
	f       *os.File
	w       *bufio.Writer
	pad     string
	line    []byte
	// Rotations counts rotations done.
	Rotations int
}

// NewFileWriter opens (creates or appends to) cfg.Path.
func NewFileWriter(cfg FileWriterConfig) (*FileWriter, error) {
	if cfg.Format == "" {
		cfg.Format = FormatNone
	}
	if cfg.LineBytes <= 0 {
		cfg.LineBytes = 100
	}
	w := &FileWriter{cfg: cfg}
	if err := w.open(); err != nil {
		return nil, err
	}
	base := len(w.format(0))
	w.pad = strings.Repeat("x", max(cfg.LineBytes-base, 0))
	return w, nil
}

func (w *FileWriter) open() error {
	f, err := os.OpenFile(w.cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w.f = f
	if w.w == nil {
		w.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		w.w.Reset(f)
	}
	return nil
}

// Seq is the number of lines written so far.
func (w *FileWriter) Seq() int64 { return w.seq }

// Src is the stream name.
func (w *FileWriter) Src() string { return w.cfg.Src }

var apacheTime = time.Now().Format("02/Jan/2006:15:04:05 -0700")

func (w *FileWriter) format(seq int64) []byte {
	b := w.line[:0]
	s := strconv.FormatInt(seq, 10)
	switch w.cfg.Format {
	case FormatLTSV:
		b = append(b, "src:"...)
		b = append(b, w.cfg.Src...)
		b = append(b, "\tseq:"...)
		b = append(b, s...)
		b = append(b, "\tmsg:"...)
		b = append(b, w.pad...)
	case FormatJSON:
		b = append(b, `{"src":"`...)
		b = append(b, w.cfg.Src...)
		b = append(b, `","seq":`...)
		b = append(b, s...)
		b = append(b, `,"msg":"`...)
		b = append(b, w.pad...)
		b = append(b, `"}`...)
	case FormatApache:
		b = append(b, `127.0.0.1 - frank [`...)
		b = append(b, apacheTime...)
		b = append(b, `] "GET /x?src=`...)
		b = append(b, w.cfg.Src...)
		b = append(b, `&seq=`...)
		b = append(b, s...)
		b = append(b, `&p=`...)
		b = append(b, w.pad...)
		b = append(b, ` HTTP/1.1" 200 2326 "-" "bench"`...)
	default:
		b = append(b, "src="...)
		b = append(b, w.cfg.Src...)
		b = append(b, " seq="...)
		b = append(b, s...)
		b = append(b, ' ')
		b = append(b, w.pad...)
	}
	b = append(b, '\n')
	w.line = b
	return b
}

// Write appends n lines, paced to cfg.Rate, rotating as configured.
func (w *FileWriter) Write(ctx context.Context, n int64) error {
	start := time.Now()
	base := w.seq
	end := w.seq + n
	lastFlush := time.Now()
	for w.seq < end {
		if w.cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(w.seq-base) / w.cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				if err := w.w.Flush(); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		} else if w.seq&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := w.w.Write(w.format(w.seq)); err != nil {
			return err
		}
		w.seq++
		w.inFile++
		if w.cfg.Rotate != RotateNone && w.cfg.RotateEvery > 0 && w.inFile >= w.cfg.RotateEvery {
			if err := w.rotate(); err != nil {
				return err
			}
		}
		if time.Since(lastFlush) > 10*time.Millisecond {
			if err := w.w.Flush(); err != nil {
				return err
			}
			lastFlush = time.Now()
		}
	}
	return w.w.Flush()
}

func (w *FileWriter) rotate() error {
	if err := w.w.Flush(); err != nil {
		return err
	}
	w.rotated++
	w.Rotations++
	w.inFile = 0
	old := fmt.Sprintf("%s.%d", w.cfg.Path, w.rotated)
	switch w.cfg.Rotate {
	case RotateRename:
		if err := w.f.Close(); err != nil {
			return err
		}
		if err := os.Rename(w.cfg.Path, old); err != nil {
			return err
		}
		return w.open()
	case RotateCopyTruncate:
		data, err := os.ReadFile(w.cfg.Path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(old, data, 0o644); err != nil {
			return err
		}
		if w.cfg.BeforeTruncate != nil {
			w.cfg.BeforeTruncate(int64(len(data)))
		}
		return w.f.Truncate(0)
	}
	return nil
}

// Close flushes and closes the file.
func (w *FileWriter) Close() error {
	if err := w.w.Flush(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}
