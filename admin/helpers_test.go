package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"go.uber.org/goleak"

	"github.com/fwdmux/fwdmux/proxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// contract is openapi.yaml at the repo root, loaded, validated and routed once.
var contract = sync.OnceValues(func() (routers.Router, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../openapi.yaml")
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not valid: %w", err)
	}
	return legacy.NewRouter(doc)
})

// --- fakes ------------------------------------------------------------------------

type fakeTargets struct {
	mu      sync.Mutex
	items   map[string]LogStatus
	added   []LogSpec // every spec Add was called with
	addErr  error     // Add fails with it when set
	panicky bool      // List panics
}

func newFakeTargets(config ...LogSpec) *fakeTargets {
	f := &fakeTargets{items: map[string]LogStatus{}}
	for _, spec := range config {
		f.items[spec.ID] = LogStatus{LogSpec: spec, Files: []FileStatus{{Path: spec.Path, TargetID: spec.ID, Tag: spec.Tag, Size: 10, ReadOffset: 10, CommittedOffset: 8, LagBytes: 2}}}
	}
	return f
}

func (f *fakeTargets) setPanicky(v bool) {
	f.mu.Lock()
	f.panicky = v
	f.mu.Unlock()
}

func (f *fakeTargets) List() []LogStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicky {
		panic("fake List exploded")
	}
	return slices.Collect(maps.Values(f.items))
}

func (f *fakeTargets) Get(id string) (LogStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.items[id]
	return l, ok
}

func (f *fakeTargets) Add(spec LogSpec) (LogStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, spec)
	if f.addErr != nil {
		return LogStatus{}, f.addErr
	}
	if _, ok := f.items[spec.ID]; ok {
		return LogStatus{}, fmt.Errorf("target %s: %w", spec.ID, ErrDuplicate)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	l := LogStatus{LogSpec: spec, Files: []FileStatus{{Path: spec.Path, Inode: 42, LastRead: &now}}}
	f.items[spec.ID] = l
	return l, nil
}

func (f *fakeTargets) Remove(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.items[id]; !ok {
		return fmt.Errorf("target %s: %w", id, ErrNotFound)
	}
	delete(f.items, id)
	return nil
}

type fakeServers struct {
	mu    sync.Mutex
	items map[string]ServerStatus
	specs map[string]ServerSpec // what Add received
}

func newFakeServers(config ...ServerSpec) *fakeServers {
	f := &fakeServers{items: map[string]ServerStatus{}, specs: map[string]ServerSpec{}}
	for _, spec := range config {
		st := StatusFromSpec(spec)
		st.Eligible = true
		f.items[spec.ID] = st
	}
	return f
}

func (f *fakeServers) List() []ServerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Values(f.items))
}

func (f *fakeServers) Get(id string) (ServerStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.items[id]
	return s, ok
}

func (f *fakeServers) Add(spec ServerSpec) (ServerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.items[spec.ID]; ok {
		return ServerStatus{}, fmt.Errorf("server %s: %w", spec.ID, ErrDuplicate)
	}
	st := StatusFromSpec(spec)
	st.Eligible = true
	f.items[spec.ID] = st
	f.specs[spec.ID] = spec
	return st, nil
}

func (f *fakeServers) Remove(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.items[id]; !ok {
		return fmt.Errorf("server %s: %w", id, ErrNotFound)
	}
	delete(f.items, id)
	return nil
}

// fakeStats reports the fake servers and targets plus fixed counters.
type fakeStats struct {
	mu      sync.Mutex
	output  string
	servers *fakeServers
	targets *fakeTargets
}

func (f *fakeStats) setOutput(o string) {
	f.mu.Lock()
	f.output = o
	f.mu.Unlock()
}

func (f *fakeStats) Snapshot() Snapshot {
	f.mu.Lock()
	out := f.output
	f.mu.Unlock()
	var files []FileStatus
	for _, l := range f.targets.List() {
		files = append(files, l.Files...)
	}
	errAt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	servers := f.servers.List()
	for i := range servers {
		servers[i].SentEvents = 100
		servers[i].LastError = "connection refused"
		servers[i].LastErrorTime = &errAt
	}
	return Snapshot{
		Receiver: ReceiverStats{Address: "127.0.0.1:24224", Connections: 7, ActiveConnections: 2, Events: 1000, Bytes: 50000,
			Frames: 20, Acks: 5, Errors: map[string]int64{"frame_too_large": 1}},
		Ring: proxy.RingStats{Chunks: 3, Bytes: 3000, Queued: 1, CapacityBytes: 64 << 20, CapacityChunks: 4096,
			Overflow: "block", BlockedSeconds: 1.5, PutChunks: 30, PutEvents: 1000, DoneChunks: 27, DroppedEvents: 4},
		Servers:   servers,
		Files:     files,
		Sent:      map[string]SentStats{"app.access": {Events: 990, Bytes: 49000, Chunks: 27}},
		StartTime: time.Now().Add(-time.Minute),
		Output:    out,
	}
}

type fakeReadiness struct {
	ok     bool
	reason string
}

