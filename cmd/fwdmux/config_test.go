package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/fwdmux/fwdmux/admin"
	"github.com/fwdmux/fwdmux/balance"
	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/tail"
)

// writeFile writes body to name in a fresh temp dir and returns the path.
func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// env is an injected environment for buildConfig.
func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

func addrs(c Config) []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.Address)
	}
	return out
}

func logSpecs(c Config) []string {
	var out []string
	for _, l := range c.Logs {
		out = append(out, l.Tag+"="+l.Path)
	}
	return out
}

const precedenceFile = `
state_dir = "/file/state"
[listener]
addr = "127.0.0.1:1111"
[admin]
listen = "127.0.0.1:2222"
[[servers]]
address = "file-up:24224"
[[logs]]
tag = "file"
path = "/var/log/file.log"
`

func TestBuildConfigPrecedence(t *testing.T) {
	file := writeFile(t, "fwdmux.toml", precedenceFile)
	fullEnv := map[string]string{
		"FWDMUX_LISTEN":    "127.0.0.1:3333",
		"FWDMUX_ADMIN":     "127.0.0.1:4444",
		"FWDMUX_SERVERS":   "env-a:24224, env-b:24224",
		"FWDMUX_LOGS":      "enva=/var/log/a.log,envb=/var/log/b/*.log",
		"FWDMUX_STATE_DIR": "/env/state",
	}
	flags := options{
		listen: "127.0.0.1:5555", admin: "127.0.0.1:6666", adminSet: true,
		servers: []string{"flag-up:24224"}, logs: []string{"flag=/var/log/flag.log"},
		stateDir: "/flag/state",
	}
	type want struct {
		listen, admin, stateDir string
		servers, logs           []string
	}
	tests := []struct {
		name string
		file bool
		env  map[string]string
		opts options
		want want
	}{
		{
			name: "defaults",
			want: want{listen: "127.0.0.1:24224", admin: admin.DefaultListen, stateDir: "./fwdmux-state"},
		},
		{
			name: "file over defaults",
			file: true,
			want: want{listen: "127.0.0.1:1111", admin: "127.0.0.1:2222", stateDir: "/file/state",
				servers: []string{"file-up:24224"}, logs: []string{"file=/var/log/file.log"}},
		},
		{
			name: "env over file",
			file: true, env: fullEnv,
			want: want{listen: "127.0.0.1:3333", admin: "127.0.0.1:4444", stateDir: "/env/state",
				servers: []string{"env-a:24224", "env-b:24224"}, logs: []string{"enva=/var/log/a.log", "envb=/var/log/b/*.log"}},
		},
		{
			name: "env over defaults without a file",
			env:  fullEnv,
			want: want{listen: "127.0.0.1:3333", admin: "127.0.0.1:4444", stateDir: "/env/state",
				servers: []string{"env-a:24224", "env-b:24224"}, logs: []string{"enva=/var/log/a.log", "envb=/var/log/b/*.log"}},
		},
		{
			name: "flags over env over file",
			file: true, env: fullEnv, opts: flags,
			want: want{listen: "127.0.0.1:5555", admin: "127.0.0.1:6666", stateDir: "/flag/state",
				servers: []string{"flag-up:24224"}, logs: []string{"flag=/var/log/flag.log"}},
		},
		{
			name: "an empty env value keeps the file",
			file: true, env: map[string]string{"FWDMUX_LISTEN": "", "FWDMUX_SERVERS": "", "FWDMUX_LOGS": "", "FWDMUX_STATE_DIR": ""},
			want: want{listen: "127.0.0.1:1111", admin: "127.0.0.1:2222", stateDir: "/file/state",
				servers: []string{"file-up:24224"}, logs: []string{"file=/var/log/file.log"}},
		},
		{
			name: "FWDMUX_ADMIN empty disables the API",
			file: true, env: map[string]string{"FWDMUX_ADMIN": ""},
			want: want{listen: "127.0.0.1:1111", admin: admin.ListenOff, stateDir: "/file/state",
				servers: []string{"file-up:24224"}, logs: []string{"file=/var/log/file.log"}},
		},
		{
			name: "-admin off over env",
			env:  map[string]string{"FWDMUX_ADMIN": "127.0.0.1:4444"},
			opts: options{admin: "off", adminSet: true},
			want: want{listen: "127.0.0.1:24224", admin: admin.ListenOff, stateDir: "./fwdmux-state"},
		},
		{
			name: "-admin \"\" disables the API",
			opts: options{admin: "", adminSet: true},
			want: want{listen: "127.0.0.1:24224", admin: admin.ListenOff, stateDir: "./fwdmux-state"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			if tt.file {
				o.config = file
			}
			c, err := buildConfig(o, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			got := want{listen: c.Listener.Addr, admin: c.Admin.Listen, stateDir: c.StateDir, servers: addrs(c), logs: logSpecs(c)}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			// The state dir carries the position file and the admin's runtime.json.
			if wantPos := filepath.Join(tt.want.stateDir, "positions.json"); c.Tail.PositionFile != wantPos {
				t.Errorf("position_file = %q, want %q", c.Tail.PositionFile, wantPos)
			}
			if c.Admin.StateDir != tt.want.stateDir {
				t.Errorf("admin.state_dir = %q, want %q", c.Admin.StateDir, tt.want.stateDir)
			}
		})
	}
}

func TestBuildConfigSecretsFromEnv(t *testing.T) {
	c, err := buildConfig(options{admin: "0.0.0.0:24223", adminSet: true},
		env(map[string]string{"FWDMUX_ADMIN_TOKEN": "s3cret", "FWDMUX_SHARED_KEY": "k3y"}))
	if err != nil {
		t.Fatalf("a non-loopback admin with FWDMUX_ADMIN_TOKEN must be accepted: %v", err)
	}
	if c.Admin.Token != "s3cret" || c.Listener.SharedKey != "k3y" {
		t.Errorf("token %q shared key %q", c.Admin.Token, c.Listener.SharedKey)
	}
	if _, err := buildConfig(options{admin: "0.0.0.0:24223", adminSet: true}, env(nil)); err == nil {
		t.Error("a non-loopback admin without a token was accepted")
	}
}

func TestBuildConfigErrors(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		env      map[string]string
		opts     options
		key      string
		line     int    // 0: no line expected
		contains string // in the message
	}{
		{
			name: "unknown top-level key",
			body: "state_dri = \"/x\"\n",
			key:  "state_dri", line: 1, contains: `did you mean "state_dir"`,
		},
		{
			name: "unknown key in a table",
			body: "[listener]\naddr = \"127.0.0.1:24224\"\nmax_conections = 10\n",
			key:  "listener.max_conections", line: 3, contains: `did you mean "max_connections"`,
		},
		{
			name: "unknown key in the second server",
			body: "[[servers]]\naddress = \"a:1\"\n\n[[servers]]\naddress = \"b:1\"\nwieght = 2\n",
			key:  "servers[1].wieght", line: 6, contains: `did you mean "weight"`,
		},
		{
			name: "unknown table",
			body: "[listner]\naddr = \"127.0.0.1:1\"\n",
			key:  "listner", line: 1, contains: `did you mean "listener"`,
		},
		{
			name: "a capitalised typo is not a hydra file",
			body: "Stat_dir = \"/x\"\n",
			key:  "Stat_dir", line: 1, contains: `did you mean "state_dir"`,
		},
		{
			name: "type error",
			body: "[[servers]]\naddress = \"a:1\"\nweight = \"x\"\n",
			key:  "servers[0].weight", line: 3, contains: "string",
		},
		{
			name: "bad duration",
			body: "[forward]\n\nack_timeout = \"soon\"\n",
			key:  "forward.ack_timeout", line: 3, contains: "duration",
		},
		{
			name: "syntax error",
			body: "[listener]\naddr = \n",
			key:  "listener.addr", line: 2, contains: "expected",
		},
		{
			name: "validation error names the server",
			body: "[[servers]]\naddress = \"a:1\"\n\n[[servers]]\naddress = \"b:1\"\nweight = 5000\n",
			key:  "servers[1].weight", line: 6, contains: "1..1000",
		},
		{
			name: "validation error in a table",
			body: "[ring]\noverflow = \"spill\"\n",
			key:  "ring.overflow", line: 2, contains: "spill",
		},
		{
			name: "validation error at the top",
			body: "log_level = \"loud\"\n",
			key:  "log_level", line: 1, contains: "loud",
		},
		{
			name: "duplicate server id",
			body: "[[servers]]\naddress = \"a:1\"\n[[servers]]\naddress = \"a:1\"\n",
			key:  "servers[1].id", contains: "duplicate",
		},
		{
			name: "bad log from the environment",
			env:  map[string]string{"FWDMUX_LOGS": "no-equals-sign"},
			key:  "FWDMUX_LOGS", contains: "TAG=PATH",
		},
		{
			name: "bad -log flag",
			opts: options{logs: []string{"=/x"}},
			key:  "-log", contains: "TAG=PATH",
		},
		{
			name: "bad server from a flag",
			opts: options{servers: []string{"nohost"}},
			key:  "servers[0].address", contains: "host:port",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			if tt.body != "" {
				o.config = writeFile(t, "fwdmux.toml", tt.body)
			}
			_, err := buildConfig(o, env(tt.env))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *ConfigError", err, err)
			}
			if ce.Key != tt.key {
				t.Errorf("key = %q, want %q (%v)", ce.Key, tt.key, err)
			}
			if tt.line != 0 && ce.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", ce.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not say %q", err, tt.contains)
			}
			if tt.body != "" && ce.File != o.config {
				t.Errorf("file = %q, want %q", ce.File, o.config)
			}
		})
	}
}

