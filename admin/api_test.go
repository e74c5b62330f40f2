package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwdmux/fwdmux/internal/conf"
)

func TestContractIsValid(t *testing.T) {
	if _, err := contract(); err != nil {
		t.Fatal(err)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, Config{})
	var st statusBody
	e.do(t, call{method: "GET", path: "/health"}).want(t, 200, "").decode(t, &st)
	if st.Status != "ok" {
		t.Fatalf("status %q", st.Status)
	}
	if id := e.do(t, call{method: "GET", path: "/health"}).header.Get("X-Request-Id"); id == "" {
		t.Error("no X-Request-Id in the response")
	}
}

func TestReady(t *testing.T) {
	tests := []struct {
		name       string
		output     string
		servers    bool // keep the config upstream (eligible)
		readiness  Readiness
		wantStatus int
		wantDetail string
	}{
		{"eligible upstream", OutputForward, true, nil, 200, ""},
		{"stdout output", OutputStdout, false, nil, 200, ""},
		{"no upstream", OutputForward, false, nil, 503, "no upstream is configured"},
		{"readiness says no", OutputStdout, true, fakeReadiness{false, "ring closed"}, 503, "ring closed"},
		{"readiness says yes", OutputForward, false, fakeReadiness{true, ""}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(d *Deps) { d.Readiness = tt.readiness })
			e.stats.setOutput(tt.output)
			if !tt.servers {
				_ = e.servers.Remove(configServer.ID)
			}
			r := e.do(t, call{method: "GET", path: "/ready"}).want(t, tt.wantStatus, "")
			if r.problem.Detail != tt.wantDetail {
				t.Fatalf("detail %q, want %q", r.problem.Detail, tt.wantDetail)
			}
		})
	}

	t.Run("not eligible", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.servers.mu.Lock()
		st := e.servers.items[configServer.ID]
		st.Eligible = false
		e.servers.items[configServer.ID] = st
		e.servers.mu.Unlock()
		r := e.do(t, call{method: "GET", path: "/ready"}).want(t, 503, "")
		if r.problem.Detail != "none of the 1 upstreams is eligible" {
			t.Fatalf("detail %q", r.problem.Detail)
		}
	})

	t.Run("draining", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.do(t, call{method: "GET", path: "/ready"}).want(t, 200, "")
		e.srv.SetDraining()
		e.srv.SetDraining()
		r := e.do(t, call{method: "GET", path: "/ready"}).want(t, 503, "")
		if r.problem.Detail != "shutting down" {
			t.Fatalf("detail %q", r.problem.Detail)
		}
	})
}

func TestLogsLifecycle(t *testing.T) {
	e := newEnv(t, Config{StateDir: t.TempDir()})
	spec := map[string]any{
		"path": "/var/log/nginx/access.log", "tag": "nginx.access", "format": "nginx",
		"types": map[string]string{"status": "integer"}, "multiline_timeout": "2s", "read_from_head": true,
		"exclude": []string{"*.gz"}, "max_line_bytes": 65536,
	}
	r := e.do(t, call{method: "POST", path: "/logs", body: spec}).want(t, 201, "")
	var added LogStatus
	r.decode(t, &added)
	wantID := LogID(LogSpec{Path: "/var/log/nginx/access.log", Tag: "nginx.access"})
	if added.ID != wantID || added.Source != SourceAPI || added.MultilineTimeout.String() != "2s" || !added.ReadFromHead {
		t.Fatalf("added: %+v", added)
	}
	if loc := r.header.Get("Location"); loc != "/logs/"+wantID {
		t.Fatalf("Location %q", loc)
	}

	var list logList
	e.do(t, call{method: "GET", path: "/logs"}).want(t, 200, "").decode(t, &list)
	if len(list.Logs) != 2 || list.Logs[0].ID != "app" || list.Logs[0].Source != SourceConfig ||
		list.Logs[1].ID != wantID || list.Logs[1].Source != SourceAPI {
		t.Fatalf("list: %+v", list)
	}

	var got LogStatus
	e.do(t, call{method: "GET", path: "/logs/" + wantID}).want(t, 200, "").decode(t, &got)
	if got.Path != "/var/log/nginx/access.log" || len(got.Files) != 1 || got.Files[0].Inode != 42 {
		t.Fatalf("get: %+v", got)
	}

	e.do(t, call{method: "POST", path: "/logs", body: spec}).want(t, 409, "id")
	e.do(t, call{method: "DELETE", path: "/logs/" + wantID}).want(t, 204, "")
	e.do(t, call{method: "GET", path: "/logs/" + wantID}).want(t, 404, "id")
	e.do(t, call{method: "DELETE", path: "/logs/" + wantID}).want(t, 404, "id")

	// An explicit id, and a path that is cleaned before it is used.
	var withID LogStatus
	e.do(t, call{method: "POST", path: "/logs", body: map[string]any{"id": "my-app", "path": "/var/log/x/../app/b.log", "tag": "b"}}).
		want(t, 201, "").decode(t, &withID)
	if withID.ID != "my-app" || withID.Path != "/var/log/app/b.log" {
		t.Fatalf("with id: %+v", withID)
	}
}

