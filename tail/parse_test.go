package tail

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/fwdmux/fwdmux/proxy"
)

// parseOne runs a line through a target's parser and decodes the entry.
func parseOne(t testing.TB, tc TargetConfig, line string) (event, bool) {
	t.Helper()
	tc.Path, tc.Tag = "/x", "x"
	tc = tc.WithDefaults()
	if err := tc.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := newParser(tc)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	b, perr := p.appendEntry(nil, []byte(line), now, "/x")
	evs := decodeChunk(t, proxy.NewChunk("x", b, 1))
	return evs[0], perr
}

func TestParsers(t *testing.T) {
	apacheLine := `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`
	nginxLine := `93.184.216.34 - - [12/Mar/2024:06:25:24 +0000] "GET /index.html HTTP/1.1" 304 - "-" "curl/8.4.0"`
	syslogLine := `<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8`
	for _, tc := range []struct {
		name    string
		cfg     TargetConfig
		line    string
		want    map[string]any
		wantSec uint32 // 0: the read time
		perr    bool
	}{
		{"none", TargetConfig{}, "hello world", map[string]any{"message": "hello world"}, 0, false},
		{"none key", TargetConfig{MessageKey: "log", PathKey: "file"}, "x", map[string]any{"log": "x", "file": "/x"}, 0, false},
		{"ltsv", TargetConfig{Format: "ltsv"}, "host:127.0.0.1\tstatus:200\t\tua:a:b", map[string]any{"host": "127.0.0.1", "status": "200", "ua": "a:b"}, 0, false},
		{"ltsv types time", TargetConfig{Format: "ltsv", TimeKey: "t", TimeFormat: "unix", Types: map[string]string{"status": "integer", "rt": "float", "ok": "bool"}},
			"t:1600000000.5\tstatus:200\trt:0.25\tok:true\tsize:-", map[string]any{"status": int64(200), "rt": 0.25, "ok": true, "size": "-"}, 1600000000, false},
		{"ltsv malformed", TargetConfig{Format: "ltsv"}, "host:a\tnocolon", map[string]any{"message": "host:a\tnocolon"}, 0, true},
		{"ltsv empty label", TargetConfig{Format: "ltsv"}, ":v", map[string]any{"message": ":v"}, 0, true},
		{"json", TargetConfig{Format: "json"}, `{"a":1,"b":"x\"y\u00e9\ud83d\ude00","c":[true,null,1.5,{"d":-2}],"e":{}}`,
			map[string]any{"a": int64(1), "b": "x\"yé😀", "c": []any{true, nil, 1.5, map[string]any{"d": int64(-2)}}, "e": map[string]any{}}, 0, false},
		{"json time rfc3339", TargetConfig{Format: "json", TimeKey: "ts"}, `{"ts":"2020-09-13T12:26:40Z","m":"x"}`, map[string]any{"m": "x"}, 1600000000, false},
		{"json time number keep", TargetConfig{Format: "json", TimeKey: "ts", KeepTimeKey: true}, `{"ts":1600000000}`, map[string]any{"ts": int64(1600000000)}, 1600000000, false},
		{"json types", TargetConfig{Format: "json", Types: map[string]string{"n": "integer"}}, `{"n":"42","m":"7"}`, map[string]any{"n": int64(42), "m": "7"}, 0, false},
		{"json malformed", TargetConfig{Format: "json"}, `{"a":1,}`, map[string]any{"message": `{"a":1,}`}, 0, true},
		{"json not object", TargetConfig{Format: "json"}, `[1,2]`, map[string]any{"message": `[1,2]`}, 0, true},
		{"json trailing", TargetConfig{Format: "json"}, `{"a":1} x`, map[string]any{"message": `{"a":1} x`}, 0, true},
		{"json bad time", TargetConfig{Format: "json", TimeKey: "ts"}, `{"ts":"yesterday"}`, map[string]any{"message": `{"ts":"yesterday"}`}, 0, true},
		{"regexp", TargetConfig{Format: "regexp", Regexp: `^(?P<level>\w+) (?<msg>.*)$`}, "INFO started", map[string]any{"level": "INFO", "msg": "started"}, 0, false},
		{"regexp no match", TargetConfig{Format: "regexp", Regexp: `^(?P<n>\d+)$`}, "abc", map[string]any{"message": "abc"}, 0, true},
		{"apache", TargetConfig{Format: "apache"}, apacheLine, map[string]any{
			"host": "127.0.0.1", "user": "frank", "method": "GET", "path": "/apache_pb.gif", "code": int64(200), "size": int64(2326),
			"referer": "http://www.example.com/start.html", "agent": "Mozilla/4.08 [en] (Win98; I ;Nav)"}, 971211336, false},
		{"nginx", TargetConfig{Format: "nginx"}, nginxLine, map[string]any{
			"remote": "93.184.216.34", "host": "-", "user": "-", "method": "GET", "path": "/index.html", "code": int64(304), "size": nil,
			"referer": "-", "agent": "curl/8.4.0"}, 1710224724, false},
		{"syslog", TargetConfig{Format: "syslog"}, syslogLine, map[string]any{
			"pri": int64(34), "host": "mymachine", "ident": "su", "pid": "230", "message": "'su root' failed for lonvick on /dev/pts/8"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, perr := parseOne(t, tc.cfg, tc.line)
			if perr != tc.perr {
				t.Fatalf("parse error %v, want %v", perr, tc.perr)
			}
			if !reflect.DeepEqual(ev.record, tc.want) {
				t.Fatalf("record\n got %#v\nwant %#v", ev.record, tc.want)
			}
			switch {
			case tc.wantSec != 0 && ev.sec != tc.wantSec:
				t.Fatalf("time %d, want %d", ev.sec, tc.wantSec)
			case tc.wantSec == 0 && tc.name != "syslog" && ev.sec != 1700000000:
				t.Fatalf("time %d, want the read time", ev.sec)
			case tc.name == "syslog" && ev.sec == 1700000000:
				t.Fatal("syslog time not parsed")
			}
		})
	}
}

