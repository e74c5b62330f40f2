package admin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e1 := newEnv(t, Config{StateDir: dir})
	e1.do(t, call{method: "POST", path: "/logs", body: map[string]any{"id": "extra", "path": "/var/log/extra/*.log", "tag": "extra", "format": "json"}}).want(t, 201, "")
	e1.do(t, call{method: "POST", path: "/servers", body: map[string]any{"id": "backup", "address": "10.0.0.9:24224", "shared_key": "k", "standby": true}}).want(t, 201, "")
	e1.do(t, call{method: "DELETE", path: "/logs/" + configLog.ID}).want(t, 204, "")
	e1.do(t, call{method: "DELETE", path: "/servers/" + configServer.ID}).want(t, 204, "")
	// Added then deleted through the API: forgotten, not a tombstone.
	e1.do(t, call{method: "POST", path: "/logs", body: map[string]any{"id": "brief", "path": "/var/log/brief.log", "tag": "b"}}).want(t, 201, "")
	e1.do(t, call{method: "DELETE", path: "/logs/brief"}).want(t, 204, "")

	fi, err := os.Stat(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("runtime.json mode %v, want 0600 (it holds shared keys)", fi.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(leftovers) > 0 {
		t.Fatalf("temp files left: %v", leftovers)
	}

	// A restart: new components built from the config, a new Server on the same dir.
	e2 := newEnv(t, Config{StateDir: dir})
	if e2.restore != nil {
		t.Fatalf("Restore: %v", e2.restore)
	}
	var logs logList
	e2.do(t, call{method: "GET", path: "/logs"}).want(t, 200, "").decode(t, &logs)
	if len(logs.Logs) != 1 || logs.Logs[0].ID != "extra" || logs.Logs[0].Source != SourceAPI || logs.Logs[0].Format != "json" {
		t.Fatalf("logs after restore: %+v", logs)
	}
	var servers serverList
	e2.do(t, call{method: "GET", path: "/servers"}).want(t, 200, "").decode(t, &servers)
	if len(servers.Servers) != 1 || servers.Servers[0].ID != "backup" || servers.Servers[0].Source != SourceAPI ||
		!servers.Servers[0].SharedKeySet || !servers.Servers[0].Standby {
		t.Fatalf("servers after restore: %+v", servers)
	}
	e2.servers.mu.Lock()
	key := e2.servers.specs["backup"].SharedKey
	e2.servers.mu.Unlock()
	if key != "k" {
		t.Fatalf("restored upstream lost its shared key: %q", key)
	}
	// Restore runs once.
	if err := e2.srv.Restore(); err != nil {
		t.Fatal(err)
	}
	if n := len(e2.targets.List()); n != 1 {
		t.Fatalf("%d targets after a second Restore", n)
	}

	// Re-adding a deleted config item through the API makes it an api item.
	e2.do(t, call{method: "POST", path: "/servers", body: map[string]any{"id": "primary", "address": "10.0.0.1:24224"}}).want(t, 201, "")
	e3 := newEnv(t, Config{StateDir: dir})
	var got ServerStatus
	e3.do(t, call{method: "GET", path: "/servers/primary"}).want(t, 200, "").decode(t, &got)
	if got.Source != SourceAPI || got.Weight != 1 {
		t.Fatalf("re-added config upstream: %+v", got)
	}
}

func TestRestoreForgetsWhatNoLongerApplies(t *testing.T) {
	dir := t.TempDir()
	st := &runtimeState{Version: stateVersion,
		Logs: logChanges{
			Added: []LogSpec{
				{ID: "ok", Path: "/var/log/ok.log", Tag: "ok"},
				{ID: "secret", Path: "/etc/shadow", Tag: "x"},   // the allow-list refuses it now
				{ID: "app", Path: "/var/log/dup.log", Tag: "x"}, // the config has this id now
			},
			Removed: []string{"gone"}, // the config no longer has it
		},
	}
	if err := saveState(dir, st); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{StateDir: dir})
	if e.restore == nil || !strings.Contains(e.restore.Error(), "secret") || !strings.Contains(e.restore.Error(), "restore tail target app") {
		t.Fatalf("Restore error: %v", e.restore)
	}
	if _, ok := e.targets.Get("ok"); !ok {
		t.Fatal("the good target was not restored")
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Logs.Added) != 1 || got.Logs.Added[0].ID != "ok" || len(got.Logs.Removed) != 0 {
		t.Fatalf("state after Restore: %+v", got)
	}
}

func TestSaveFailureIsA500AndNoChange(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	e := newEnv(t, Config{StateDir: dir})
	// The state dir turns out to be a file: every save fails.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, call{method: "POST", path: "/logs", body: map[string]string{"path": "/var/log/a.log", "tag": "a"}}).want(t, 500, "")
	if r.problem.Type != problemTypePrefix+"state-not-saved" {
		t.Fatalf("problem: %+v", r.problem)
	}
	if n := len(e.targets.List()); n != 1 {
		t.Fatalf("%d targets: the change was made although it was not saved", n)
	}
	e.do(t, call{method: "DELETE", path: "/servers/primary"}).want(t, 500, "")
	if _, ok := e.servers.Get("primary"); !ok {
		t.Fatal("the upstream was removed although the removal was not saved")
	}
}

func TestFailedApplyRevertsState(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, Config{StateDir: dir})
	e.do(t, call{method: "POST", path: "/logs", body: map[string]string{"id": "keep", "path": "/var/log/k.log", "tag": "k"}}).want(t, 201, "")
	e.targets.mu.Lock()
	e.targets.addErr = os.ErrPermission
	e.targets.mu.Unlock()
	e.do(t, call{method: "POST", path: "/logs", body: map[string]string{"id": "fail", "path": "/var/log/f.log", "tag": "f"}}).want(t, 500, "")
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var st runtimeState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Logs.Added) != 1 || st.Logs.Added[0].ID != "keep" {
		t.Fatalf("state after a failed add: %s", b)
	}
}

func TestCorruptStateRefusedAtNew(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{StateDir: dir}, Deps{Targets: newFakeTargets(), Servers: newFakeServers(), Stats: &fakeStats{}}, nil)
	if err == nil || !strings.Contains(err.Error(), "fix or remove it") {
		t.Fatalf("New: %v", err)
	}
}
