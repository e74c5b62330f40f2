package tail

import (
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

// maxJSONDepth bounds nesting so a hostile line cannot exhaust the stack.
const maxJSONDepth = 64

// appendJSON transcodes a JSON object line straight into a msgpack map, without building
// Go values: strings are copied (unescaped) into dst, numbers become int64 when they are
// integers and float64 otherwise. The time key and types apply to top-level fields.
func (p *parser) appendJSON(dst, line []byte, now time.Time, path string) ([]byte, int64, int64, error) {
	var sec, nsec int64 = -1, 0
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return dst, 0, 0, errParse
	}
	dst, mpos := beginMap(dst)
	n := 0
	i = skipWS(line, i+1)
	if i < len(line) && line[i] == '}' {
		i++
	} else {
		for {
			if i >= len(line) || line[i] != '"' {
				return dst, 0, 0, errParse
			}
			kpos := len(dst)
			var kstart int
			var err error
			dst, kstart, i, err = appendJSONString(dst, line, i)
			if err != nil {
				return dst, 0, 0, err
			}
			i = skipWS(line, i)
			if i >= len(line) || line[i] != ':' {
				return dst, 0, 0, errParse
			}
			i = skipWS(line, i+1)
			vpos := len(dst)
			dst, i, err = appendJSONValue(dst, line, i, 1)
			if err != nil {
				return dst, 0, 0, err
			}
			key := dst[kstart:vpos]
			keep := true
			if p.timeKey != "" && string(key) == p.timeKey {
				if sec, nsec, err = p.jsonTime(dst[vpos:], now); err != nil {
					return dst, 0, 0, err
				}
				keep = p.keepTimeKey
			}
			if !keep {
				dst = dst[:kpos]
			} else {
				if p.types != nil {
					if ft, ok := p.types[string(key)]; ok {
						dst = retype(dst, vpos, ft)
					}
				}
				n++
			}
			i = skipWS(line, i)
			if i >= len(line) {
				return dst, 0, 0, errParse
			}
			if line[i] == '}' {
				i++
				break
			}
			if line[i] != ',' {
				return dst, 0, 0, errParse
			}
			i = skipWS(line, i+1)
		}
	}
	if skipWS(line, i) != len(line) {
		return dst, 0, 0, errParse
	}
	if p.pathKey != "" {
		dst = msgp.AppendString(dst, p.pathKey)
		dst = msgp.AppendString(dst, path)
		n++
	}
	dst, err := endMap(dst, mpos, n)
	return dst, sec, nsec, err
}

// jsonTime reads the time from an already transcoded msgpack value (string or number).
func (p *parser) jsonTime(v []byte, now time.Time) (int64, int64, error) {
	switch msgp.NextType(v) {
	case msgp.StrType:
		s, _, err := msgp.ReadStringZC(v)
		if err != nil {
			return 0, 0, errParse
		}
		sec, nsec, ok := p.tf.parse(s, now)
		if !ok {
			return 0, 0, errParse
		}
		return sec, nsec, nil
	case msgp.IntType:
		i, _, err := msgp.ReadInt64Bytes(v)
		if err != nil || i < 0 {
			return 0, 0, errParse
		}
		return i, 0, nil
	case msgp.Float64Type:
		f, _, err := msgp.ReadFloat64Bytes(v)
		if err != nil || f < 0 {
			return 0, 0, errParse
		}
		s := int64(f)
		return s, int64((f - float64(s)) * 1e9), nil
	}
	return 0, 0, errParse
}

// retype converts a string value at dst[vpos:] in place; other types are left alone.
func retype(dst []byte, vpos int, ft fieldType) []byte {
	s, _, err := msgp.ReadStringZC(dst[vpos:])
	if err != nil {
		return dst
	}
	var tmp [64]byte // the converted value is small; s aliases dst, so copy first
	if len(s) > len(tmp) {
		return dst
	}
	n := copy(tmp[:], s)
	return appendTyped(dst[:vpos], tmp[:n], ft)
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

func appendJSONValue(dst, b []byte, i, depth int) ([]byte, int, error) {
	if i >= len(b) {
		return dst, i, errParse
	}
	switch c := b[i]; {
	case c == '"':
		var err error
		dst, _, i, err = appendJSONString(dst, b, i)
		return dst, i, err
	case c == '{':
		return appendJSONObject(dst, b, i, depth+1)
	case c == '[':
		return appendJSONArray(dst, b, i, depth+1)
	case c == 't':
		if hasLit(b, i, "true") {
			return msgp.AppendBool(dst, true), i + 4, nil
		}
	case c == 'f':
		if hasLit(b, i, "false") {
			return msgp.AppendBool(dst, false), i + 5, nil
		}
	case c == 'n':
		if hasLit(b, i, "null") {
			return msgp.AppendNil(dst), i + 4, nil
		}
	case c == '-' || c >= '0' && c <= '9':
		return appendJSONNumber(dst, b, i)
	}
	return dst, i, errParse
}

func hasLit(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

func appendJSONNumber(dst, b []byte, i int) ([]byte, int, error) {
	start := i
	float := false
	if b[i] == '-' {
		i++
	}
	digits := i
	for i < len(b) {
		c := b[i]
		if c >= '0' && c <= '9' {
			i++
			continue
		}
		if c == '.' || c == 'e' || c == 'E' || ((c == '+' || c == '-') && (b[i-1] == 'e' || b[i-1] == 'E')) {
			float = true
			i++
			continue
		}
		break
	}
	if i == digits || b[digits] < '0' || b[digits] > '9' {
		return dst, i, errParse
	}
	s := unsafeString(b[start:i])
	if !float {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return msgp.AppendInt64(dst, v), i, nil
		}
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return msgp.AppendUint64(dst, v), i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			return dst, i, errParse
		}
	}
	return msgp.AppendFloat64(dst, f), i, nil
}

