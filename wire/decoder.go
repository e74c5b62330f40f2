package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"

	"github.com/tinylib/msgp/msgp"
)

const (
	initialBuf = 64 << 10
	readChunk  = 32 << 10
)

// Decoder frames a stream into Forward protocol frames. It detects JSON framing from
// the first byte of the stream ('[' or whitespace) as fluentd does. Not safe for
// concurrent use; one per connection.
type Decoder struct {
	r     io.Reader
	lim   Limits
	p     *Parser
	buf   []byte
	start int   // first unconsumed byte
	end   int   // end of valid data
	off   int64 // stream offset of buf[0]
	sc    scanner
	js    jsonScanner
	mode  int8 // 0 unknown, 1 msgpack, 2 json
	err   error
	jbuf  []byte // JSON frame converted to msgpack
	jlen  int    // wire size of the last JSON frame
	last  int    // size of the last object framed, to size the buffer
}

// NewDecoder returns a decoder reading from r. Zero fields of lim take defaults.
func NewDecoder(r io.Reader, lim Limits) *Decoder {
	lim = lim.WithDefaults()
	return &Decoder{r: r, lim: lim, p: NewParser(lim)}
}

// Close releases the decoder's decompressors. Idempotent.
func (d *Decoder) Close() { d.p.Close() }

// SetInflateGate shares g, which bounds concurrent inflations, with other decoders.
func (d *Decoder) SetInflateGate(g InflateGate) { d.p.SetInflateGate(g) }

// Buffered returns the number of bytes read from the stream and not yet decoded. Zero
// after a frame means the sender has nothing more in flight on this stream right now:
// the moment to flush a partial batch.
func (d *Decoder) Buffered() int { return d.end - d.start }

// JSON reports whether the stream was detected as JSON-framed.
func (d *Decoder) JSON() bool { return d.mode == 2 }

// Offset is the stream offset of the next undecoded byte.
func (d *Decoder) Offset() int64 { return d.off + int64(d.start) }

// fill reads more bytes, making room for a frame of at least need bytes from d.start.
func (d *Decoder) fill(need int) error {
	if d.err != nil {
		return d.err
	}
	if d.start == d.end && d.start > 0 {
		d.off += int64(d.start)
		d.start, d.end = 0, 0
		if cap(d.buf) > 4*initialBuf && cap(d.buf) > 4*d.last {
			// A frame far larger than the current traffic passed: do not keep its
			// buffer. A connection that keeps sending large frames keeps its buffer
			// (dropping it every frame would allocate it again every frame).
			d.buf = nil
		}
	}
	want := max(need, d.end-d.start+readChunk)
	if d.buf == nil {
		d.buf = make([]byte, max(initialBuf, min(want, d.lim.MaxFrameBytes+readChunk)))
	}
	if len(d.buf)-d.start < want {
		if d.start > 0 {
			n := copy(d.buf, d.buf[d.start:d.end])
			d.off += int64(d.start)
			d.start, d.end = 0, n
		}
		if len(d.buf) < want {
			size := max(2*len(d.buf), want)
			size = min(size, max(want, d.lim.MaxFrameBytes+readChunk))
			nb := make([]byte, size)
			copy(nb, d.buf[:d.end])
			d.buf = nb
		}
	}
	n, err := d.r.Read(d.buf[d.end:])
	for i := 0; n == 0 && err == nil; i++ {
		// A reader that keeps returning (0, nil) would spin this loop forever.
		if i == 100 {
			err = io.ErrNoProgress
			break
		}
		n, err = d.r.Read(d.buf[d.end:])
	}
	d.end += n
	if err != nil {
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			// A read deadline is how the caller wakes up to flush a batch or check
			// idleness; the stream is intact and the next call resumes the frame.
			return err
		}
		if n > 0 {
			d.err = err // deliver what arrived first
			return nil
		}
		d.err = err
		return err
	}
	return nil
}

func (d *Decoder) eof(err error) error {
	if err == io.EOF {
		if d.end > d.start {
			return &DecodeError{Offset: d.Offset(), Err: ErrTruncated, Detail: strconv.Itoa(d.end-d.start) + " bytes of an unfinished frame"}
		}
		return io.EOF
	}
	return err
}

// NextRaw returns the next complete msgpack object in the stream, without interpreting
// it. Used for handshake messages and acks.
func (d *Decoder) NextRaw() ([]byte, error) {
	d.sc.reset()
	for {
		done, err := d.sc.scan(d.buf[d.start:d.end], d.lim.MaxFrameBytes, d.lim.MaxDepth)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.Offset += d.Offset()
			}
			return nil, err
		}
		if done {
			b := d.buf[d.start : d.start+d.sc.pos]
			d.last = d.sc.pos
			d.start += d.sc.pos
			return b, nil
		}
		if err := d.fill(d.sc.pos + 1); err != nil {
			return nil, d.eof(err)
		}
	}
}

