package tail

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tinylib/msgp/msgp"

	"github.com/fwdmux/fwdmux/wire"
)

// errParse marks a line the format could not parse; the line is then sent raw.
var errParse = errors.New("parse error")

// preset is a regexp format with its time layout and types, as fluentd's parsers.
type preset struct {
	re         string
	timeFormat string
	types      map[string]string
}

var presets = map[string]preset{
	// fluentd's apache2 parser.
	FormatApache: {
		re:         `^(?P<host>[^ ]*) [^ ]* (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "(?P<method>\S+)(?: +(?P<path>(?:[^\"]|\\.)*?)(?: +\S*)?)?" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "(?P<referer>(?:[^\"]|\\.)*)" "(?P<agent>(?:[^\"]|\\.)*)")?$`,
		timeFormat: "apache",
		types:      map[string]string{"code": "integer", "size": "integer"},
	},
	// fluentd's nginx parser (combined log format, optional X-Forwarded-For).
	FormatNginx: {
		re:         `^(?P<remote>[^ ]*) (?P<host>[^ ]*) (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "(?P<method>\S+)(?: +(?P<path>[^\"]*?)(?: +\S*)?)?" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "(?P<referer>[^\"]*)" "(?P<agent>[^\"]*)"(?:\s+"?(?P<http_x_forwarded_for>[^"]*)"?)?)?$`,
		timeFormat: "nginx",
		types:      map[string]string{"code": "integer", "size": "integer"},
	},
	// RFC 3164 as written to files by rsyslog/syslog-ng; the <pri> prefix is optional.
	FormatSyslog: {
		re:         `^(?:<(?P<pri>[0-9]{1,3})>)?(?P<time>[A-Z][a-z]{2} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}) (?P<host>[^ ]*) (?P<ident>[^ :\[]*)(?:\[(?P<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?P<message>.*)$`,
		timeFormat: "syslog",
		types:      map[string]string{"pri": "integer"},
	},
}

type fieldType uint8

const (
	typeNone fieldType = iota
	typeInt
	typeFloat
	typeBool
)

var typeNames = map[string]fieldType{"integer": typeInt, "int": typeInt, "float": typeFloat, "bool": typeBool}

// timeFormat is a parsed time_format.
type timeFormat struct {
	unix   bool   // seconds since the epoch, optional fraction
	auto   bool   // no format given: unix for numbers, RFC 3339 for strings
	layout string // Go layout
	noYear bool   // the layout has no year (syslog): use the current one
	clf    bool   // layout is clfLayout: try parseCLFTime first
}

func parseTimeFormat(s string) (timeFormat, error) {
	switch strings.ToLower(s) {
	case "":
		return timeFormat{auto: true, layout: time.RFC3339}, nil
	case "unix":
		return timeFormat{unix: true}, nil
	case "apache", "nginx":
		return timeFormat{layout: clfLayout, clf: true}, nil
	case "syslog":
		return timeFormat{layout: "Jan _2 15:04:05", noYear: true}, nil
	case "rfc3339", "iso8601":
		return timeFormat{layout: time.RFC3339}, nil
	}
	// A Go layout must contain at least one element of the reference time.
	if !strings.ContainsAny(s, "0123456789") && !strings.Contains(s, "Jan") && !strings.Contains(s, "Mon") {
		return timeFormat{}, fmt.Errorf("%q is neither a Go layout nor one of unix, apache, nginx, syslog, rfc3339", s)
	}
	return timeFormat{layout: s, noYear: !strings.Contains(s, "2006") && !strings.Contains(s, "06"), clf: s == clfLayout}, nil
}

