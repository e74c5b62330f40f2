package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/tinylib/msgp/msgp"
)

// Mode is the Forward protocol carrier mode of a frame.
type Mode uint8

const (
	ModeMessage Mode = iota + 1
	ModeForward
	ModePackedForward
	ModeCompressedPackedForward
)

func (m Mode) String() string {
	switch m {
	case ModeMessage:
		return "message"
	case ModeForward:
		return "forward"
	case ModePackedForward:
		return "packed_forward"
	case ModeCompressedPackedForward:
		return "compressed_packed_forward"
	}
	return "unknown"
}

// Frame is one decoded frame. Its slices point into the decoder's buffers and stay valid
// until the next call to Next or Parse.
type Frame struct {
	Mode Mode
	// Tag as sent (str or bin).
	Tag []byte
	// Entries are the frame's valid events as concatenated msgpack [time, record]
	// arrays, byte for byte as the sender encoded them (Message mode: the time and
	// record wrapped in a 2-array header).
	Entries []byte
	// Count is the number of entries in Entries.
	Count int
	// Invalid counts entries dropped because they were not [integer|EventTime, map].
	Invalid int
	// Chunk is the "chunk" option: when non-nil the sender waits for {"ack": Chunk}.
	Chunk []byte
	// Size is the "size" option, or -1 when absent.
	Size int
	// Compression is the "compressed" option: "", "text", "gzip" or "zstd".
	Compression string
	// JSON is true when the frame arrived JSON-encoded; its ack must be JSON too.
	JSON bool
	// Bytes is the frame's size on the wire.
	Bytes int
}

// Limits bound what a peer can make the decoder hold. Zero fields take the defaults.
type Limits struct {
	// MaxFrameBytes bounds one frame on the wire (default 32 MiB: fluentd's default
	// memory buffer chunk is 8 MiB; fluent-bit's are ~2 MiB).
	MaxFrameBytes int `toml:"max_frame_bytes" json:"max_frame_bytes"`
	// MaxDecompressedBytes bounds a compressed stream once inflated (default 64 MiB;
	// fluentd allows 256 MiB, but every connection may hold one at a time).
	MaxDecompressedBytes int `toml:"max_decompressed_bytes" json:"max_decompressed_bytes"`
	// MaxDepth bounds container nesting inside a frame (default 100).
	MaxDepth int `toml:"max_depth" json:"max_depth"`
}

// WithDefaults fills zero fields.
func (l Limits) WithDefaults() Limits {
	if l.MaxFrameBytes <= 0 {
		l.MaxFrameBytes = 32 << 20
	}
	if l.MaxDecompressedBytes <= 0 {
		l.MaxDecompressedBytes = 64 << 20
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 100
	}
	return l
}

// Parser turns complete frames (byte slices) into Frames. It owns the scratch buffers
// and decompressors; reuse one per connection. The zero value is not usable: use
// NewParser. Close releases the zstd decoder.
type Parser struct {
	lim     Limits
	gate    InflateGate
	scratch []byte // Message-mode entry, decompressed stream, filtered entries
	inflate []byte
	gz      *gzip.Reader
	zs      *zstd.Decoder
	br      bytes.Reader // gzip input
	zbr     bytes.Reader // zstd input
}

// NewParser returns a parser with the given limits (zero fields take defaults).
func NewParser(lim Limits) *Parser {
	return &Parser{lim: lim.WithDefaults()}
}

// InflateGate bounds how many compressed streams the parsers that share it inflate at
// once. Inflating is CPU work that holds up to MaxDecompressedBytes of memory; without
// a bound, clients sending compressed frames (or decompression bombs) faster than the
// CPU inflates them would pile up inflations, and their memory, without limit.
type InflateGate chan struct{}

// NewInflateGate lets n streams inflate at once (n < 1 is 1).
func NewInflateGate(n int) InflateGate { return make(InflateGate, max(n, 1)) }

// SetInflateGate makes the parser take a slot of g for each inflation (nil: none).
func (p *Parser) SetInflateGate(g InflateGate) { p.gate = g }

// Close releases decompressor resources. Idempotent.
func (p *Parser) Close() {
	if p.zs != nil {
		p.zs.Close()
		p.zs = nil
	}
}