func TestLogsErrors(t *testing.T) {
	big := `{"path":"/var/log/` + strings.Repeat("a", 70<<10) + `","tag":"t"}`
	tests := []struct {
		name    string
		c       call
		status  int
		field   string
		addErr  error
		keepOff bool
	}{
		{"unknown field", call{body: `{"path":"/var/log/a.log","tag":"t","bogus":1}`, invalid: true}, 400, "bogus", nil, false},
		{"wrong type", call{body: `{"path":"/var/log/a.log","tag":5}`, invalid: true}, 400, "tag", nil, false},
		{"wrong type nested", call{body: `{"path":"/var/log/a.log","tag":"t","types":{"a":1}}`, invalid: true}, 400, "types", nil, false},
		{"bad duration", call{body: `{"path":"/var/log/a.log","tag":"t","rotate_wait":"soon"}`, invalid: true}, 400, "rotate_wait", nil, false},
		{"duration as number", call{body: `{"path":"/var/log/a.log","tag":"t","rotate_wait":5}`, invalid: true}, 400, "rotate_wait", nil, false},
		{"malformed json", call{body: `{"path":`, invalid: true}, 400, "body", nil, false},
		{"not an object", call{body: `[1,2]`, invalid: true}, 400, "body", nil, false},
		// openapi3filter decodes only the first value, so the contract cannot express this one.
		{"two objects", call{body: `{"path":"/var/log/a.log","tag":"t"} {}`}, 400, "body", nil, false},
		{"empty body", call{body: ``, invalid: true}, 400, "body", nil, false},
		{"missing tag", call{body: `{"path":"/var/log/a.log"}`, invalid: true}, 400, "tag", nil, false},
		{"tag with space", call{body: `{"path":"/var/log/a.log","tag":"a b"}`, invalid: true}, 400, "tag", nil, false},
		{"missing path", call{body: `{"tag":"t"}`, invalid: true}, 400, "path", nil, false},
		{"relative path", call{body: `{"path":"var/log/a.log","tag":"t"}`}, 400, "path", nil, false},
		{"bad format", call{body: `{"path":"/var/log/a.log","tag":"t","format":"xml"}`, invalid: true}, 400, "format", nil, false},
		{"regexp format without regexp", call{body: `{"path":"/var/log/a.log","tag":"t","format":"regexp"}`}, 400, "regexp", nil, false},
		{"bad regexp", call{body: `{"path":"/var/log/a.log","tag":"t","format":"regexp","regexp":"(?P<a>"}`}, 400, "regexp", nil, false},
		{"bad type name", call{body: `{"path":"/var/log/a.log","tag":"t","types":{"a":"date"}}`, invalid: true}, 400, "types.a", nil, false},
		{"bad id", call{body: `{"id":"../x","path":"/var/log/a.log","tag":"t"}`, invalid: true}, 400, "id", nil, false},
		{"negative max_line_bytes", call{body: `{"path":"/var/log/a.log","tag":"t","max_line_bytes":-1}`, invalid: true}, 400, "max_line_bytes", nil, false},
		{"outside allow-list", call{body: `{"path":"/etc/shadow","tag":"t"}`}, 403, "path", nil, false},
		{"dot-dot escape", call{body: `{"path":"/var/log/../../etc/shadow","tag":"t"}`}, 403, "path", nil, false},
		{"glob escape", call{body: `{"path":"/var/log/{a,../../etc}/shadow","tag":"t"}`}, 400, "path", nil, false},
		{"duplicate of config item", call{body: `{"id":"app","path":"/var/log/a.log","tag":"t"}`}, 409, "id", nil, false},
		{"component field error", call{body: `{"path":"/var/log/a.log","tag":"t","time_format":"%Q"}`}, 400, "time_format",
			&conf.FieldError{Field: "time_format", Reason: "unknown directive %Q"}, false},
		{"component duplicate", call{body: `{"path":"/var/log/a.log","tag":"t"}`}, 409, "id", ErrDuplicate, false},
		{"wrong content type", call{body: `{"path":"/var/log/a.log","tag":"t"}`, contentType: "text/plain", invalid: true}, 415, "Content-Type", nil, false},
		{"too large", call{body: big, invalid: true}, 413, "body", nil, false},
		{"too large chunked", call{body: big, chunked: true, invalid: true}, 413, "body", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			e := newEnv(t, Config{StateDir: dir})
			e.targets.mu.Lock()
			e.targets.addErr = tt.addErr
			e.targets.mu.Unlock()
			tt.c.method, tt.c.path = "POST", "/logs"
			e.do(t, tt.c).want(t, tt.status, tt.field)
			if n := len(e.targets.List()); n != 1 {
				t.Fatalf("%d targets after a refused POST, want 1", n)
			}
			// A refused change is not remembered either.
			if b, err := os.ReadFile(filepath.Join(dir, StateFile)); err == nil && strings.Contains(string(b), `"path"`) {
				t.Fatalf("runtime.json remembers a refused target: %s", b)
			}
		})
	}
}

