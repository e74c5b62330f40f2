package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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

	mu   sync.Mutex
	sent map[string]TagStats
}

// TagStats counts what an output delivered for one tag.
type TagStats struct {
	Chunks int64 `json:"chunks"`
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
}

// SentByTag returns what was written, per tag.
func (s *Stdout) SentByTag() map[string]TagStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]TagStats, len(s.sent))
	for k, v := range s.sent {
		out[k] = v
	}
	return out
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
		s.mu.Lock()
		if s.sent == nil {
			s.sent = map[string]TagStats{}
		}
		st := s.sent[c.Tag]
		st.Chunks++
		st.Events += int64(c.Count)
		st.Bytes += int64(len(c.Data))
		s.sent[c.Tag] = st
		s.mu.Unlock()
		c.Done(Acked)
	}
}

// WriteJSONLines writes each [time, record] entry as one JSON line. A record that has
// no JSON form (a map key that is neither a string nor a number, say) still gets its
// line, with "record":null and an "error" saying why, so one odd event neither stops
// the output nor is lost without a trace. An error is returned only for entries that
// are not msgpack [time, record] arrays, which the listener never lets through.
func WriteJSONLines(w *bufio.Writer, tag string, entries []byte) error {
	var tb [64]byte
	qtag := appendJSONString(make([]byte, 0, len(tag)+2), tag)
	var rec bytes.Buffer
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
		end, err := msgp.Skip(after)
		if err != nil {
			return err
		}
		sec, nsec, _ := wire.EventTimeOf(body[:len(body)-len(after)])
		w.WriteString(`{"tag":`)
		w.Write(qtag)
		w.WriteString(`,"time":"`)
		w.Write(time.Unix(sec, int64(nsec)).UTC().AppendFormat(tb[:0], time.RFC3339Nano))
		w.WriteString(`","record":`)
		// UnmarshalAsJSON converts every object in its input: give it the record only.
		// Convert aside first: a failure halfway must not leave half a record.
		rec.Reset()
		if _, err := msgp.UnmarshalAsJSON(&rec, after[:len(after)-len(end)]); err != nil {
			w.WriteString(`null,"error":`)
			w.Write(appendJSONString(tb[:0], "record has no JSON form: "+err.Error()))
		} else {
			w.Write(rec.Bytes())
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

// appendJSONString appends s as a JSON string, escaped as encoding/json does (HTML
// characters, U+2028 and U+2029 included; invalid UTF-8 becomes U+FFFD).
// strconv.Quote is not JSON: it writes \x00 and \a.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