// parse reads v as a time. It allocates only when the value carries a zone offset that
// differs from the local one and is not a whole hour from -12 to +14 (time.FixedZone
// caches those); the apache/nginx layout in its canonical form never allocates.
func (f *timeFormat) parse(v []byte, now time.Time) (sec int64, nsec int64, ok bool) {
	if f.unix {
		return parseUnix(v)
	}
	if f.clf {
		if sec, ok := parseCLFTime(v); ok {
			return sec, 0, true
		}
	}
	if f.auto {
		if sec, nsec, ok := parseUnix(v); ok {
			return sec, nsec, true
		}
	}
	t, err := time.ParseInLocation(f.layout, unsafeString(v), time.Local)
	if err != nil {
		return 0, 0, false
	}
	if f.noYear && t.Year() == 0 {
		t = t.AddDate(now.Year(), 0, 0)
		if t.After(now.Add(24 * time.Hour)) { // December's lines read in January
			t = t.AddDate(-1, 0, 0)
		}
	}
	return t.Unix(), int64(t.Nanosecond()), true
}

func parseUnix(v []byte) (sec, nsec int64, ok bool) {
	ip, fp := v, []byte(nil)
	if i := bytes.IndexByte(v, '.'); i >= 0 {
		ip, fp = v[:i], v[i+1:]
	}
	s, err := strconv.ParseInt(unsafeString(ip), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	var n int64
	for i := 0; i < 9; i++ {
		n *= 10
		if i < len(fp) {
			c := fp[i]
			if c < '0' || c > '9' {
				return 0, 0, false
			}
			n += int64(c - '0')
		}
	}
	return s, n, true
}

// unsafeString views b as a string for calls that do not keep it (strconv, time.Parse
// on success); it saves the copy a string(b) conversion makes.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// parser turns one line into a msgpack record. It is built once per target and shared
// by that target's tailers: it holds no per-line state.
type parser struct {
	format      string
	msgKey      string
	timeKey     string
	tf          timeFormat
	keepTimeKey bool
	types       map[string]fieldType
	re          *regexp.Regexp
	names       []string
	groups      []group  // per submatch of re: what field does with it, decided once
	scan        scanKind // a preset's hand-written scanner, tried before re
	pathKey     string
}

func newParser(t TargetConfig) (*parser, error) {
	p := &parser{
		format:      t.Format,
		msgKey:      t.MessageKey,
		timeKey:     t.TimeKey,
		keepTimeKey: t.KeepTimeKey,
		pathKey:     t.PathKey,
	}
	tf, err := parseTimeFormat(t.TimeFormat)
	if err != nil {
		return nil, err
	}
	p.tf = tf
	if len(t.Types) > 0 {
		p.types = make(map[string]fieldType, len(t.Types))
		for k, v := range t.Types {
			p.types[k] = typeNames[v]
		}
	}
	expr := t.Regexp
	if pr, ok := presets[t.Format]; ok {
		expr = pr.re
	}
	if expr != "" {
		if p.re, err = regexp.Compile(expr); err != nil {
			return nil, err
		}
		p.names = p.re.SubexpNames()
		p.groups = make([]group, len(p.names))
		for i, name := range p.names {
			g := &p.groups[i]
			if g.skip = name == ""; g.skip {
				continue
			}
			g.key = msgp.AppendString(nil, name)
			g.time = p.timeKey != "" && name == p.timeKey
			g.ft, g.typed = p.types[name]
		}
		if t.Regexp == "" {
			p.scan = presetScanner(t.Format, p.names)
		}
	}
	return p, nil
}

// entryTimeSize is the size of a fixext8 EventTime: the entry's time is written first
// with the read time and patched in place when the record carries its own.
const entryTimeSize = 10

// appendEntry appends one [time, record] entry for line. A line the format cannot parse
// is appended raw under the message key and reported with parseErr.
func (p *parser) appendEntry(dst, line []byte, now time.Time, path string) (out []byte, parseErr bool) {
	start := len(dst)
	dst = append(dst, 0x92) // fixarray of 2
	tpos := len(dst)
	dst = wire.AppendTime(dst, now)
	var err error
	var sec, nsec int64 = -1, 0
	switch p.format {
	case FormatNone:
		dst = p.appendNone(dst, line, path)
	case FormatLTSV:
		dst, sec, nsec, err = p.appendLTSV(dst, line, now, path)
	case FormatJSON:
		dst, sec, nsec, err = p.appendJSON(dst, line, now, path)
	default:
		dst, sec, nsec, err = p.appendRegexp(dst, line, now, path)
	}
	if err != nil {
		dst = dst[:tpos+entryTimeSize]
		return p.appendNone(dst, line, path), true
	}
	if sec >= 0 {
		wire.AppendEventTime(dst[tpos:tpos], uint32(sec), uint32(nsec))
	}
	_ = start
	return dst, false
}

func (p *parser) appendNone(dst, line []byte, path string) []byte {
	if p.pathKey != "" {
		dst = append(dst, 0x82)
		dst = msgp.AppendString(dst, p.msgKey)
		dst = msgp.AppendStringFromBytes(dst, line)
		dst = msgp.AppendString(dst, p.pathKey)
		return msgp.AppendString(dst, path)
	}
	dst = append(dst, 0x81)
	dst = msgp.AppendString(dst, p.msgKey)
	return msgp.AppendStringFromBytes(dst, line)
}

// beginMap reserves a map16 header, patched by endMap with the field count.
func beginMap(dst []byte) ([]byte, int) {
	return append(dst, 0xde, 0, 0), len(dst)
}

// endMap writes the count into the header beginMap reserved, shrinking it to a fixmap
// when it fits (the body moves two bytes; records are small).
func endMap(dst []byte, pos, n int) ([]byte, error) {
	if n > 0xffff {
		return dst, errParse
	}
	if n < 16 {
		dst[pos] = 0x80 | byte(n)
		copy(dst[pos+1:], dst[pos+3:])
		return dst[:len(dst)-2], nil
	}
	dst[pos+1], dst[pos+2] = byte(n>>8), byte(n)
	return dst, nil
}

// field appends one key and value, applying the time key and the types. It reports
// whether a pair was appended and the time it found.
func (p *parser) field(dst, key, val []byte, now time.Time, sec, nsec *int64) ([]byte, bool, error) {
	if p.timeKey != "" && string(key) == p.timeKey {
		s, ns, ok := p.tf.parse(val, now)
		if !ok {
			return dst, false, errParse
		}
		*sec, *nsec = s, ns
		if !p.keepTimeKey {
			return dst, false, nil
		}
	}
	dst = msgp.AppendStringFromBytes(dst, key)
	if p.types != nil {
		if ft, ok := p.types[string(key)]; ok {
			return appendTyped(dst, val, ft), true, nil
		}
	}
	return msgp.AppendStringFromBytes(dst, val), true, nil
}

// group is a regexp submatch with field's decisions taken once: its msgpack-encoded
// name, whether it is the time key, its type.
type group struct {
	skip  bool   // unnamed
	key   []byte // the name as a msgpack str
	time  bool   // the name is timeKey
	typed bool   // the name has a type
	ft    fieldType
}

// groupField is field for a regexp group: the same output without the per-line key
// comparisons and map lookup.
func (p *parser) groupField(dst []byte, g *group, val []byte, now time.Time, sec, nsec *int64) ([]byte, bool, error) {
	if g.time {
		s, ns, ok := p.tf.parse(val, now)
		if !ok {
			return dst, false, errParse
		}
		*sec, *nsec = s, ns
		if !p.keepTimeKey {
			return dst, false, nil
		}
	}
	dst = append(dst, g.key...)
	if g.typed {
		return appendTyped(dst, val, g.ft), true, nil
	}
	return msgp.AppendStringFromBytes(dst, val), true, nil
}

// appendTyped converts val. "-" and "" become nil (apache's size of a 304); a value that
// does not convert stays a string rather than being lost.
func appendTyped(dst, val []byte, ft fieldType) []byte {
	if len(val) == 0 || len(val) == 1 && val[0] == '-' {
		return msgp.AppendNil(dst)
	}
	s := unsafeString(val)
	switch ft {
	case typeInt:
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return msgp.AppendInt64(dst, i)
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && f == float64(int64(f)) {
			return msgp.AppendInt64(dst, int64(f))
		}
	case typeFloat:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return msgp.AppendFloat64(dst, f)
		}
	case typeBool:
		if b, err := strconv.ParseBool(s); err == nil {
			return msgp.AppendBool(dst, b)
		}
		switch strings.ToLower(s) {
		case "yes", "on":
			return msgp.AppendBool(dst, true)
		case "no", "off":
			return msgp.AppendBool(dst, false)
		}
	}
	return msgp.AppendStringFromBytes(dst, val)
}