// Parse decodes one complete frame b. base is b's offset in the stream, for errors.
// A top-level nil (keep-alive) yields a frame with Mode 0 and no entries.
func (p *Parser) Parse(b []byte, base int64, f *Frame) error {
	*f = Frame{Size: -1, Bytes: len(b)}
	if len(b) == 1 && b[0] == 0xc0 {
		return nil
	}
	n, rest, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return derr(base, ErrBadFrame, "frame is %s, want an array", typeName(b))
	}
	if n < 2 || n > 4 {
		return derr(base, ErrBadFrame, "frame is an array of %d elements, want 2 to 4", n)
	}
	off := func(r []byte) int64 { return base + int64(len(b)-len(r)) }
	// tag: str, or bin from lenient senders
	var tag []byte
	tagStart := rest
	switch msgp.NextType(rest) {
	case msgp.StrType:
		tag, rest, err = msgp.ReadStringZC(rest)
	case msgp.BinType:
		tag, rest, err = msgp.ReadBytesZC(rest)
	default:
		return derr(off(rest), ErrBadFrame, "tag is %s, want a string", typeName(rest))
	}
	if err != nil {
		return derr(off(tagStart), ErrMalformed, "tag: %v", err)
	}
	f.Tag = tag
	second := rest
	switch t := msgp.NextType(rest); t {
	case msgp.IntType, msgp.UintType, msgp.ExtensionType, msgp.Float64Type, msgp.Float32Type,
		msgp.TimeType, msgp.Complex64Type, msgp.Complex128Type:
		// Message: [tag, time, record, option?]. msgp reports some extension types
		// (-1, 3, 4, 5) under their own names; they are still a (bad) time here.
		if n < 3 {
			return derr(off(rest), ErrBadFrame, "message mode frame has %d elements, want 3 or 4", n)
		}
		f.Mode = ModeMessage
		start := rest
		rest, err = msgp.Skip(rest) // time
		if err != nil {
			return derr(off(start), ErrMalformed, "time: %v", err)
		}
		timeRaw := start[:len(start)-len(rest)]
		recStart := rest
		rest, err = msgp.Skip(rest)
		if err != nil {
			return derr(off(recStart), ErrMalformed, "record: %v", err)
		}
		rec := recStart[:len(recStart)-len(rest)]
		if validTime(timeRaw) && msgp.NextType(rec) == msgp.MapType {
			p.scratch = append(p.scratch[:0], 0x92)
			p.scratch = append(p.scratch, timeRaw...)
			p.scratch = append(p.scratch, rec...)
			f.Entries = p.scratch
			f.Count = 1
		} else {
			f.Invalid = 1
		}
		if n == 4 {
			if rest, err = p.options(rest, f, off); err != nil {
				return err
			}
		}
	case msgp.ArrayType:
		// Forward: [tag, [[time, record], ...], option?]
		if n > 3 {
			return derr(off(rest), ErrBadFrame, "forward mode frame has %d elements, want 2 or 3", n)
		}
		f.Mode = ModeForward
		cnt, body, err := msgp.ReadArrayHeaderBytes(rest)
		if err != nil {
			return derr(off(rest), ErrMalformed, "entries: %v", err)
		}
		after, err := p.entries(body, int(cnt), off(body), f)
		if err != nil {
			return err
		}
		rest = after
		if n == 3 {
			if rest, err = p.options(rest, f, off); err != nil {
				return err
			}
		}
	case msgp.StrType, msgp.BinType:
		// PackedForward / CompressedPackedForward: [tag, stream, option?]
		if n > 3 {
			return derr(off(rest), ErrBadFrame, "packed forward frame has %d elements, want 2 or 3", n)
		}
		var stream []byte
		if t == msgp.StrType {
			stream, rest, err = msgp.ReadStringZC(rest)
		} else {
			stream, rest, err = msgp.ReadBytesZC(rest)
		}
		if err != nil {
			return derr(off(second), ErrMalformed, "entry stream: %v", err)
		}
		streamOff := off(rest) - int64(len(stream))
		if n == 3 {
			if rest, err = p.options(rest, f, off); err != nil {
				return err
			}
		}
		f.Mode = ModePackedForward
		switch f.Compression {
		case "", "text":
		case "gzip":
			f.Mode = ModeCompressedPackedForward
			if stream, err = p.gunzip(stream); err != nil {
				return derr(streamOff, errOr(err), "gzip: %v", err)
			}
			streamOff = 0 // offsets inside the inflated stream
		case "zstd":
			f.Mode = ModeCompressedPackedForward
			if stream, err = p.unzstd(stream); err != nil {
				return derr(streamOff, errOr(err), "zstd: %v", err)
			}
			streamOff = 0
		default:
			return derr(streamOff, ErrCompression, "unsupported compressed=%q", f.Compression)
		}
		if _, err := p.entries(stream, -1, streamOff, f); err != nil {
			return err
		}
	case msgp.NilType:
		return derr(off(rest), ErrBadFrame, "second element is nil")
	default:
		return derr(off(rest), ErrBadFrame, "second element is %s, want time, array or stream", typeName(rest))
	}
	if len(rest) != 0 {
		return derr(off(rest), ErrMalformed, "%d trailing bytes inside the frame", len(rest))
	}
	return nil
}