// A fluent-agent-hydra config.toml, as people run it, with every key hydra knows.
const hydraConfigTOML = `# global settings
TagPrefix = "nginx"       # "nginx.access", "nginx.error"
FieldName = "msg"
ReadBufferSize = 1048576
ServerRoundRobin = false
SubSecondTime = false

# tailing log file (in_tail)
[[Logs]]
File = "/var/log/nginx/access.log"
Tag = "access"
Format = "Regexp"
Regexp = "apache"
TimeParse = true

[[Logs]]
File = "/var/log/nginx/error.log"
Tag = "error"

[[Logs]]
File = "/var/log/app/app.ltsv"
Tag = "app"
Format = "LTSV"
FieldName = "line"
Types = "a:integer,b:string,c:float"
TimeParse = true
TimeKey = "ts"
TimeFormat = "2006-01-02 15:04:05"

[[Logs]]
File = "/var/log/app/custom.log"
Tag = "custom"
Format = "Regexp"
Regexp = '^(?P<host>\S+) (?P<msg>.*)$'

# forwarding fluentd server (out_forward)
[[Servers]]
Host = "fluentd.example.com"
Port = 24224

[[Servers]]
Host = "fluentd-backup.example.com"
Port = 24225

[[Servers]]
Host = "fluentd-dr.example.com"

# receive fluentd forward protocol daemon (in_forward)
[Receiver]
Host = "127.0.0.1"
Port = 24226
MaxBufferMessages = 1000

# stats monitor http daemon
[Monitor]
Host = "localhost"
Port = 24227
`

