package tail

import (
	"bytes"
	"slices"
	"time"
)

// Hand-written scanners for the apache and nginx presets. Go's regexp engine costs
// about 2.5 µs and one allocation per access-log line; these cost a tenth of that and
// none. A scanner does not replace the regexp, it predicts it: it fills the same
// submatch index slice FindSubmatchIndex would return, and appendRegexp turns either
// into the record with the same code, so keys, order, types and time handling cannot
// drift apart. A line the scanner is not sure about (odd quoting, a budget of tail
// attempts used up) is declined and goes to the regexp; FuzzApacheFast and
// FuzzNginxFast check that a scanner either declines or agrees with the regexp exactly.
//
// How the regexps choose, which the scanners follow (leftmost-first, as a backtracking
// engine tries alternatives):
//
//   - host, ident, user: [^ ]* up to the next space; time: up to the first ']'.
//   - method \S+ is greedy, so the whole non-space run is tried first; a shorter method
//     can only end at a '"' inside the run (the "-" of `"-" 408 0`).
//   - path is lazy: its ends e are tried in increasing order; at each e the regexp
//     tries ` +\S*"` (the protocol, its closing quote at the last '"' of the next
//     non-space run first) and then `"`. The closing quote q is the first one so found
//     after which the rest of the line (the tail: code, size, referer, agent) matches.
//     Apache's path may pass a quote escaped as \" ; nginx's cannot pass any.
//   - apache's referer ends at the first '"' followed by ` "agent"` up to the end of the
//     line, passing escaped quotes; the agent runs to the last byte, every quote in it
//     escaped. nginx's referer and agent end at the next '"'; an optional
//     x_forwarded_for follows after white space, quoted or not.

// scanKind selects the scanner standing in for a preset's regexp.
type scanKind uint8

const (
	scanNone scanKind = iota
	scanApache
	scanNginx
)

// maxScanGroups is the size of the largest preset's submatch set (nginx: the whole
// match and 11 groups).
const maxScanGroups = 12

// The presets' group names in order; a scanner is used only when the compiled preset
// has exactly these, so an edited regexp falls back to the engine instead of drifting.
var (
	apacheGroups = []string{"", "host", "user", "time", "method", "path", "code", "size", "referer", "agent"}
	nginxGroups  = []string{"", "remote", "host", "user", "time", "method", "path", "code", "size", "referer", "agent", "http_x_forwarded_for"}
)

// presetScanner returns the scanner for format when names are the preset's groups.
func presetScanner(format string, names []string) scanKind {
	switch {
	case format == FormatApache && slices.Equal(names, apacheGroups):
		return scanApache
	case format == FormatNginx && slices.Equal(names, nginxGroups):
		return scanNginx
	}
	return scanNone
}

// scanPreset fills buf as FindSubmatchIndex would and returns it, or nil when there is
// no scanner or it declined the line.
func (p *parser) scanPreset(line []byte, buf *[2 * maxScanGroups]int) []int {
	var s clfScan
	switch p.scan {
	case scanApache:
		s = clfScan{line: line, m: buf, ngroups: len(apacheGroups), time: 3}
	case scanNginx:
		s = clfScan{line: line, m: buf, ngroups: len(nginxGroups), time: 4, nginx: true}
	default:
		return nil
	}
	if !s.scan() {
		return nil
	}
	return buf[:2*s.ngroups]
}

// noGroups resets a submatch index array: no group took part.
var noGroups = func() (a [2 * maxScanGroups]int) {
	for i := range a {
		a[i] = -1
	}
	return a
}()

// tailBudget bounds how many times a line's tail is tried (each try is linear in the
// line): a hostile line full of quotes is declined rather than scanned quadratically.
const tailBudget = 8

type scanResult uint8

const (
	noMatch scanResult = iota // this branch of the regexp cannot match
	matched
	unsure // budget used up: decline the line
)

// clfScan scans one line in common/combined log format.
type clfScan struct {
	line    []byte
	m       *[2 * maxScanGroups]int
	ngroups int
	time    int  // group index of time; method, path, code, size, referer, agent follow
	nginx   bool // no escapes; remote, host, user before time; x_forwarded_for at the end
	budget  int
}

// isSpace is regexp's \s: [\t\n\f\r ].
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

func (s *clfScan) set(g, from, to int) {
	s.m[2*g], s.m[2*g+1] = from, to
}

// indexFrom is the index of c in line at or after i, or -1.
func indexFrom(line []byte, i int, c byte) int {
	if j := bytes.IndexByte(line[i:], c); j >= 0 {
		return i + j
	}
	return -1
}

