package admin

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestStats(t *testing.T) {
	e := newEnv(t, Config{StateDir: t.TempDir()})
	e.do(t, call{method: "POST", path: "/servers", body: map[string]any{"id": "extra", "address": "10.0.0.3:24224"}}).want(t, 201, "")
	var snap Snapshot
	e.do(t, call{method: "GET", path: "/stats"}).want(t, 200, "").decode(t, &snap)
	if snap.Receiver.Events != 1000 || snap.Receiver.Errors["frame_too_large"] != 1 || snap.Ring.Chunks != 3 ||
		snap.Sent["app.access"].Chunks != 27 || snap.Output != OutputForward || snap.UptimeSeconds < 59 {
		t.Fatalf("snapshot: %+v", snap)
	}
	if len(snap.Servers) != 2 || len(snap.Files) != 1 {
		t.Fatalf("servers/files: %+v", snap)
	}
	for _, sv := range snap.Servers {
		want := map[string]string{"primary": SourceConfig, "extra": SourceAPI}[sv.ID]
		if sv.Source != want {
			t.Errorf("server %s source %q, want %q", sv.ID, sv.Source, want)
		}
	}
	// The Go method and HTTP agree.
	if got := e.srv.snapshot(); got.Receiver.Events != snap.Receiver.Events || got.Ring != snap.Ring || len(got.Servers) != len(snap.Servers) {
		t.Fatalf("snapshot() %+v differs from /stats %+v", got, snap)
	}
}

func TestHydraShape(t *testing.T) {
	e := newEnv(t, Config{})
	var h map[string]any
	e.do(t, call{method: "GET", path: "/"}).want(t, 200, "").decode(t, &h)
	for _, k := range []string{"receiver", "servers", "files", "sent"} {
		if _, ok := h[k]; !ok {
			t.Fatalf("no %q in %v", k, h)
		}
	}
	var hs hydraStats
	e.do(t, call{method: "GET", path: "/"}).want(t, 200, "").decode(t, &hs)
	if hs.Sent["app.access"] != (hydraSent{Messages: 990, Bytes: 49000, Sents: 27}) {
		t.Errorf("sent: %+v", hs.Sent)
	}
	if f := hs.Files["/var/log/app/*.log"]; f.Tag != "app.access" || f.Position != 8 {
		t.Errorf("files: %+v", hs.Files)
	}
	if len(hs.Servers) != 1 || !hs.Servers[0].Alive || hs.Servers[0].Address != "10.0.0.1:24224" ||
		!strings.HasPrefix(hs.Servers[0].Error, "[2025-01-02 03:04:05 +0000 UTC] connection refused") {
		t.Errorf("servers: %+v", hs.Servers)
	}
	if r := hs.Receiver; r.TotalConnections != 7 || r.CurrentConnections != 2 || r.Messages != 1000 || r.Disposed != 4 ||
		r.Buffered != 3 || r.MaxBufferMessages != 4096 || r.Address != "127.0.0.1:24224" {
		t.Errorf("receiver: %+v", r)
	}
}

func TestSystem(t *testing.T) {
	e := newEnv(t, Config{})
	var s systemStats
	e.do(t, call{method: "GET", path: "/system"}).want(t, 200, "").decode(t, &s)
	if s.GoVersion == "" || s.GoroutineNum == 0 || s.HeapAlloc == 0 || s.CPUNum == 0 {
		t.Fatalf("system: %+v", s)
	}
	e.do(t, call{method: "GET", path: "/system"}).want(t, 200, "")
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.do(t, call{method: "GET", path: "/metrics"}).want(t, 200, "")
	body := string(r.body)
	for _, want := range []string{
		"fwdmux_ready 1",
		"fwdmux_receiver_events_total 1000",
		`fwdmux_receiver_errors_total{reason="frame_too_large"} 1`,
		"fwdmux_ring_chunks 3",
		"fwdmux_ring_blocked_seconds_total 1.5",
		`fwdmux_server_eligible{address="10.0.0.1:24224",server="primary"} 1`,
		`fwdmux_server_breaker_state{address="10.0.0.1:24224",server="primary",state="closed"} 1`,
		`fwdmux_server_breaker_state{address="10.0.0.1:24224",server="primary",state="open"} 0`,
		`fwdmux_server_sent_events_total{address="10.0.0.1:24224",server="primary"} 100`,
		`fwdmux_file_lag_bytes{path="/var/log/app/*.log",tag="app.access",target="app"} 2`,
		`fwdmux_sent_events_total{tag="app.access"} 990`,
		"# HELP fwdmux_ring_dropped_events_total",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "process_") != (processMetricsExpected()) {
		t.Errorf("process collector output unexpected")
	}
	e.srv.SetDraining()
	if body := string(e.do(t, call{method: "GET", path: "/metrics"}).want(t, 200, "").body); !strings.Contains(body, "fwdmux_ready 0") {
		t.Error("fwdmux_ready is not 0 while draining")
	}
}

// processMetricsExpected: the process collector only reports where procfs exists.
func processMetricsExpected() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// TestMetricsDocumented holds the README's metrics table and the collector together.
func TestMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	documented := regexp.MustCompile("`(fwdmux_[a-z_]+)`").FindAllStringSubmatch(doc, -1)
	var names []string
	for _, m := range documented {
		names = append(names, m[1])
	}
	ch := make(chan *prometheus.Desc, len(metricDefs))
	newCollector(nil).Describe(ch)
	close(ch)
	if len(ch) != len(metricDefs) {
		t.Fatalf("Describe sent %d descs for %d metrics", len(ch), len(metricDefs))
	}
	for _, d := range metricDefs {
		if !slices.Contains(names, d.name) {
			t.Errorf("README.md does not document %s", d.name)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(metricDefs, func(d metricDef) bool { return d.name == n }) {
			t.Errorf("README.md documents %s, which does not exist", n)
		}
	}
}

func TestRunAndHealthcheck(t *testing.T) {
	targets, servers := newFakeTargets(), newFakeServers(configServer)
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Targets: targets, Servers: servers,
		Stats: &fakeStats{output: OutputForward, servers: servers, targets: targets}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Fatal("Addr before Listen")
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }() // Run after Listen reuses the listener

	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	if err := Healthcheck(hctx, addr, "tok"); err != nil {
		t.Fatalf("Healthcheck: %v", err)
	}
	s.SetDraining()
	if err := Healthcheck(hctx, addr, ""); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("Healthcheck while draining: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := Healthcheck(hctx, addr, ""); err == nil {
		t.Fatal("Healthcheck succeeds after shutdown")
	}
	if err := Healthcheck(hctx, "nonsense", ""); err == nil {
		t.Fatal("Healthcheck accepts a bad address")
	}
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	deps := Deps{Targets: newFakeTargets(), Servers: newFakeServers(), Stats: &fakeStats{}}
	a, err := New(Config{Listen: "127.0.0.1:0"}, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Listen: a.Addr().String()}, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("Run on a busy address succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Serve(ctx); err != nil { // closes a's listener
		t.Fatal(err)
	}
}

func TestDisabled(t *testing.T) {
	s, err := New(Config{Listen: ListenOff}, Deps{Targets: newFakeTargets(), Servers: newFakeServers(), Stats: &fakeStats{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil || s.Addr() != nil {
		t.Fatalf("Run = %v, Addr = %v", err, s.Addr())
	}
}
