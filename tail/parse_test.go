package tail

import (
	"encoding/json"
	"reflect"
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