func (s *clfScan) scan() bool {
	line, n := s.line, len(s.line)
	*s.m = noGroups
	s.set(0, 0, n)
	s.budget = tailBudget
	// host ident user (apache) or remote host user (nginx), each [^ ]* and a space.
	i := 0
	for k := range 3 {
		j := indexFrom(line, i, ' ')
		if j < 0 {
			return false
		}
		switch {
		case s.nginx:
			s.set(1+k, i, j)
		case k == 0:
			s.set(1, i, j)
		case k == 2:
			s.set(2, i, j)
		}
		i = j + 1
	}
	// \[(?P<time>[^\]]*)\] "
	if i >= n || line[i] != '[' {
		return false
	}
	j := indexFrom(line, i+1, ']')
	if j < 0 || j+2 >= n || line[j+1] != ' ' || line[j+2] != '"' {
		return false
	}
	s.set(s.time, i+1, j)
	return s.request(j + 3)
}

// request scans from r, after the request's opening quote, to the end of the line.
func (s *clfScan) request(r int) bool {
	line, n := s.line, len(s.line)
	gMethod := s.time + 1
	// The longest method: the run of \S.
	m := r
	for m < n && !isSpace(line[m]) {
		m++
	}
	if m == r {
		return false
	}
	if m < n && line[m] == ' ' {
		// ` +` takes every space first.
		ps := m
		for ps < n && line[ps] == ' ' {
			ps++
		}
		switch s.path(ps) {
		case matched:
			s.set(gMethod, r, m)
			return true
		case unsure:
			return false
		}
		if ps-m > 1 {
			return false // fewer spaces than all would start the path with one: rare, decline
		}
	}
	// A shorter method ending at a quote inside the run, without path: `"-"`. Shorter
	// methods are tried longest first, but only the run's last byte can be the closing
	// quote: the tail starts with `" `.
	if x := m - 1; x > r && line[x] == '"' && s.tail(x) == matched {
		s.set(gMethod, r, x)
		return true
	}
	return false
}

// path tries the path's ends e in the lazy order from ps, and at each the closing
// quotes the regexp would try there.
func (s *clfScan) path(ps int) scanResult {
	line, n := s.line, len(s.line)
	gPath := s.time + 2
	for e := ps; e < n; e++ {
		switch line[e] {
		case ' ':
			if line[e-1] == ' ' {
				continue // same candidates as the first space of this run
			}
			// ` +\S*"`: all spaces, then the longest \S* first. The quotes of that
			// run are tried last to first, but only its last byte can close the
			// request: the tail starts with `" `.
			t := e
			for t < n && line[t] == ' ' {
				t++
			}
			u := t
			for u < n && !isSpace(line[u]) {
				u++
			}
			if u > t && line[u-1] == '"' {
				switch r := s.tail(u - 1); r {
				case matched:
					s.set(gPath, ps, e)
					return r
				case unsure:
					return r
				}
			}
		case '"':
			switch r := s.tail(e); r {
			case matched:
				s.set(gPath, ps, e)
				return r
			case unsure:
				return r
			}
			// Only apache's \\. passes a quote, and only one escaped by a backslash
			// inside the path.
			if s.nginx || e-1 < ps || line[e-1] != '\\' {
				return noMatch
			}
		}
	}
	return noMatch
}

// tail matches from the request's closing quote q to the end of the line:
// `" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "referer" "agent" ...)?$`. It sets the groups
// only when it matches.
func (s *clfScan) tail(q int) scanResult {
	if s.budget == 0 {
		return unsure
	}
	s.budget--
	line, n := s.line, len(s.line)
	if q+1 >= n || line[q+1] != ' ' {
		return noMatch
	}
	cs := q + 2
	ce := indexFrom(line, cs, ' ')
	if ce < 0 {
		return noMatch
	}
	ss := ce + 1
	se := indexFrom(line, ss, ' ')
	if se < 0 {
		se = n
	}
	rs, re, as, ae, xs, xe := -1, -1, -1, -1, -1, -1
	if se < n {
		if se+1 >= n || line[se+1] != '"' {
			return noMatch
		}
		rs = se + 2
		if s.nginx {
			if re = indexFrom(line, rs, '"'); re < 0 {
				return noMatch
			}
			if re+2 >= n || line[re+1] != ' ' || line[re+2] != '"' {
				return noMatch
			}
			as = re + 3
			if ae = indexFrom(line, as, '"'); ae < 0 {
				return noMatch
			}
			if w := ae + 1; w < n {
				// (?:\s+"?(?P<http_x_forwarded_for>[^"]*)"?)?$
				w2 := w
				for w2 < n && isSpace(line[w2]) {
					w2++
				}
				if w2 == w {
					return noMatch
				}
				xs = w2
				if w2 < n && line[w2] == '"' {
					xs = w2 + 1
				}
				xe = n
				if x := indexFrom(line, xs, '"'); x >= 0 {
					if x != n-1 {
						return noMatch
					}
					xe = x
				}
			}
		} else {
			r, end := s.apacheRefererAgent(rs)
			if r != matched {
				return r
			}
			re, as, ae = end, end+3, n-1
		}
	}
	g := s.time + 3
	s.set(g, cs, ce)
	s.set(g+1, ss, se)
	if rs >= 0 {
		s.set(g+2, rs, re)
		s.set(g+3, as, ae)
	}
	if xs >= 0 {
		s.set(g+4, xs, xe)
	}
	return matched
}