// appendLTSV parses label:value fields separated by tabs (ltsv.org). Empty fields are
// skipped; a field without ':' or with an empty label fails the line.
func (p *parser) appendLTSV(dst, line []byte, now time.Time, path string) ([]byte, int64, int64, error) {
	dst, mpos := beginMap(dst)
	n := 0
	var sec, nsec int64 = -1, 0
	for len(line) > 0 {
		f := line
		if i := bytes.IndexByte(line, '\t'); i >= 0 {
			f, line = line[:i], line[i+1:]
		} else {
			line = nil
		}
		if len(f) == 0 {
			continue
		}
		c := bytes.IndexByte(f, ':')
		if c <= 0 {
			return dst, 0, 0, errParse
		}
		var added bool
		var err error
		dst, added, err = p.field(dst, f[:c], f[c+1:], now, &sec, &nsec)
		if err != nil {
			return dst, 0, 0, err
		}
		if added {
			n++
		}
	}
	if n == 0 && sec < 0 {
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

// appendRegexp maps named groups to fields; groups that did not take part are left out.
// The apache and nginx presets' scanners fill the submatch indexes on the stack; a line
// they decline, and every other regexp, goes to the engine, which allocates the index
// slice (regexp has no append form).
func (p *parser) appendRegexp(dst, line []byte, now time.Time, path string) ([]byte, int64, int64, error) {
	var buf [2 * maxScanGroups]int
	m := p.scanPreset(line, &buf)
	if m == nil {
		if m = p.re.FindSubmatchIndex(line); m == nil {
			return dst, 0, 0, errParse
		}
	}
	dst, mpos := beginMap(dst)
	n := 0
	var sec, nsec int64 = -1, 0
	for i := range p.groups {
		g := &p.groups[i]
		if g.skip || m[2*i] < 0 {
			continue
		}
		var added bool
		var err error
		dst, added, err = p.groupField(dst, g, line[m[2*i]:m[2*i+1]], now, &sec, &nsec)
		if err != nil {
			return dst, 0, 0, err
		}
		if added {
			n++
		}
	}
	if p.pathKey != "" {
		dst = msgp.AppendString(dst, p.pathKey)
		dst = msgp.AppendString(dst, path)
		n++
	}
	dst, err := endMap(dst, mpos, n)
	return dst, sec, nsec, err
}

// appendValidUTF8 appends b with every invalid sequence replaced by U+FFFD, as
// strings.ToValidUTF8 but into a reused buffer.
func appendValidUTF8(dst, b []byte) []byte {
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\uFFFD"...)
			// Collapse a run of invalid bytes into one replacement, as ToValidUTF8.
			b = b[1:]
			for len(b) > 0 {
				if b[0] < utf8.RuneSelf {
					break
				}
				if r, s := utf8.DecodeRune(b); r != utf8.RuneError || s != 1 {
					break
				}
				b = b[1:]
			}
			continue
		}
		dst = append(dst, b[:size]...)
		b = b[size:]
	}
	return dst
}