func TestInvalidUTF8AndLongLines(t *testing.T) {
	if got := string(appendValidUTF8(nil, []byte("a\xff\xfeb\xe2\x82"))); got != strings.ToValidUTF8("a\xff\xfeb\xe2\x82", "\uFFFD") {
		t.Fatalf("got %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg   TargetConfig
		field string
	}{
		{TargetConfig{Tag: "t"}, "path"},
		{TargetConfig{Path: "/x"}, "tag"},
		{TargetConfig{Path: "/x", Tag: "t", Format: "xml"}, "format"},
		{TargetConfig{Path: "/x", Tag: "t", Format: "regexp"}, "regexp"},
		{TargetConfig{Path: "/x", Tag: "t", Format: "regexp", Regexp: "(unclosed"}, "regexp"},
		{TargetConfig{Path: "/x", Tag: "t", Format: "regexp", Regexp: "(no names)"}, "regexp"},
		{TargetConfig{Path: "/x", Tag: "t", Types: map[string]string{"status": "int32"}}, "types.status"},
		{TargetConfig{Path: "/x", Tag: "t", MultilineStart: "["}, "multiline_start"},
		{TargetConfig{Path: "/x", Tag: "t", TimeFormat: "unix"}, "time_format"},
		{TargetConfig{Path: "/x", Tag: "t", TimeKey: "t", TimeFormat: "whenever"}, "time_format"},
		{TargetConfig{Path: "/x", Tag: "t", ID: "a b"}, "id"},
		{TargetConfig{Path: "/x", Tag: "t", MaxLineBytes: -1}, "max_line_bytes"},
		{TargetConfig{Path: "/x/*.log", Tag: "t", Format: "NGINX"}, ""},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%+v: %v, want field %s", tc.cfg, err, tc.field)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{ChunkBytes: 10}).WithDefaults().Validate(); err == nil {
		t.Fatal("tiny chunk accepted")
	}
	a, b := (TargetConfig{Path: "/x", Tag: "t.*"}).WithDefaults(), (TargetConfig{Path: "/x", Tag: "t.*"}).WithDefaults()
	if a.ID != b.ID || a.ID == "" {
		t.Fatal("default id not stable")
	}
}

// checkRecord asserts b is exactly one valid [time, map] entry.
func checkRecord(t *testing.T, b []byte) map[string]any {
	rest, err := msgp.Skip(b)
	if err != nil || len(rest) != 0 {
		t.Fatalf("invalid msgpack entry (%v, %d left): % x", err, len(rest), b)
	}
	ev := decodeChunk(t, proxy.NewChunk("x", b, 1))
	return ev[0].record
}

func FuzzJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":"\u00e9\ud83d\ude00","b":[1,2.5e3,{"c":null}]}`, `{"a":`, `{}`, `[]`, `{"a":"\ud800"}`, `{"n":-0.0,"m":18446744073709551615}`} {
		f.Add(s)
	}
	p, _ := newParser(TargetConfig{Format: "json", MessageKey: "message"}.WithDefaults())
	f.Fuzz(func(t *testing.T, line string) {
		b, perr := p.appendEntry(nil, []byte(line), time.Unix(1, 0), "")
		rec := checkRecord(t, b)
		var v map[string]any
		valid := json.Unmarshal([]byte(line), &v) == nil && v != nil && strings.TrimSpace(line)[0] == '{'
		if valid && perr {
			t.Fatalf("valid JSON object rejected: %q", line)
		}
		if perr && rec["message"] != line {
			t.Fatalf("fallback lost the line: %q", line)
		}
		if !perr && len(rec) != len(v) && valid {
			t.Fatalf("%d fields, encoding/json sees %d: %q", len(rec), len(v), line)
		}
	})
}