func TestHydraMapping(t *testing.T) {
	path := writeFile(t, "config.toml", hydraConfigTOML)
	c, err := buildConfig(options{config: path}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !c.hydra {
		t.Fatal("not detected as a fluent-agent-hydra config")
	}
	if c.Listener.Addr != "127.0.0.1:24226" {
		t.Errorf("listener = %q, want [Receiver] 127.0.0.1:24226", c.Listener.Addr)
	}
	if c.Admin.Listen != "localhost:24227" {
		t.Errorf("admin = %q, want [Monitor] localhost:24227", c.Admin.Listen)
	}

	type srv struct {
		addr             string
		standby, integer bool
	}
	var gotSrv []srv
	for _, s := range c.Servers {
		gotSrv = append(gotSrv, srv{s.Address, s.Standby, s.TimeAsInteger})
	}
	wantSrv := []srv{
		{"fluentd.example.com:24224", false, true}, // ServerRoundRobin false: the first is primary,
		{"fluentd-backup.example.com:24225", true, true},
		{"fluentd-dr.example.com:24224", true, true}, // the others standby; SubSecondTime false: integer times
	}
	if !reflect.DeepEqual(gotSrv, wantSrv) {
		t.Errorf("servers\ngot  %+v\nwant %+v", gotSrv, wantSrv)
	}

	if len(c.Logs) != 4 {
		t.Fatalf("%d logs, want 4: %+v", len(c.Logs), c.Logs)
	}
	access, errLog, app, custom := c.Logs[0], c.Logs[1], c.Logs[2], c.Logs[3]
	checks := []struct {
		name      string
		got, want any
	}{
		{"access tag (TagPrefix)", access.Tag, "nginx.access"},
		{"access path", access.Path, "/var/log/nginx/access.log"},
		{"access format (Regexp = apache preset)", access.Format, tail.FormatApache},
		{"access regexp (preset, none of its own)", access.Regexp, ""},
		{"access time key (TimeParse)", access.TimeKey, "time"},
		{"access time format (preset's)", access.TimeFormat, "apache"},
		{"access keeps its time field as hydra did", access.KeepTimeKey, true},
		{"access message key (FieldName)", access.MessageKey, "msg"},
		{"error tag", errLog.Tag, "nginx.error"},
		{"error format", errLog.Format, tail.FormatNone},
		{"error message key (global FieldName)", errLog.MessageKey, "msg"},
		{"error time key (no TimeParse)", errLog.TimeKey, ""},
		{"app format", app.Format, tail.FormatLTSV},
		{"app message key (per-log FieldName)", app.MessageKey, "line"},
		{"app types (string needs no conversion)", app.Types, map[string]string{"a": "integer", "c": "float"}},
		{"app time key", app.TimeKey, "ts"},
		{"app time format", app.TimeFormat, "2006-01-02 15:04:05"},
		{"custom format", custom.Format, tail.FormatRegexp},
		{"custom regexp", custom.Regexp, `^(?P<host>\S+) (?P<msg>.*)$`},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	// Keys hydra has and fwdmux does not: a warning each, never an error.
	for _, w := range []string{"ReadBufferSize", "MaxBufferMessages"} {
		if !slices.ContainsFunc(c.warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning about %s: %q", w, c.warnings)
		}
	}
}

func TestHydraVariants(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, c Config)
	}{
		{
			name: "round robin and sub-second times",
			body: "ServerRoundRobin = true\nSubSecondTime = true\n[[Servers]]\nHost = \"a\"\n[[Servers]]\nHost = \"b\"\n",
			check: func(t *testing.T, c Config) {
				for _, s := range c.Servers {
					if s.Standby || s.TimeAsInteger {
						t.Errorf("%s: standby %v time_as_integer %v, want both false", s.Address, s.Standby, s.TimeAsInteger)
					}
				}
			},
		},
		{
			name: "no Receiver, no Monitor: neither listens, as hydra",
			body: "[[Logs]]\nFile = \"/var/log/x.log\"\nTag = \"x\"\n",
			check: func(t *testing.T, c Config) {
				if c.Listener.Addr != listenOff || c.Admin.Enabled() {
					t.Errorf("listener %q admin %q, want both off", c.Listener.Addr, c.Admin.Listen)
				}
				if c.Logs[0].Tag != "x" || c.Logs[0].MessageKey != "message" {
					t.Errorf("log %+v", c.Logs[0])
				}
			},
		},
		{
			name: "Receiver without Host listens on every interface, as hydra",
			body: "[Receiver]\nPort = 24224\n[[Servers]]\nHost = \"a\"\n",
			check: func(t *testing.T, c Config) {
				if c.Listener.Addr != ":24224" {
					t.Errorf("listener %q, want :24224", c.Listener.Addr)
				}
			},
		},
		{
			name: "unknown hydra keys are warnings",
			body: "TagPrefix = \"p\"\nVerbose = true\n[[Logs]]\nFile = \"/var/log/x.log\"\nTag = \"x\"\nColor = \"red\"\n",
			check: func(t *testing.T, c Config) {
				var verbose, color bool
				for _, w := range c.warnings {
					verbose = verbose || strings.Contains(w, "Verbose") && strings.Contains(w, ":2:")
					color = color || strings.Contains(w, "Logs.Color") && strings.Contains(w, ":6:")
				}
				if !verbose || !color {
					t.Errorf("warnings %q, want Verbose (line 2) and Logs.Color (line 6)", c.warnings)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := buildConfig(options{config: writeFile(t, "config.toml", tt.body)}, env(nil))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestHydraErrors(t *testing.T) {
	tests := []struct{ name, body, key string }{
		{"unknown format", "[[Logs]]\nFile = \"/x\"\nTag = \"x\"\nFormat = \"xml\"\n", "Logs[0].Format"},
		{"bad types", "[[Logs]]\nFile = \"/x\"\nTag = \"x\"\nTypes = \"a:decimal\"\n", "Logs[0].Types"},
		{"missing tag", "[[Logs]]\nFile = \"/x\"\n", "logs[0].tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildConfig(options{config: writeFile(t, "config.toml", tt.body)}, env(nil))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tt.key {
				t.Fatalf("err = %v, want a ConfigError for %s", err, tt.key)
			}
		})
	}
}

// The example must show every key of fwdmux's schema, and nothing else.
func TestExampleConfigCoversEveryKey(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "fwdmux.toml")
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Errorf("unknown keys in the example: %v", und)
	}
	have := map[string]bool{}
	for _, k := range md.Keys() {
		have[k.String()] = true
	}
	tables := map[string]any{
		"": Config{}, "listener": proxy.ListenerConfig{}, "ring": proxy.RingConfig{},
		"forward": balance.Config{}, "servers": balance.UpstreamConfig{}, "tail": tail.Config{},
		"logs": tail.TargetConfig{}, "admin": admin.Config{},
	}
	for table, v := range tables {
		for _, k := range structTags(v) {
			full := k
			if table != "" {
				full = table + "." + k
			}
			if !have[full] {
				t.Errorf("examples/fwdmux.toml does not show %s", full)
			}
		}
	}

	// Every value shown is the default: the example decodes to the defaults, except
	// the example server and log target.
	var zero Config
	zero.Servers = []balance.UpstreamConfig{{Address: c.Servers[0].Address}}
	zero.Logs = []tail.TargetConfig{{Path: c.Logs[0].Path, Tag: c.Logs[0].Tag}}
	zero.defaults()
	c.defaults()
	if c.Listener.SelfHostname != zero.Listener.SelfHostname {
		t.Errorf("self_hostname differs")
	}
	// Empty maps and explicit false pointers are how the example spells the defaults.
	c.Listener.Users, zero.Listener.Users = nil, nil
	c.Logs[0].Types, zero.Logs[0].Types = nil, nil
	c.Logs[0].ReadFromHead = nil
	if got, want := c.masked(), zero.masked(); !reflect.DeepEqual(got, want) {
		t.Errorf("the example's values are not the defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestDurationsInConfig(t *testing.T) {
	c, err := buildConfig(options{config: writeFile(t, "d.toml", "drain_timeout = \"2m\"\n[forward]\nack_timeout = \"1.5s\"\n")}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DrainTimeout.D() != 2*time.Minute || c.Forward.AckTimeout.D() != 1500*time.Millisecond {
		t.Errorf("drain %v ack %v", c.DrainTimeout, c.Forward.AckTimeout)
	}
	var _ conf.Duration = c.DrainTimeout
}