// apacheRefererAgent matches `(?P<referer>(?:[^"]|\\.)*)" "(?P<agent>(?:[^"]|\\.)*)"$`
// from rs and returns where the referer ends. The referer ends at the first quote
// after which ` "agent"` runs to the end of the line; it passes a quote only when a
// backslash inside the referer precedes it. The agent is checked at most once: when
// it does not match, the quote that opened it is unescaped and ends the scan.
func (s *clfScan) apacheRefererAgent(rs int) (scanResult, int) {
	line, n := s.line, len(s.line)
	if n == 0 || line[n-1] != '"' {
		return noMatch, 0
	}
	for p := rs; p < n; p++ {
		j := bytes.IndexByte(line[p:], '"')
		if j < 0 {
			break
		}
		p += j
		if p+4 <= n && line[p+1] == ' ' && line[p+2] == '"' && escapedQuotes(line[p+3:n-1]) {
			return matched, p
		}
		if p-1 < rs || line[p-1] != '\\' {
			break
		}
	}
	return noMatch, 0
}

// escapedQuotes reports whether b matches (?:[^"]|\\.)*: every quote in it follows a
// backslash that is also in it.
func escapedQuotes(b []byte) bool {
	for i := 0; ; i++ {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return true
		}
		i += j
		if i == 0 || b[i-1] != '\\' {
			return false
		}
	}
}

// clfLayout is the time layout of the apache and nginx presets.
const clfLayout = "02/Jan/2006:15:04:05 -0700"

// parseCLFTime reads "10/Oct/2000:13:55:36 -0700" exactly as time.ParseInLocation with
// clfLayout does, without allocating. It accepts only the canonical form (two-digit
// fields, the month as written by servers, in range); anything else returns !ok and
// goes to time.ParseInLocation, which decides.
func parseCLFTime(v []byte) (sec int64, ok bool) {
	if len(v) != 26 || v[2] != '/' || v[6] != '/' || v[11] != ':' || v[14] != ':' || v[17] != ':' || v[20] != ' ' {
		return 0, false
	}
	day, hour, mins, secs := digits2(v[0:2]), digits2(v[12:14]), digits2(v[15:17]), digits2(v[18:20])
	tzh, tzm := digits2(v[22:24]), digits2(v[24:26])
	century, yy := digits2(v[7:9]), digits2(v[9:11])
	if day < 0 || hour < 0 || mins < 0 || secs < 0 || tzh < 0 || tzm < 0 || century < 0 || yy < 0 {
		return 0, false
	}
	year := century*100 + yy
	month := 0
	for i, name := range shortMonths {
		if string(v[3:6]) == name {
			month = i + 1
			break
		}
	}
	if month == 0 || hour > 23 || mins > 59 || secs > 59 || tzh > 23 || tzm > 59 {
		return 0, false
	}
	dim := daysInMonth[month-1]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		dim = 29
	}
	if day < 1 || day > dim {
		return 0, false
	}
	off := int64(tzh*3600 + tzm*60)
	switch v[21] {
	case '+':
	case '-':
		off = -off
	default:
		return 0, false
	}
	return time.Date(year, time.Month(month), day, hour, mins, secs, 0, time.UTC).Unix() - off, true
}

var (
	shortMonths = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	daysInMonth = [12]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
)

// digits2 is the value of two ASCII digits, or -1.
func digits2(b []byte) int {
	if b[0] < '0' || b[0] > '9' || b[1] < '0' || b[1] > '9' {
		return -1
	}
	return int(b[0]-'0')*10 + int(b[1]-'0')
}