func TestServersLifecycle(t *testing.T) {
	e := newEnv(t, Config{StateDir: t.TempDir()})
	body := map[string]any{"address": "tls://agg.example:24224", "shared_key": "s3cret", "username": "u", "password": "p",
		"tls_server_name": "agg", "heartbeat": "tcp", "heartbeat_interval": "2s"}
	r := e.do(t, call{method: "POST", path: "/servers", body: body}).want(t, 201, "")
	if strings.Contains(string(r.body), "s3cret") || strings.Contains(string(r.body), `"shared_key"`) || strings.Contains(string(r.body), `"password"`) {
		t.Fatalf("a secret is in the response: %s", r.body)
	}
	var added ServerStatus
	r.decode(t, &added)
	id := ServerID(ServerSpec{Address: "tls://agg.example:24224"})
	if added.ID != id || !added.SharedKeySet || !added.PasswordSet || added.Weight != 1 || !added.RequireAck || added.Source != SourceAPI {
		t.Fatalf("added: %+v", added)
	}
	e.servers.mu.Lock()
	gotSpec := e.servers.specs[id]
	e.servers.mu.Unlock()
	if gotSpec.SharedKey != "s3cret" || gotSpec.RequireAck == nil || !*gotSpec.RequireAck || gotSpec.Weight != 1 {
		t.Fatalf("Servers.Add got %+v", gotSpec)
	}

	var list serverList
	e.do(t, call{method: "GET", path: "/servers"}).want(t, 200, "").decode(t, &list)
	if len(list.Servers) != 2 || list.Servers[0].ID != "primary" || list.Servers[0].Source != SourceConfig || list.Servers[1].Source != SourceAPI {
		t.Fatalf("list: %+v", list)
	}
	var got ServerStatus
	e.do(t, call{method: "GET", path: "/servers/" + id}).want(t, 200, "").decode(t, &got)
	if got.Address != "tls://agg.example:24224" {
		t.Fatalf("get: %+v", got)
	}
	e.do(t, call{method: "POST", path: "/servers", body: body}).want(t, 409, "id")
	e.do(t, call{method: "DELETE", path: "/servers/" + id}).want(t, 204, "")
	e.do(t, call{method: "GET", path: "/servers/" + id}).want(t, 404, "id")
	e.do(t, call{method: "DELETE", path: "/servers/nope"}).want(t, 404, "id")

	f := false
	var noAck ServerStatus
	e.do(t, call{method: "POST", path: "/servers", body: ServerSpec{ID: "b", Address: "10.0.0.2:24224", Weight: 3, Standby: true, RequireAck: &f}}).
		want(t, 201, "").decode(t, &noAck)
	if noAck.RequireAck || noAck.Weight != 3 || !noAck.Standby {
		t.Fatalf("explicit fields: %+v", noAck)
	}
}