// errOr maps a decompression error to ErrDecompressedTooLarge when it is one, else
// ErrCompression.
func errOr(err error) error {
	if errors.Is(err, ErrDecompressedTooLarge) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return ErrDecompressedTooLarge
	}
	return ErrCompression
}

// entries validates a run of entries. With count >= 0 it reads exactly count entries
// (Forward mode) and returns the bytes after them; with count < 0 it consumes all of b
// (a packed stream). Valid entries end up in f.Entries: a sub-slice of b when all are
// valid, a filtered copy in scratch otherwise.
func (p *Parser) entries(b []byte, count int, base int64, f *Frame) ([]byte, error) {
	rest := b
	valid := 0
	filtered := false
	segStart := 0 // start of the current run of valid entries in b, when filtering
	for i := 0; count < 0 && len(rest) > 0 || i < count; i++ {
		if len(rest) == 0 {
			return nil, derr(base+int64(len(b)), ErrMalformed, "entry %d of %d missing", i, count)
		}
		start := len(b) - len(rest)
		ok, after, err := entry(rest)
		if err != nil {
			return nil, derr(base+int64(start), ErrMalformed, "entry %d: %v", i, err)
		}
		end := len(b) - len(after)
		rest = after
		if ok {
			valid++
			continue
		}
		f.Invalid++
		if !filtered {
			filtered = true
			p.scratch = p.scratch[:0]
		}
		p.scratch = append(p.scratch, b[segStart:start]...)
		segStart = end
	}
	consumed := len(b) - len(rest)
	if filtered {
		p.scratch = append(p.scratch, b[segStart:consumed]...)
		f.Entries = p.scratch
	} else {
		f.Entries = b[:consumed]
	}
	f.Count = valid
	return rest, nil
}

// entry checks one entry: a 2-array of a valid time and a map. ok is false for a
// well-formed object that is not a valid event; err is set when b is not msgpack.
func entry(b []byte) (ok bool, rest []byte, err error) {
	if len(b) > 0 && b[0] == 0x92 {
		// The common case: the time walked by hand, the record by skip.
		t := b[1:]
		var tEnd int
		switch {
		case len(t) >= 10 && t[0] == 0xd7 && t[1] == EventTimeExt:
			tEnd = 10
		case len(t) >= 1 && (t[0] <= 0x7f || t[0] >= 0xe0):
			tEnd = 1
		case len(t) >= 5 && (t[0] == 0xce || t[0] == 0xd2):
			tEnd = 5
		}
		if tEnd > 0 {
			r := t[tEnd:]
			if len(r) > 0 && (r[0]&0xf0 == 0x80 || r[0] == 0xde || r[0] == 0xdf) {
				n, err := skip(r)
				if err != nil {
					return false, b, err
				}
				return true, r[n:], nil
			}
		}
	}
	n, err := skip(b)
	if err != nil {
		return false, b, err
	}
	obj, rest := b[:n], b[n:]
	cnt, body, err := msgp.ReadArrayHeaderBytes(obj)
	if err != nil || cnt != 2 {
		return false, rest, nil
	}
	tn, _ := skip(body) // cannot fail: obj is complete
	if !validTime(body[:tn]) {
		return false, rest, nil
	}
	return msgp.NextType(body[tn:]) == msgp.MapType, rest, nil
}

// validTime accepts an integer, an EventTime (ext 0, 8 bytes, fixext8 or ext8), or the
// v1.5 form [EventTime|integer, {metadata}].
func validTime(b []byte) bool {
	switch msgp.NextType(b) {
	case msgp.IntType, msgp.UintType:
		return true
	case msgp.ExtensionType:
		return isEventTime(b)
	case msgp.ArrayType:
		n, r, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil || n != 2 {
			return false
		}
		t := msgp.NextType(r)
		if t == msgp.ExtensionType {
			if !isEventTime(r) {
				return false
			}
		} else if t != msgp.IntType && t != msgp.UintType {
			return false
		}
		r, err = msgp.Skip(r)
		return err == nil && msgp.NextType(r) == msgp.MapType
	}
	return false
}

