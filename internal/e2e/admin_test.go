package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// TestAdminRuntimeChanges: POST /logs, POST /servers, DELETE /servers/{first} under
// load, then a restart keeps the API's changes.
func TestAdminRuntimeChanges(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	a, b := newSink(t, tr), newSink(t, tr)
	dir := t.TempDir()
	cfg := baseConfig(nil, fmt.Sprintf("[[servers]]\nid = \"first\"\naddress = %q\n[admin]\nallow_paths = [%q]\n", a.Addr(), dir+"/**"))
	p := start(t, bench.ProcConfig{Config: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()

	logPath := filepath.Join(dir, "api.log")
	var st struct {
		ID     string `json:"id"`
		Source string `json:"source"`
	}
	if _, err := p.Do("POST", "/logs", map[string]any{"path": logPath, "tag": "api", "read_from_head": true}, &st); err != nil {
		t.Fatal(err)
	}
	logID := st.ID
	l := newLoad(t)
	total := dur(4 * time.Second)
	l.file(ctx, bench.FileWriterConfig{Path: logPath, Src: "apifile", Rate: float64(n(20000)) / total.Seconds()}, n(20000))
	l.forward(ctx, p.Listen, "fwd", 4, n(4000), bench.PackedForward, float64(n(4000))/total.Seconds(), "")
	sleepCtx(ctx, time.Second)
	if _, err := p.Do("POST", "/servers", map[string]any{"id": "second", "address": b.Addr()}, nil); err != nil {
		t.Fatal(err)
	}
	sleepCtx(ctx, 500*time.Millisecond)
	if _, err := p.Do("DELETE", "/servers/first", nil, nil); err != nil {
		t.Fatal(err)
	}
	sentBefore := a.Acked.Load()
	sent := l.wait()
	verify(t, "admin_add_log_swap_servers", tr, sent, p)
	if a.Acked.Load() != sentBefore {
		t.Errorf("the deleted upstream still got %d acked frames", a.Acked.Load()-sentBefore)
	}

	if code, err := p.Stop(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: %d %v", code, err)
	}
	q, err := p.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Cleanup)
	var logs struct {
		Logs []struct {
			ID     string `json:"id"`
			Path   string `json:"path"`
			Source string `json:"source"`
		} `json:"logs"`
	}
	if _, err := q.Do("GET", "/logs", nil, &logs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range logs.Logs {
		if x.ID == logID && x.Source == "api" && x.Path == logPath {
			found = true
		}
	}
	if !found {
		t.Errorf("after restart GET /logs lacks the API target %s with source api: %+v", logID, logs.Logs)
	}
	var servers struct {
		Servers []struct {
			ID     string `json:"id"`
			Source string `json:"source"`
		} `json:"servers"`
	}
	if _, err := q.Do("GET", "/servers", nil, &servers); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, s := range servers.Servers {
		ids[s.ID] = s.Source
	}
	if ids["second"] != "api" {
		t.Errorf("after restart the API upstream is missing: %v", ids)
	}
	if _, ok := ids["first"]; ok {
		t.Errorf("after restart the deleted upstream is back: %v", ids)
	}
	// The restarted process still forwards the API target's new lines.
	w, err := bench.NewFileWriter(bench.FileWriterConfig{Path: logPath, Src: "apifile2"})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(ctx, 1000)
	w.Close()
	verify(t, "admin_after_restart", tr, bench.Sent{"apifile2": 1000}, q)
}
