package wire

import (
	"encoding/binary"
	"errors"
)

// scanner finds the end of one msgpack object in a stream that arrives in pieces. It
// keeps its place across calls, so a frame delivered in many reads is scanned once,
// and it checks every declared length against the frame limit before anyone waits for
// or allocates those bytes.
type scanner struct {
	pos   int   // bytes of the object scanned so far (may run past the buffer: a str payload still to come)
	stack []int // elements still expected in each open container; [0] is the object itself
}

func (s *scanner) reset() {
	s.pos = 0
	s.stack = append(s.stack[:0], 1)
}

// scan continues over buf, which holds the object's bytes from its first byte. It
// returns done when the object is complete (its length is s.pos), or !done when more
// bytes are needed (at least s.pos+1, or s.pos when a payload is still arriving).
func (s *scanner) scan(buf []byte, maxBytes, maxDepth int) (done bool, err error) {
	for len(s.stack) > 0 {
		if s.pos >= len(buf) {
			return false, nil
		}
		hdr, payload, elems, ok, bad := header(buf[s.pos:])
		if bad {
			return false, derr(int64(s.pos), ErrMalformed, "invalid msgpack prefix 0x%02x", buf[s.pos])
		}
		if !ok {
			return false, nil
		}
		at := s.pos // errors point at the header at fault
		next := s.pos + hdr + payload
		if next > maxBytes || next < s.pos {
			return false, derr(int64(at), ErrFrameTooLarge, "object declares %d bytes, limit is %d", hdr+payload, maxBytes)
		}
		s.pos = next
		s.stack[len(s.stack)-1]--
		if elems > 0 {
			// stack[0] is the object itself, not a container: len(stack)-1 are open.
			if len(s.stack) > maxDepth {
				return false, derr(int64(at), ErrTooDeep, "more than %d nested containers", maxDepth)
			}
			// Every element takes at least one byte: a count beyond the limit is a lie.
			if elems > maxBytes-s.pos {
				return false, derr(int64(at), ErrFrameTooLarge, "container declares %d elements, limit is %d bytes", elems, maxBytes)
			}
			s.stack = append(s.stack, elems)
		}
		for len(s.stack) > 0 && s.stack[len(s.stack)-1] == 0 {
			s.stack = s.stack[:len(s.stack)-1]
		}
	}
	return s.pos <= len(buf), nil
}

// header decodes the msgpack header at b[0]: its own size, the size of a byte payload
// that follows (str, bin, ext), and the number of child elements (arrays, maps: 2 per
// pair). ok is false when b is too short to hold the header; bad when the prefix is
// invalid (0xc1).
func header(b []byte) (hdr, payload, elems int, ok, bad bool) {
	c := b[0]
	switch {
	case c <= 0x7f, c >= 0xe0:
		return 1, 0, 0, true, false
	case c <= 0x8f:
		return 1, 0, 2 * int(c&0x0f), true, false
	case c <= 0x9f:
		return 1, 0, int(c & 0x0f), true, false
	case c <= 0xbf:
		return 1, int(c & 0x1f), 0, true, false
	}
	var need int
	switch c {
	case 0xc0, 0xc2, 0xc3:
		return 1, 0, 0, true, false
	case 0xc1:
		return 0, 0, 0, false, true
	case 0xc4, 0xd9: // bin8, str8
		need = 2
	case 0xc5, 0xda: // bin16, str16
		need = 3
	case 0xc6, 0xdb: // bin32, str32
		need = 5
	case 0xc7:
		need = 3
	case 0xc8:
		need = 4
	case 0xc9:
		need = 6
	case 0xca:
		return 5, 0, 0, true, false
	case 0xcb:
		return 9, 0, 0, true, false
	case 0xcc, 0xd0:
		return 2, 0, 0, true, false
	case 0xcd, 0xd1:
		return 3, 0, 0, true, false
	case 0xce, 0xd2:
		return 5, 0, 0, true, false
	case 0xcf, 0xd3:
		return 9, 0, 0, true, false
	case 0xd4:
		return 3, 0, 0, true, false
	case 0xd5:
		return 4, 0, 0, true, false
	case 0xd6:
		return 6, 0, 0, true, false
	case 0xd7:
		return 10, 0, 0, true, false
	case 0xd8:
		return 18, 0, 0, true, false
	case 0xdc, 0xde:
		need = 3
	case 0xdd, 0xdf:
		need = 5
	}
	if len(b) < need {
		return 0, 0, 0, false, false
	}
	switch c {
	case 0xc4, 0xd9:
		return 2, int(b[1]), 0, true, false
	case 0xc5, 0xda:
		return 3, int(binary.BigEndian.Uint16(b[1:])), 0, true, false
	case 0xc6, 0xdb:
		return 5, int(binary.BigEndian.Uint32(b[1:])), 0, true, false
	case 0xc7:
		return 3, int(b[1]), 0, true, false
	case 0xc8:
		return 4, int(binary.BigEndian.Uint16(b[1:])), 0, true, false
	case 0xc9:
		return 6, int(binary.BigEndian.Uint32(b[1:])), 0, true, false
	case 0xdc:
		return 3, 0, int(binary.BigEndian.Uint16(b[1:])), true, false
	case 0xdd:
		return 5, 0, int(binary.BigEndian.Uint32(b[1:])), true, false
	case 0xde:
		return 3, 0, 2 * int(binary.BigEndian.Uint16(b[1:])), true, false
	case 0xdf:
		return 5, 0, 2 * int(binary.BigEndian.Uint32(b[1:])), true, false
	}
	return 0, 0, 0, false, true
}

var (
	errShort  = errors.New("too few bytes left to read object")
	errPrefix = errors.New("invalid msgpack prefix 0xc1")
)

// skip returns the length of the complete msgpack object at b[0]. It walks nested
// containers with a counter instead of recursion (no stack growth for hostile
// nesting, and faster than msgp.Skip on records): fixints and fixstrs, the bulk of a
// record, take the short path.
func skip(b []byte) (int, error) {
	pos, pending := 0, 1
	for pending > 0 {
		if pos >= len(b) {
			return 0, errShort
		}
		c := b[pos]
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
			pos++
			pending--
			continue
		case c >= 0xa0 && c <= 0xbf: // fixstr
			pos += 1 + int(c&0x1f)
			pending--
			continue
		}
		hdr, payload, elems, ok, bad := header(b[pos:])
		if bad {
			return 0, errPrefix
		}
		if !ok {
			return 0, errShort
		}
		pos += hdr + payload
		pending += elems - 1
	}
	if pos > len(b) {
		return 0, errShort
	}
	return pos, nil
}