func isEventTime(b []byte) bool {
	switch {
	case len(b) >= 10 && b[0] == 0xd7:
		return b[1] == EventTimeExt
	case len(b) >= 11 && b[0] == 0xc7 && b[1] == 8:
		return b[2] == EventTimeExt
	}
	return false
}

// EventTimeOf returns seconds and nanoseconds of a valid msgpack time (integer,
// EventTime or the v1.5 array form).
func EventTimeOf(b []byte) (sec int64, nsec uint32, ok bool) {
	switch msgp.NextType(b) {
	case msgp.IntType, msgp.UintType:
		i, _, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			u, _, err2 := msgp.ReadUint64Bytes(b)
			if err2 != nil {
				return 0, 0, false
			}
			i = int64(u)
		}
		return i, 0, true
	case msgp.ExtensionType:
		var p []byte
		switch {
		case len(b) >= 10 && b[0] == 0xd7 && b[1] == EventTimeExt:
			p = b[2:10]
		case len(b) >= 11 && b[0] == 0xc7 && b[1] == 8 && b[2] == EventTimeExt:
			p = b[3:11]
		default:
			return 0, 0, false
		}
		return int64(binary.BigEndian.Uint32(p)), binary.BigEndian.Uint32(p[4:]), true
	case msgp.ArrayType:
		// v1.5 [time, metadata]: one level only (recursing on nested arrays would let
		// a hostile input grow the stack without bound).
		n, r, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil || n != 2 || msgp.NextType(r) == msgp.ArrayType {
			return 0, 0, false
		}
		return EventTimeOf(r)
	}
	return 0, 0, false
}

// options reads the option map: chunk, size, compressed; unknown keys are ignored and
// nil is an empty option.
func (p *Parser) options(b []byte, f *Frame, off func([]byte) int64) ([]byte, error) {
	if msgp.IsNil(b) {
		return b[1:], nil
	}
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, derr(off(b), ErrBadFrame, "option is %s, want a map", typeName(b))
	}
	for i := uint32(0); i < n; i++ {
		var key []byte
		kStart := rest
		switch msgp.NextType(rest) {
		case msgp.StrType:
			key, rest, err = msgp.ReadStringZC(rest)
		case msgp.BinType:
			key, rest, err = msgp.ReadBytesZC(rest)
		default:
			rest, err = msgp.Skip(rest)
		}
		if err != nil {
			return nil, derr(off(kStart), ErrMalformed, "option key: %v", err)
		}
		vStart := rest
		switch string(key) {
		case "chunk":
			switch msgp.NextType(rest) {
			case msgp.StrType:
				f.Chunk, rest, err = msgp.ReadStringZC(rest)
			case msgp.BinType:
				f.Chunk, rest, err = msgp.ReadBytesZC(rest)
			case msgp.NilType:
				rest, err = msgp.ReadNilBytes(rest)
			default:
				return nil, derr(off(vStart), ErrBadFrame, "option chunk is %s, want a string", typeName(rest))
			}
			// An empty chunk stays non-nil: fluentd acks it ("" is truthy in Ruby), and
			// a sender that asked for it waits for that ack.
		case "size":
			var sz int64
			sz, rest, err = msgp.ReadInt64Bytes(rest)
			if err != nil {
				rest, err = msgp.Skip(vStart) // a wrong-typed size is advisory: ignore it
			} else {
				f.Size = int(sz)
			}
		case "compressed":
			var v []byte
			switch msgp.NextType(rest) {
			case msgp.StrType:
				v, rest, err = msgp.ReadStringZC(rest)
			case msgp.BinType:
				v, rest, err = msgp.ReadBytesZC(rest)
			case msgp.NilType:
				rest, err = msgp.ReadNilBytes(rest) // nil: as if absent
			default:
				return nil, derr(off(vStart), ErrBadFrame, "option compressed is %s, want a string", typeName(rest))
			}
			f.Compression = internCompression(v)
		default:
			rest, err = msgp.Skip(rest)
		}
		if err != nil {
			return nil, derr(off(vStart), ErrMalformed, "option value: %v", err)
		}
	}
	return rest, nil
}

// internCompression avoids an allocation per frame for the usual values.
func internCompression(v []byte) string {
	switch string(v) {
	case "text":
		return "text"
	case "gzip":
		return "gzip"
	case "zstd":
		return "zstd"
	case "":
		return ""
	}
	return string(v)
}