func FuzzLTSV(f *testing.F) {
	for _, s := range []string{"a:1\tb:2", "a:1\t\tb:", "nocolon", ":x", "a:b:c\t", "\t\t"} {
		f.Add(s)
	}
	p, _ := newParser(TargetConfig{Format: "ltsv", MessageKey: "message"}.WithDefaults())
	f.Fuzz(func(t *testing.T, line string) {
		b, perr := p.appendEntry(nil, []byte(line), time.Unix(1, 0), "")
		rec := checkRecord(t, b)
		if perr {
			if rec["message"] != line {
				t.Fatalf("fallback lost the line: %q", line)
			}
			return
		}
		for _, f := range strings.Split(line, "\t") {
			if f == "" {
				continue
			}
			k, v, _ := strings.Cut(f, ":")
			if got, ok := rec[k]; !ok || (got != v && strings.Count(line, k+":") == 1) {
				t.Fatalf("field %q: %v in %q", k, got, line)
			}
		}
	})
}

// presetCase is a line for the scanner equivalence tests; fast says the scanner must
// take it (a line it declines goes to the regexp, which is correct but slow).
type presetCase struct {
	name string
	line string
	fast bool
}

var apacheCases = []presetCase{
	{"combined", `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`, true},
	{"common", `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`, true},
	{"ipv6", `2001:db8::1 - - [12/Mar/2024:06:25:25 +0100] "GET /static/app.js HTTP/2.0" 200 73 "https://example.com/" "curl/8.4.0"`, true},
	{"ipv6 loopback", `::1 - - [12/Mar/2024:06:25:25 +0000] "OPTIONS * HTTP/1.0" 200 126 "-" "Apache/2.4.58 (Debian) (internal dummy connection)"`, true},
	{"304 size -", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /index.html HTTP/1.1" 304 - "-" "Mozilla/5.0"`, true},
	{"escaped quote in path", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /search?q=\"x y\" HTTP/1.1" 200 12 "-" "curl/8.4.0"`, true},
	{"escaped quote closes", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /a\" 200 5`, true},
	{"escaped quote then tail-like text", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /a\" 200 1 HTTP/1.1" 200 5 "-" "-"`, true},
	{"escaped quote and backslash", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /a\\\"b\\ HTTP/1.1" 200 12 "-" "-"`, true},
	{"escaped quote in referer agent", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET / HTTP/1.1" 200 12 "http://x/?q=\"a\" \"b\"" "Mozilla \"quoted\" \\"`, true},
	{"agent with quote space quote", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET / HTTP/1.1" 200 12 "r\" \"s" "a\" \"b"`, true},
	{"request -", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "-" 408 - "-" "-"`, true},
	{"request - common", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "-" 408 -`, true},
	{"method only", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "OPTIONS" 200 0 "-" "-"`, true},
	{"no protocol", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /" 200 0`, true},
	{"space in path", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /a b HTTP/1.1" 200 0 "-" "-"`, true},
	{"two spaces", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET  /a  HTTP/1.1" 200 0 "-" "-"`, true},
	{"empty path", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET " 400 0 "-" "-"`, true},
	{"unicode", `10.0.0.7 - josé [12/Mar/2024:06:25:26 +0100] "GET /ünï/😀 HTTP/1.1" 200 0 "-" "Mözilla"`, true},
	{"half hour zone", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0530] "GET / HTTP/1.1" 200 0 "-" "-"`, true},
	{"leap day", `10.0.0.7 - - [29/Feb/2024:23:59:59 -1200] "GET / HTTP/1.1" 200 0`, true},
	{"no leap day", `10.0.0.7 - - [29/Feb/2100:00:00:00 +0000] "GET / HTTP/1.1" 200 0`, true},
	{"lower-case month", `10.0.0.7 - - [12/mar/2024:06:25:26 +0100] "GET / HTTP/1.1" 200 0`, true},
	{"fraction", `10.0.0.7 - - [12/Mar/2024:06:25:26.250 +0100] "GET / HTTP/1.1" 200 0`, true},
	{"bad time", `10.0.0.7 - - [yesterday] "GET / HTTP/1.1" 200 0`, true},
	{"code not a number", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET / HTTP/1.1" abc 1.5e3 "-" "-"`, true},
	{"newline in agent", "10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] \"GET / HTTP/1.1\" 200 0 \"-\" \"a\nb\"", true},
	{"unescaped quote in path", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /a"b HTTP/1.1" 200 0 "-" "-"`, false},
	{"tab after method", "10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] \"GET\t/ HTTP/1.1\" 200 0", false},
	{"trailing text", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET / HTTP/1.1" 200 0 "-" "-" extra`, false},
	{"not a log line", `hello world`, false},
}

var nginxCases = []presetCase{
	{"combined", `93.184.216.34 - - [12/Mar/2024:06:25:24 +0000] "GET /index.html HTTP/1.1" 304 - "-" "curl/8.4.0"`, true},
	{"common", `93.184.216.34 - - [12/Mar/2024:06:25:24 +0000] "GET /index.html HTTP/1.1" 200 512`, true},
	{"user and host", `10.1.2.3 example.com bob [12/Mar/2024:06:25:24 +0100] "POST /api/v1/orders?id=42 HTTP/1.1" 201 87 "https://example.com/cart" "Mozilla/5.0 (X11; Linux x86_64)"`, true},
	{"xff quoted", `10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] "GET / HTTP/1.1" 200 87 "-" "Mozilla/5.0" "203.0.113.9, 10.0.0.1"`, true},
	{"xff unquoted", `10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] "GET / HTTP/1.1" 200 87 "-" "Mozilla/5.0" 203.0.113.9`, true},
	{"xff -", `10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] "GET / HTTP/1.1" 200 87 "-" "Mozilla/5.0" "-"`, true},
	{"xff tab", "10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] \"GET / HTTP/1.1\" 200 87 \"-\" \"Mozilla/5.0\"\t\"1.2.3.4\"", true},
	{"xff open quote", `10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] "GET / HTTP/1.1" 200 87 "-" "Mozilla/5.0" "1.2.3.4`, true},
	{"xff empty", `10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] "GET / HTTP/1.1" 200 87 "-" "Mozilla/5.0" ""`, true},
	{"trailing space", `10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] "GET / HTTP/1.1" 200 87 "-" "Mozilla/5.0" `, true},
	{"ipv6", `2001:db8::1 - - [12/Mar/2024:06:25:25 +0100] "GET /static/app.js HTTP/2.0" 304 0 "https://example.com/" "Mozilla/5.0"`, true},
	{"request -", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "-" 400 0 "-" "-"`, true},
	{"escaped quote x22", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /q=\x22a\x22 HTTP/1.1" 200 0 "-" "-"`, true},
	{"space in path", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /a b HTTP/1.1" 200 0 "-" "-"`, true},
	{"bad time", `10.0.0.7 - - [12/Mar/2024:06:25:26] "GET / HTTP/1.1" 200 0 "-" "-"`, true},
	{"backslash quote", `10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /a\"b HTTP/1.1" 200 0 "-" "-"`, false},
	{"xff two quoted", `10.1.2.3 - - [12/Mar/2024:06:25:24 +0100] "GET / HTTP/1.1" 200 87 "-" "Mozilla/5.0" "a" "b"`, false},
	{"not a log line", `hello world`, false},
}

// presetParsers builds the parser for format with cfg and a reference that has the
// scanner and the fast time parse turned off: the regexp path as it was.
func presetParsers(t testing.TB, format string, cfg TargetConfig) (fast, ref *parser) {
	t.Helper()
	cfg.Path, cfg.Tag, cfg.Format = "/x", "x", format
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	fast, err := newParser(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fast.scan == scanNone {
		t.Fatalf("%s: no scanner", format)
	}
	ref, _ = newParser(cfg)
	ref.scan, ref.tf.clf = scanNone, false
	return fast, ref
}

// checkPresetLine asserts the scanner declines line or finds the regexp's groups, and
// that both parsers append the same bytes. It reports whether the scanner took it.
func checkPresetLine(t testing.TB, fast, ref *parser, line []byte) bool {
	t.Helper()
	var buf [2 * maxScanGroups]int
	m := fast.scanPreset(line, &buf)
	if m != nil {
		if want := ref.re.FindSubmatchIndex(line); !slices.Equal(m, want) {
			t.Fatalf("%q:\nscanner %v\n regexp %v", line, m, want)
		}
	}
	now := time.Unix(1700000000, 0)
	got, gotErr := fast.appendEntry([]byte{0xc0}, line, now, "/x")
	want, wantErr := ref.appendEntry([]byte{0xc0}, line, now, "/x")
	if gotErr != wantErr || !bytes.Equal(got, want) {
		t.Fatalf("%q:\nfast   %v % x\nregexp %v % x", line, gotErr, got, wantErr, want)
	}
	return m != nil
}

func TestPresetScanners(t *testing.T) {
	configs := []struct {
		name string
		cfg  TargetConfig
	}{
		{"defaults", TargetConfig{}},
		{"keep time", TargetConfig{KeepTimeKey: true, PathKey: "file"}},
		{"other time key", TargetConfig{TimeKey: "code", TimeFormat: "unix"}},
		{"user layout", TargetConfig{TimeFormat: "02/Jan/2006:15:04:05 -0700", Types: map[string]string{"size": "float", "method": "bool", "path": "integer"}}},
		{"syslog layout", TargetConfig{TimeFormat: "syslog"}},
	}
	for _, tc := range []struct {
		format string
		cases  []presetCase
	}{{FormatApache, apacheCases}, {FormatNginx, nginxCases}} {
		for _, c := range configs {
			fast, ref := presetParsers(t, tc.format, c.cfg)
			for _, pc := range tc.cases {
				t.Run(tc.format+"/"+c.name+"/"+pc.name, func(t *testing.T) {
					if took := checkPresetLine(t, fast, ref, []byte(pc.line)); took != pc.fast {
						t.Fatalf("scanner took the line: %v, want %v", took, pc.fast)
					}
				})
			}
		}
	}
	// A user regexp is never second-guessed by a scanner.
	p, err := newParser(TargetConfig{Format: FormatApache, Regexp: `^(?P<host>\S+)`}.WithDefaults())
	if err != nil || p.scan != scanNone {
		t.Fatalf("scanner %v with a user regexp (%v)", p.scan, err)
	}
}

func TestParseCLFTime(t *testing.T) {
	for _, tc := range []struct {
		s    string
		fast bool // parseCLFTime decides; otherwise time.ParseInLocation does
	}{
		{"10/Oct/2000:13:55:36 -0700", true}, {"01/Jan/1970:00:00:00 +0000", true},
		{"31/Dec/1969:23:59:59 +0000", true}, {"29/Feb/2024:12:00:00 +1400", true},
		{"29/Feb/2000:12:00:00 +0000", true}, {"01/Jan/0000:00:00:00 +0000", true},
		{"31/Dec/9999:23:59:59 -2359", true}, {"12/Mar/2024:06:25:26 +0530", true},
		{"29/Feb/2023:12:00:00 +0000", false}, {"29/Feb/1900:12:00:00 +0000", false},
		{"31/Apr/2024:12:00:00 +0000", false}, {"00/Jan/2024:12:00:00 +0000", false},
		{"12/Mar/2024:24:00:00 +0000", false}, {"12/Mar/2024:23:60:00 +0000", false},
		{"12/Mar/2024:23:59:60 +0000", false}, {"12/Mar/2024:06:25:26 +2400", false},
		{"12/Mar/2024:06:25:26 +0060", false}, {"12/Mar/2024:06:25:26 *0100", false},
		{"12/MAR/2024:06:25:26 +0100", false}, {"12/Mar/2024:06:25:26  +0100", false},
		{"2/Mar/2024:06:25:26 +0100", false}, {"12/Mar/2024:6:25:26 +0100", false},
		{"12/Mar/2024:06:25:26.5 +0100", false}, {"12/Mar/2024:06:25:26 +01:00", false},
		{"12/Mar/-024:06:25:26 +0100", false},
	} {
		want, err := time.ParseInLocation(clfLayout, tc.s, time.Local)
		got, ok := parseCLFTime([]byte(tc.s))
		if ok != tc.fast {
			t.Errorf("%s: parseCLFTime ok %v, want %v", tc.s, ok, tc.fast)
		}
		if ok && (err != nil || got != want.Unix() || want.Nanosecond() != 0) {
			t.Errorf("%s: %d, time.ParseInLocation %d (%v)", tc.s, got, want.Unix(), err)
		}
	}
}

// A line built to make the scanner try many closing quotes is declined after
// tailBudget tries instead of being scanned quadratically; the regexp still decides.
func TestPresetScannerBudget(t *testing.T) {
	fast, ref := presetParsers(t, FormatApache, TargetConfig{})
	hostile := `1 - - [12/Mar/2024:06:25:26 +0100] "GET /` + strings.Repeat(`\" 2 3 "`, 20000) + `x`
	if checkPresetLine(t, fast, ref, []byte(hostile)) {
		t.Fatal("hostile line taken")
	}
	long := `1 - - [12/Mar/2024:06:25:26 +0100] "GET / HTTP/1.1" 200 1 "` + strings.Repeat(`\"a`, 20000) + `" "ua"`
	if !checkPresetLine(t, fast, ref, []byte(long)) {
		t.Fatal("long escaped referer declined")
	}
}

func fuzzPreset(f *testing.F, format string, cases []presetCase) {
	for _, c := range cases {
		f.Add(c.line)
	}
	fast, ref := presetParsers(f, format, TargetConfig{KeepTimeKey: true})
	f.Fuzz(func(t *testing.T, line string) {
		checkPresetLine(t, fast, ref, []byte(line))
	})
}

func FuzzApacheFast(f *testing.F) { fuzzPreset(f, FormatApache, apacheCases) }
func FuzzNginxFast(f *testing.F)  { fuzzPreset(f, FormatNginx, nginxCases) }