func appendJSONObject(dst, b []byte, i, depth int) ([]byte, int, error) {
	if depth > maxJSONDepth {
		return dst, i, errParse
	}
	dst, pos := beginMap(dst)
	n := 0
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		dst, err := endMap(dst, pos, 0)
		return dst, i + 1, err
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return dst, i, errParse
		}
		var err error
		if dst, _, i, err = appendJSONString(dst, b, i); err != nil {
			return dst, i, err
		}
		i = skipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return dst, i, errParse
		}
		if dst, i, err = appendJSONValue(dst, b, skipWS(b, i+1), depth); err != nil {
			return dst, i, err
		}
		n++
		i = skipWS(b, i)
		if i >= len(b) {
			return dst, i, errParse
		}
		if b[i] == '}' {
			dst, err := endMap(dst, pos, n)
			return dst, i + 1, err
		}
		if b[i] != ',' {
			return dst, i, errParse
		}
		i = skipWS(b, i+1)
	}
}

func appendJSONArray(dst, b []byte, i, depth int) ([]byte, int, error) {
	if depth > maxJSONDepth {
		return dst, i, errParse
	}
	pos := len(dst)
	dst = append(dst, 0xdc, 0, 0) // array16, patched below
	n := 0
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			var err error
			if dst, i, err = appendJSONValue(dst, b, i, depth); err != nil {
				return dst, i, err
			}
			n++
			i = skipWS(b, i)
			if i >= len(b) {
				return dst, i, errParse
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return dst, i, errParse
			}
			i = skipWS(b, i+1)
		}
	}
	if n > 0xffff {
		return dst, i, errParse
	}
	if n < 16 {
		dst[pos] = 0x90 | byte(n)
		copy(dst[pos+1:], dst[pos+3:])
		return dst[:len(dst)-2], i, nil
	}
	dst[pos+1], dst[pos+2] = byte(n>>8), byte(n)
	return dst, i, nil
}

// appendJSONString appends the JSON string starting at b[i] (the opening quote) as a
// msgpack str. It returns where the payload starts in dst and the index after the
// closing quote. Strings without escapes (nearly all) are copied in one append.
func appendJSONString(dst, b []byte, i int) ([]byte, int, int, error) {
	i++
	start := i
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	if i >= len(b) {
		return dst, 0, i, errParse
	}
	if b[i] == '"' {
		dst = msgp.AppendStringFromBytes(dst, b[start:i])
		return dst, len(dst) - (i - start), i + 1, nil
	}
	// Escapes: reserve a str32 header, unescape, then shrink the header.
	hpos := len(dst)
	dst = append(dst, 0xdb, 0, 0, 0, 0)
	dst = append(dst, b[start:i]...)
	for {
		if i >= len(b) {
			return dst, 0, i, errParse
		}
		c := b[i]
		if c == '"' {
			i++
			break
		}
		if c != '\\' {
			j := i
			for j < len(b) && b[j] != '"' && b[j] != '\\' {
				j++
			}
			dst = append(dst, b[i:j]...)
			i = j
			continue
		}
		if i+1 >= len(b) {
			return dst, 0, i, errParse
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return dst, 0, i, errParse
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
					r2, ok2 = hex4(b, i+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, 0, i, errParse
		}
		i += 2
	}
	n := len(dst) - hpos - 5
	var hdr [5]byte
	var h []byte
	switch {
	case n < 32:
		h = append(hdr[:0], 0xa0|byte(n))
	case n <= 0xff:
		h = append(hdr[:0], 0xd9, byte(n))
	case n <= 0xffff:
		h = binary.BigEndian.AppendUint16(append(hdr[:0], 0xda), uint16(n))
	default:
		h = binary.BigEndian.AppendUint32(append(hdr[:0], 0xdb), uint32(n))
	}
	shift := 5 - len(h)
	copy(dst[hpos:], h)
	copy(dst[hpos+len(h):], dst[hpos+5:])
	dst = dst[:len(dst)-shift]
	return dst, hpos + len(h), i, nil
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