func TestServersErrors(t *testing.T) {
	tests := []struct {
		name   string
		c      call
		status int
		field  string
	}{
		{"missing address", call{body: `{"weight":2}`, invalid: true}, 400, "address"},
		{"bad address", call{body: `{"address":"nohost"}`}, 400, "address"},
		{"bad port", call{body: `{"address":"h:99999"}`}, 400, "address"},
		{"other scheme", call{body: `{"address":"udp://h:1"}`}, 400, "address"},
		{"weight too big", call{body: `{"address":"h:1","weight":5000}`, invalid: true}, 400, "weight"},
		{"weight negative", call{body: `{"address":"h:1","weight":-1}`, invalid: true}, 400, "weight"},
		{"weight not int", call{body: `{"address":"h:1","weight":"heavy"}`, invalid: true}, 400, "weight"},
		{"weight fraction", call{body: `{"address":"h:1","weight":1.5}`, invalid: true}, 400, "weight"},
		{"bad heartbeat", call{body: `{"address":"h:1","heartbeat":"icmp"}`, invalid: true}, 400, "heartbeat"},
		{"bad heartbeat_interval", call{body: `{"address":"h:1","heartbeat_interval":"often"}`, invalid: true}, 400, "heartbeat_interval"},
		{"tls option without tls", call{body: `{"address":"h:1","tls_ca_file":"/ca.pem"}`}, 400, "tls_ca_file"},
		{"password without username", call{body: `{"address":"h:1","password":"p"}`}, 400, "username"},
		{"unknown field", call{body: `{"address":"h:1","host":"h"}`, invalid: true}, 400, "host"},
		{"duplicate config id", call{body: `{"id":"primary","address":"h:1"}`}, 409, "id"},
		{"wrong content type", call{body: `address=h:1`, contentType: "application/x-www-form-urlencoded", invalid: true}, 415, "Content-Type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			tt.c.method, tt.c.path = "POST", "/servers"
			e.do(t, tt.c).want(t, tt.status, tt.field)
			if n := len(e.servers.List()); n != 1 {
				t.Fatalf("%d servers after a refused POST", n)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	const token = "t0ken"
	e := newEnv(t, Config{Token: token})
	logBody := `{"path":"/var/log/a.log","tag":"a"}`
	srvBody := `{"address":"h:1"}`
	for _, tc := range []struct {
		name   string
		auth   string
		status int
	}{
		{"no header", "", 401},
		{"basic", "Basic dXNlcjpwYXNz", 401},
		{"empty bearer", "Bearer ", 401},
		{"wrong token", "Bearer nope", 403},
		{"token prefix", "Bearer t0k", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []call{
				{method: "POST", path: "/logs", body: logBody},
				{method: "DELETE", path: "/logs/app"},
				{method: "POST", path: "/servers", body: srvBody},
				{method: "DELETE", path: "/servers/primary"},
			} {
				c.token = tc.auth
				r := e.do(t, c).want(t, tc.status, "Authorization")
				if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
					t.Fatalf("%s %s: no WWW-Authenticate", c.method, c.path)
				}
			}
		})
	}
	// Auth comes before the body checks: a refused request learns nothing more.
	e.do(t, call{method: "POST", path: "/logs", body: `{`, invalid: true}).want(t, 401, "Authorization")
	// Reads need no token.
	e.do(t, call{method: "GET", path: "/logs"}).want(t, 200, "")
	e.do(t, call{method: "GET", path: "/servers/primary"}).want(t, 200, "")
	// The right token passes, in any case of the scheme.
	e.do(t, call{method: "POST", path: "/logs", body: logBody, token: "Bearer " + token}).want(t, 201, "")
	e.do(t, call{method: "DELETE", path: "/logs/app", token: "bearer " + token}).want(t, 204, "")
	e.do(t, call{method: "POST", path: "/servers", body: srvBody, token: "Bearer " + token}).want(t, 201, "")
	e.do(t, call{method: "DELETE", path: "/servers/primary", token: "Bearer " + token}).want(t, 204, "")
}

func TestPostLogSymlinkOutOfAllowedDir(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "allowed")
	secret := filepath.Join(root, "secret")
	for _, d := range []string{allowed, secret} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(secret, "key"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(allowed, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(secret, "key"), filepath.Join(allowed, "key.log")); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{AllowPaths: []string{allowed + "/**"}})
	for _, p := range []string{
		filepath.Join(allowed, "out", "key"),
		filepath.Join(allowed, "out", "*.log"),
		filepath.Join(allowed, "key.log"),
		filepath.Join(allowed, "..", "secret", "key"),
		"/var/log/syslog", // the default is replaced by AllowPaths
	} {
		r := e.do(t, call{method: "POST", path: "/logs", body: map[string]string{"path": p, "tag": "t"}}).want(t, 403, "path")
		if !strings.Contains(r.problem.Detail, "outside the allowed paths") {
			t.Errorf("%s: detail %q", p, r.problem.Detail)
		}
	}
	e.do(t, call{method: "POST", path: "/logs", body: map[string]string{"path": filepath.Join(allowed, "app", "*.log"), "tag": "t"}}).want(t, 201, "")
	// The configured target's directory is allowed too.
	e.do(t, call{method: "POST", path: "/logs", body: map[string]string{"path": "/var/log/app/other.log", "tag": "t"}}).want(t, 201, "")
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t, Config{})
	e.do(t, call{method: "GET", path: "/nope", noRoute: true}).want(t, 404, "")
	e.do(t, call{method: "PUT", path: "/logs", body: `{}`, noRoute: true}).want(t, 405, "")
}

func TestPanicIsA500(t *testing.T) {
	e := newEnv(t, Config{})
	e.targets.setPanicky(true)
	r := e.do(t, call{method: "GET", path: "/logs"}).want(t, 500, "")
	if strings.Contains(string(r.body), "exploded") {
		t.Fatalf("the panic leaks into the response: %s", r.body)
	}
	e.targets.setPanicky(false)
	e.do(t, call{method: "GET", path: "/logs"}).want(t, 200, "")
}

func TestConcurrentChanges(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, Config{StateDir: dir})
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			body := map[string]string{"path": "/var/log/c" + string(rune('a'+i)) + ".log", "tag": "c"}
			if r := e.do(t, call{method: "POST", path: "/logs", body: body}); r.status != 201 {
				t.Errorf("POST %v: %d %s", body, r.status, r.body)
			}
		}()
	}
	for range 8 {
		<-done
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Logs.Added) != 8 {
		t.Fatalf("%d targets saved, want 8", len(st.Logs.Added))
	}
}