// gunzip inflates a gzip stream of one or more members, stopping at the limit.
func (p *Parser) gunzip(src []byte) ([]byte, error) {
	return p.readLimited(func() (io.Reader, error) {
		p.br.Reset(src)
		var err error
		if p.gz == nil {
			p.gz, err = gzip.NewReader(&p.br)
		} else {
			err = p.gz.Reset(&p.br)
		}
		if err != nil {
			return nil, err
		}
		p.gz.Multistream(true)
		return p.gz, nil
	})
}

// inflateDirect is how much of a compressed stream is inflated straight into the
// parser's buffer. A longer stream is measured first and then inflated once more into
// a buffer of its exact size: a decompression bomb then costs CPU up to the limit but
// no memory, and a large honest frame one allocation instead of a doubling series
// whose garbage, under GC pacing, cost several times its size in RSS.
const inflateDirect = 4 << 20

// readLimited inflates the stream that open (re)starts, up to MaxDecompressedBytes.
func (p *Parser) readLimited(open func() (io.Reader, error)) ([]byte, error) {
	if p.gate != nil {
		// Holders only inflate (bounded CPU work), so a waiter always gets its turn.
		p.gate <- struct{}{}
		defer func() { <-p.gate }()
	}
	r, err := open()
	if err != nil {
		return nil, err
	}
	limit := p.lim.MaxDecompressedBytes
	direct := min(limit, inflateDirect)
	out := p.inflate[:0]
	for {
		if len(out) == cap(out) {
			if len(out) > direct {
				break // longer than the direct part: measure it
			}
			out = slices.Grow(out, min(max(cap(out), 64<<10), direct+1-len(out)))
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF && len(out) <= limit {
			p.keep(out)
			return out, nil
		}
		if err != nil && err != io.EOF {
			p.keep(out[:0])
			return nil, err
		}
		if len(out) > limit {
			p.keep(out[:0])
			return nil, ErrDecompressedTooLarge
		}
	}
	// Measure the rest, reading into the direct buffer's tail, without keeping it.
	total := int64(len(out))
	scratch := out[len(out)-min(len(out), 64<<10):]
	p.keep(out[:0])
	for {
		n, err := r.Read(scratch[:cap(scratch)])
		total += int64(n)
		if total > int64(limit) {
			return nil, ErrDecompressedTooLarge
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if r, err = open(); err != nil {
		return nil, err
	}
	// One byte more than measured: a stream that inflates differently the second
	// time (it cannot, but the reader is not ours) shows as an error, not a short read.
	big := make([]byte, total+1)
	n, err := io.ReadFull(r, big)
	if err != io.ErrUnexpectedEOF || int64(n) != total {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("stream inflated to %d bytes, then to %d", total, n)
		}
		return nil, err
	}
	return big[:n], nil
}

// keep retains a moderate buffer for the next frame.
func (p *Parser) keep(b []byte) {
	if cap(b) <= inflateDirect+1 {
		p.inflate = b[:0]
	} else {
		p.inflate = nil
	}
}

func (p *Parser) unzstd(src []byte) ([]byte, error) {
	if p.zs == nil {
		var err error
		// The output is capped by readLimited. zstd's own caps only bound the window
		// (history) a frame may declare: never below what ordinary encoders use (an
		// 8 MiB window; zstd clamps the window to MaxMemory and refuses one under
		// 1 KiB), or a small limit would reject every zstd frame.
		const minWindow = 8 << 20
		window := uint64(max(min(p.lim.MaxDecompressedBytes, 1<<30), minWindow))
		p.zs, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(max(uint64(p.lim.MaxDecompressedBytes)+1, window)),
			zstd.WithDecoderMaxWindow(window))
		if err != nil {
			return nil, err
		}
	}
	return p.readLimited(func() (io.Reader, error) {
		p.zbr.Reset(src)
		if err := p.zs.Reset(&p.zbr); err != nil {
			return nil, err
		}
		return p.zs, nil
	})
}

// typeName describes the msgpack type at b[0] for error messages.
func typeName(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	t := msgp.NextType(b)
	switch t {
	case msgp.InvalidType:
		return "invalid"
	case msgp.StrType:
		return "a string"
	case msgp.BinType:
		return "binary"
	case msgp.MapType:
		return "a map"
	case msgp.ArrayType:
		return "an array"
	case msgp.Float64Type, msgp.Float32Type:
		return "a float"
	case msgp.IntType, msgp.UintType:
		return "an integer"
	case msgp.NilType:
		return "nil"
	case msgp.BoolType:
		return "a boolean"
	case msgp.ExtensionType:
		return "an extension"
	}
	return t.String()
}
