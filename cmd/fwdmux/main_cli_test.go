package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = realMain(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

const secretsFile = `
[listener]
shared_key = "listener-secret"
[listener.users]
alice = "alice-secret"
[admin]
token = "admin-secret"
[[servers]]
address = "fluentd.example.com:24224"
shared_key = "server-secret"
username = "bob"
password = "bob-secret"
`

func TestCheck(t *testing.T) {
	good := writeFile(t, "good.toml", secretsFile)
	bad := writeFile(t, "bad.toml", "[listener]\naddr = \"127.0.0.1:24224\"\nmax_conections = 10\n")
	invalid := writeFile(t, "invalid.toml", "[[servers]]\naddress = \"a:1\"\n[[servers]]\naddress = \"b:1\"\nweight = 5000\n")
	hydra := writeFile(t, "config.toml", hydraConfigTOML)
	tests := []struct {
		name       string
		args       []string
		code       int
		stdoutHas  []string
		stderrHas  []string
		stdoutNone []string
	}{
		{
			name: "good file prints the effective config, secrets masked",
			args: []string{"check", "-c", good}, code: 0,
			stdoutHas:  []string{`"address": "fluentd.example.com:24224"`, `"username": "bob"`, `"***"`, `"alice": "***"`, `"max_connections": 4096`},
			stdoutNone: []string{"listener-secret", "alice-secret", "admin-secret", "server-secret", "bob-secret"},
			stderrHas:  []string{"config OK"},
		},
		{
			name: "unknown key: exit 1 with the key, the line and a suggestion",
			args: []string{"check", "-c", bad}, code: 1,
			stderrHas: []string{bad + ":3:", "listener.max_conections", `did you mean "max_connections"`},
		},
		{
			name: "invalid value: exit 1 naming the key",
			args: []string{"check", "-c", invalid}, code: 1,
			stderrHas: []string{"servers[1].weight", "1..1000", invalid + ":5:"},
		},
		{
			name: "missing file",
			args: []string{"check", "-c", "/nonexistent/fwdmux.toml"}, code: 1,
			stderrHas: []string{"/nonexistent/fwdmux.toml"},
		},
		{
			name: "hydra file: OK with warnings",
			args: []string{"check", "-c", hydra}, code: 0,
			stdoutHas: []string{`"tag": "nginx.access"`, `"standby": true`, `"time_as_integer": true`},
			stderrHas: []string{"warning:", "ReadBufferSize", "config OK"},
		},
		{
			name: "flags apply on top of the file",
			args: []string{"check", "-c", good, "-listen", "127.0.0.1:9999"}, code: 0,
			stdoutHas: []string{`"addr": "127.0.0.1:9999"`},
		},
		{
			name: "check without -c is a usage error",
			args: []string{"check"}, code: 2,
			stderrHas: []string{"-c FILE"},
		},
		{
			name: "version",
			args: []string{"version"}, code: 0,
			stdoutHas: []string{"fwdmux " + version},
		},
		{
			name: "--version",
			args: []string{"--version"}, code: 0,
			stdoutHas: []string{"fwdmux "},
		},
		{
			name: "-h lists every flag of the contract",
			args: []string{"-h"}, code: 0,
			stderrHas: []string{"-c file", "-listen addr", "-admin addr", "-server host:port", "-log TAG=PATH",
				"-state-dir dir", "-log-format format", "-log-level level",
				"fwdmux check -c FILE", "fwdmux healthcheck", "fwdmux version",
				"FWDMUX_LISTEN", "FWDMUX_ADMIN", "FWDMUX_SERVERS", "FWDMUX_LOGS", "FWDMUX_STATE_DIR", "FWDMUX_ADMIN_TOKEN", "FWDMUX_SHARED_KEY"},
		},
		{
			name: "check -h",
			args: []string{"check", "-h"}, code: 0,
		},
		{
			name: "unknown flag",
			args: []string{"-bogus"}, code: 2,
			stderrHas: []string{"bogus"},
		},
		{
			name: "stray argument",
			args: []string{"run"}, code: 2,
			stderrHas: []string{`unexpected argument "run"`},
		},
		{
			name: "a bad config does not start",
			args: []string{"-c", bad}, code: 1,
			stderrHas: []string{"listener.max_conections"},
		},
		{
			name: "a bad flag value does not start",
			args: []string{"-log-level", "loud", "-admin", "off", "-listen", "off"}, code: 1,
			stderrHas: []string{"log_level"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, s := range tt.stdoutHas {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.stdoutNone {
				if strings.Contains(stdout, s) {
					t.Errorf("stdout shows %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
		})
	}
}

// The check output is the effective configuration as JSON, the defaults filled in.
func TestCheckOutputIsJSON(t *testing.T) {
	code, stdout, stderr := runMain(t, "check", "-c", writeFile(t, "f.toml", secretsFile))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var c Config
	if err := json.Unmarshal([]byte(stdout), &c); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if c.Listener.SharedKey != "***" || c.Admin.Token != "***" || c.Servers[0].Password != "***" || c.Servers[0].SharedKey != "***" {
		t.Errorf("secrets not masked: %+v", c)
	}
	if c.LogFormat != "text" || c.LogLevel != "info" || c.Ring.Overflow != "block" || c.Servers[0].Weight != 1 {
		t.Errorf("defaults not filled: %+v", c)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	var ready bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":503,"title":"not ready","detail":"no upstream is eligible"}`))
			return
		}
		w.Write([]byte(`{"status":"ready"}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	if code, _, stderr := runMain(t, "healthcheck", "-admin", addr); code != 1 || !strings.Contains(stderr, "no upstream is eligible") {
		t.Errorf("not ready: exit %d, stderr %q; want 1 with the reason", code, stderr)
	}
	ready = true
	if code, _, stderr := runMain(t, "healthcheck", "-admin", addr); code != 0 {
		t.Errorf("ready: exit %d, stderr %q", code, stderr)
	}
	t.Setenv("FWDMUX_ADMIN", addr)
	if code, _, stderr := runMain(t, "healthcheck"); code != 0 {
		t.Errorf("FWDMUX_ADMIN: exit %d, stderr %q", code, stderr)
	}
	srv.Close()
	if code, _, _ := runMain(t, "healthcheck", "-admin", addr, "-timeout", "1s"); code != 1 {
		t.Errorf("nothing listening: exit %d, want 1", code)
	}
	if code, _, _ := runMain(t, "healthcheck", "-bogus"); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}