func (f fakeReadiness) Ready() (bool, string) { return f.ok, f.reason }

// --- environment ---------------------------------------------------------------------

var (
	configLog    = LogSpec{ID: "app", Path: "/var/log/app/*.log", Tag: "app.access"}
	configServer = ServerSpec{ID: "primary", Address: "10.0.0.1:24224", Weight: 10}
)

type env struct {
	srv     *Server
	base    string
	client  *http.Client
	targets *fakeTargets
	servers *fakeServers
	stats   *fakeStats
	restore error // what Restore returned
}

// newEnv builds a Server with fakes holding one config target and one config upstream,
// restores its state, and serves it on 127.0.0.1:0 until the test ends.
func newEnv(t *testing.T, cfg Config, mods ...func(*Deps)) *env {
	t.Helper()
	e := &env{targets: newFakeTargets(configLog), servers: newFakeServers(configServer)}
	e.stats = &fakeStats{output: OutputForward, servers: e.servers, targets: e.targets}
	deps := Deps{Targets: e.targets, Servers: e.servers, Stats: e.stats, ConfigPaths: []string{configLog.Path}}
	for _, m := range mods {
		m(&deps)
	}
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, deps, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = s
	e.restore = s.Restore()
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	e.base = "http://" + s.Addr().String()
	e.client = &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// call is one request in a handler test.
type call struct {
	method, path string
	body         any    // string or []byte sent as is, anything else JSON-encoded
	chunked      bool   // send the body without Content-Length
	contentType  string // default application/json when there is a body
	token        string
	// invalid marks a request built to break the contract: the helper then checks
	// that the contract rejects it too.
	invalid bool
	// noRoute marks a request to a path or method the contract does not have.
	noRoute bool
}

type result struct {
	status  int
	header  http.Header
	body    []byte
	problem Problem
}

// do sends c to the server, validating the request and the response against
// openapi.yaml with openapi3filter; any mismatch fails the test. Error responses must
// be problem+json whose status matches.
func (e *env) do(t *testing.T, c call) result {
	t.Helper()
	router, err := contract()
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	switch b := c.body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	newReq := func(send bool) *http.Request {
		var body io.Reader
		if raw != nil {
			body = bytes.NewReader(raw)
			if send && c.chunked {
				body = io.MultiReader(body) // hides the length
			}
		}
		req, err := http.NewRequest(c.method, e.base+c.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			ct := c.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
		}
		if c.token != "" {
			req.Header.Set("Authorization", c.token)
		}
		return req
	}

	var input *openapi3filter.RequestValidationInput
	vreq := newReq(false)
	route, params, rerr := router.FindRoute(vreq)
	switch {
	case rerr != nil && !c.noRoute:
		t.Fatalf("%s %s: not in openapi.yaml: %v", c.method, c.path, rerr)
	case rerr == nil && c.noRoute:
		t.Fatalf("%s %s: marked noRoute but openapi.yaml has it", c.method, c.path)
	case rerr == nil:
		input = &openapi3filter.RequestValidationInput{
			Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}
		verr := openapi3filter.ValidateRequest(context.Background(), input)
		if c.invalid && verr == nil {
			t.Errorf("%s %s: request meant to break the contract passes openapi.yaml", c.method, c.path)
		}
		if !c.invalid && verr != nil {
			t.Errorf("%s %s: request does not match openapi.yaml: %v", c.method, c.path, verr)
		}
	}

	resp, err := e.client.Do(newReq(true))
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := result{status: resp.StatusCode, header: resp.Header, body: body}

	if input != nil {
		rv := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: input,
			Status:                 resp.StatusCode,
			Header:                 resp.Header,
			Options:                &openapi3filter.Options{IncludeResponseStatus: true},
		}
		rv.SetBodyBytes(body)
		if err := openapi3filter.ValidateResponse(context.Background(), rv); err != nil {
			t.Errorf("%s %s -> %d: response does not match openapi.yaml: %v\nbody: %s", c.method, c.path, resp.StatusCode, err, body)
		}
	}
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != ProblemContentType {
			t.Errorf("%s %s -> %d: Content-Type %q, want %q", c.method, c.path, resp.StatusCode, ct, ProblemContentType)
		}
		if err := json.Unmarshal(body, &r.problem); err != nil {
			t.Errorf("%s %s -> %d: problem body: %v: %s", c.method, c.path, resp.StatusCode, err, body)
		}
		if r.problem.Status != resp.StatusCode {
			t.Errorf("problem status %d, response status %d", r.problem.Status, resp.StatusCode)
		}
		if !strings.HasPrefix(r.problem.Type, problemTypePrefix) || r.problem.Title == "" {
			t.Errorf("problem type/title: %+v", r.problem)
		}
	}
	return r
}

// want checks the status (and, for errors, the field).
func (r result) want(t *testing.T, status int, field string) result {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if status >= 400 && r.problem.Field != field {
		t.Fatalf("problem field %q, want %q; problem: %+v", r.problem.Field, field, r.problem)
	}
	return r
}

func (r result) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}