// Next decodes the next frame into f, skipping nil keep-alives. It returns io.EOF at a
// clean end of stream, and a *DecodeError for bad input, after which the stream is out
// of sync and must be closed.
func (d *Decoder) Next(f *Frame) error {
	for {
		if d.mode == 0 {
			for d.end == d.start {
				if err := d.fill(1); err != nil {
					return d.eof(err)
				}
			}
			switch d.buf[d.start] {
			case '[', ' ', '\t', '\r', '\n':
				d.mode = 2
			default:
				d.mode = 1
			}
		}
		var raw []byte
		var err error
		base := d.Offset()
		if d.mode == 2 {
			raw, err = d.nextJSON()
		} else {
			raw, err = d.NextRaw()
		}
		if err != nil {
			return err
		}
		if len(raw) == 1 && raw[0] == 0xc0 {
			continue // keep-alive
		}
		if err := d.p.Parse(raw, base, f); err != nil {
			return err
		}
		if d.mode == 2 {
			f.JSON = true
			f.Bytes = d.jlen // the JSON text, not its msgpack conversion
		} else {
			// Keep-alives already buffered behind the frame carry nothing: consume them
			// now, so Buffered() says "drained" and the caller flushes without waiting.
			for d.start < d.end && d.buf[d.start] == 0xc0 {
				d.start++
			}
		}
		return nil
	}
}

// jsonScanner finds the end of one top-level JSON array across reads.
type jsonScanner struct {
	pos     int
	depth   int
	inStr   bool
	esc     bool
	started bool
}

func (d *Decoder) nextJSON() ([]byte, error) {
	// skip whitespace between frames
	for {
		for d.start < d.end && isJSONSpace(d.buf[d.start]) {
			d.start++
		}
		if d.start < d.end {
			break
		}
		if err := d.fill(1); err != nil {
			return nil, d.eof(err)
		}
	}
	if d.buf[d.start] != '[' {
		return nil, derr(d.Offset(), ErrBadJSON, "frame starts with %q, want '['", d.buf[d.start])
	}
	d.js = jsonScanner{}
	for {
		done, err := d.js.scan(d.buf[d.start:d.end], d.lim.MaxFrameBytes)
		if err != nil {
			return nil, derr(d.Offset()+int64(d.js.pos), ErrFrameTooLarge, "%v", err)
		}
		if done {
			frame := d.buf[d.start : d.start+d.js.pos]
			base := d.Offset()
			d.jlen = len(frame)
			d.last = len(frame)
			d.start += d.js.pos
			out, err := jsonFrameToMsgpack(d.jbuf[:0], frame, d.lim.MaxDepth)
			if err != nil {
				return nil, derr(base, ErrBadJSON, "%v", err)
			}
			d.jbuf = out
			return out, nil
		}
		if err := d.fill(d.js.pos + 1); err != nil {
			return nil, d.eof(err)
		}
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (s *jsonScanner) scan(b []byte, limit int) (bool, error) {
	for ; s.pos < len(b); s.pos++ {
		if s.pos >= limit {
			return false, errors.New("JSON frame larger than the limit")
		}
		c := b[s.pos]
		if s.inStr {
			switch {
			case s.esc:
				s.esc = false
			case c == '\\':
				s.esc = true
			case c == '"':
				s.inStr = false
			}
			continue
		}
		switch c {
		case '"':
			s.inStr = true
		case '[', '{':
			s.depth++
			s.started = true
		case ']', '}':
			s.depth--
			if s.depth == 0 && s.started {
				s.pos++
				return true, nil
			}
		}
	}
	return false, nil
}

// jsonFrameToMsgpack converts one JSON frame to msgpack, keeping key order. In
// Message mode a fractional time becomes an EventTime (JSON has no other way to carry
// sub-second time).
func jsonFrameToMsgpack(dst, frame []byte, maxDepth int) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.UseNumber()
	out, err := jsonValue(dst, dec, 0, maxDepth, true)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the frame")
	}
	return out, nil
}

func jsonValue(dst []byte, dec *json.Decoder, depth, maxDepth int, top bool) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("nesting deeper than the limit")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		var body []byte
		n := 0
		switch v {
		case '[':
			for dec.More() {
				if top && n == 1 {
					body, err = jsonTime(body, dec, depth+1, maxDepth)
				} else {
					body, err = jsonValue(body, dec, depth+1, maxDepth, false)
				}
				if err != nil {
					return nil, err
				}
				n++
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			dst = msgp.AppendArrayHeader(dst, uint32(n))
		case '{':
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("object key is not a string")
				}
				body = msgp.AppendString(body, k)
				if body, err = jsonValue(body, dec, depth+1, maxDepth, false); err != nil {
					return nil, err
				}
				n++
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			dst = msgp.AppendMapHeader(dst, uint32(n))
		default:
			return nil, errors.New("unexpected delimiter")
		}
		return append(dst, body...), nil
	case string:
		return msgp.AppendString(dst, v), nil
	case json.Number:
		return appendJSONNumber(dst, v), nil
	case bool:
		return msgp.AppendBool(dst, v), nil
	case nil:
		return msgp.AppendNil(dst), nil
	}
	return nil, errors.New("unexpected token")
}

func appendJSONNumber(dst []byte, v json.Number) []byte {
	if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return msgp.AppendInt64(dst, i)
	}
	if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
		return msgp.AppendUint64(dst, u)
	}
	f, _ := strconv.ParseFloat(string(v), 64)
	return msgp.AppendFloat64(dst, f)
}

func jsonTime(dst []byte, dec *json.Decoder, depth, maxDepth int) ([]byte, error) {
	if !dec.More() {
		return dst, nil
	}
	// Peek by decoding one value as raw JSON.
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	s := string(raw)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return msgp.AppendInt64(dst, i), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1<<32 {
		sec := uint32(f)
		nsec := uint32((f - float64(sec)) * 1e9)
		return AppendEventTime(dst, sec, nsec), nil
	}
	// Not a time: convert generically (Forward mode's entries array lands here).
	sub := json.NewDecoder(bytes.NewReader(raw))
	sub.UseNumber()
	return jsonValue(dst, sub, depth, maxDepth, false)
}
