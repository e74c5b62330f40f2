package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/wire"
	"github.com/tinylib/msgp/msgp"
)

// Stdout is the output used when no upstream is configured: every event becomes one
// JSON line {"tag":..,"time":..,"record":{..}} with the time in RFC 3339 with
// nanoseconds (UTC), and the chunk counts as acked once written.
type Stdout struct {
	src    *Ring
	w      *bufio.Writer
	events atomic.Int64
	chunks atomic.Int64
}

// NewStdout writes the ring's chunks to w.
func NewStdout(src *Ring, w io.Writer) *Stdout {
	return &Stdout{src: src, w: bufio.NewWriterSize(w, 64<<10)}
}

// Events is the number of events written.
func (s *Stdout) Events() int64 { return s.events.Load() }

// Run writes chunks until ctx ends or the ring is closed and empty.
func (s *Stdout) Run(ctx context.Context) error {
	for {
		c, err := s.src.Get(ctx)
		if err != nil {
			if errors.Is(err, ErrRingClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := WriteJSONLines(s.w, c.Tag, c.Data); err != nil {
			s.src.Requeue(c)
			return fmt.Errorf("stdout: %w", err)
		}
		if err := s.w.Flush(); err != nil {
			s.src.Requeue(c)
			return fmt.Errorf("stdout: %w", err)
		}
		s.events.Add(int64(c.Count))
		s.chunks.Add(1)
		c.Done(Acked)
	}
}

// WriteJSONLines writes each [time, record] entry as one JSON line.
func WriteJSONLines(w *bufio.Writer, tag string, entries []byte) error {
	var tb [64]byte
	rest := entries
	for len(rest) > 0 {
		_, body, err := msgp.ReadArrayHeaderBytes(rest)
		if err != nil {
			return err
		}
		after, err := msgp.Skip(body)
		if err != nil {
			return err
		}
		sec, nsec, _ := wire.EventTimeOf(body[:len(body)-len(after)])
		w.WriteString(`{"tag":`)
		w.Write(strconv.AppendQuote(tb[:0], tag))
		w.WriteString(`,"time":"`)
		w.Write(time.Unix(sec, int64(nsec)).UTC().AppendFormat(tb[:0], time.RFC3339Nano))
		w.WriteString(`","record":`)
		end, err := msgp.Skip(after)
		if err != nil {
			return err
		}
		// UnmarshalAsJSON converts every object in its input: give it the record only.
		if _, err := msgp.UnmarshalAsJSON(w, after[:len(after)-len(end)]); err != nil {
			return err
		}
		rest = end
		if err := w.WriteByte('}'); err != nil {
			return err
		}
		if err := w.WriteByte('\n'); err != nil {
			return err
		}
	}
	return nil
}
