package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Deps are the components the API reads and changes. Targets, Servers and Stats are
// required; cmd adapts tail.Manager, balance.Pool and the process counters to them.
type Deps struct {
	Targets Targets
	Servers Servers
	Stats   Stats
	// Readiness answers /ready. When nil, the process is ready when the output is
	// stdout or at least one upstream in Stats.Snapshot().Servers is eligible.
	Readiness Readiness
	// ConfigPaths are the paths and globs of the configured tail targets: their
	// directories are added to the allow-list of POST /logs.
	ConfigPaths []string
}

// Server is the admin API. Build it with New, then Restore, then Run (or Listen and
// Serve). All methods are safe for concurrent use.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	allow   allowList
	handler http.Handler
	reg     *prometheus.Registry
	start   time.Time

	draining atomic.Bool
	state    atomic.Pointer[runtimeState] // immutable once stored
	sysLast  atomic.Pointer[sysSample]

	// changeMu serializes runtime changes and Restore (see change). The only mutex.
	changeMu sync.Mutex
	restored bool // guarded by changeMu

	ln atomic.Pointer[net.Listener] // set once by Listen
}

// New validates cfg (after WithDefaults), reads the saved runtime state and builds the
// routes. It starts no goroutine and binds no socket.
func New(cfg Config, deps Deps, log *slog.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	switch {
	case deps.Targets == nil:
		return nil, errors.New("admin: Deps.Targets is nil")
	case deps.Servers == nil:
		return nil, errors.New("admin: Deps.Servers is nil")
	case deps.Stats == nil:
		return nil, errors.New("admin: Deps.Stats is nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &Server{
		cfg:   cfg,
		deps:  deps,
		log:   log.With("component", "admin"),
		allow: newAllowList(cfg.AllowPaths, deps.ConfigPaths),
		start: time.Now(),
	}
	s.state.Store(st)
	s.reg, err = newRegistry(s)
	if err != nil {
		return nil, fmt.Errorf("admin: metrics: %w", err)
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the API's handler, with every middleware applied.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry is the Prometheus registry /metrics serves: fwdmux's collector plus the Go
// and process collectors. Other components may register their own collectors in it.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// SetDraining makes /ready answer 503 from now on: shutdown began. Idempotent.
func (s *Server) SetDraining() { s.draining.Store(true) }

// Listen binds the configured address, so Addr is known before Serve. It does nothing
// when the API is disabled or already listening.
func (s *Server) Listen() error {
	if !s.cfg.Enabled() {
		return nil
	}
	if s.ln.Load() != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.cfg.Listen, err)
	}
	if !s.ln.CompareAndSwap(nil, &ln) {
		_ = ln.Close() // a concurrent Listen won
	}
	return nil
}

// Addr is the bound address, nil before Listen or when the API is disabled.
func (s *Server) Addr() net.Addr {
	if ln := s.ln.Load(); ln != nil {
		return (*ln).Addr()
	}
	return nil
}

// Run listens (unless Listen was called) and serves until ctx ends, then shuts down
// gracefully within ShutdownTimeout. It returns nil when ctx ends and an error only if
// listening or serving fails. With the API disabled it just waits for ctx.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve serves on the listener bound by Listen until ctx ends; see Run. The listener is
// closed when Serve returns. Call it once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.cfg.Enabled() {
		<-ctx.Done()
		return nil
	}
	lp := s.ln.Load()
	if lp == nil {
		return errors.New("admin: Serve called before Listen")
	}
	ln := *lp
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout.D(),
		ReadTimeout:       s.cfg.ReadTimeout.D(),
		WriteTimeout:      s.cfg.WriteTimeout.D(),
		IdleTimeout:       s.cfg.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	shutdownDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdownDone)
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout.D())
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("graceful shutdown timed out; closing open requests", "error", err)
			_ = srv.Close()
		}
	})
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "auth", s.cfg.Token != "")
	err := srv.Serve(ln)
	_ = ln.Close() // Serve may return before Shutdown tracked ln
	if stop() {
		// ctx has not ended: serving failed on its own.
		_ = srv.Close()
		return fmt.Errorf("admin: serve %s: %w", ln.Addr(), err)
	}
	<-shutdownDone
	return nil
}

// ready answers /ready without the draining check.
func (s *Server) ready() (bool, string) {
	if s.deps.Readiness != nil {
		return s.deps.Readiness.Ready()
	}
	snap := s.deps.Stats.Snapshot()
	if snap.Output == OutputStdout {
		return true, ""
	}
	for _, sv := range snap.Servers {
		if sv.Eligible {
			return true, ""
		}
	}
	if len(snap.Servers) == 0 {
		return false, "no upstream is configured"
	}
	return false, fmt.Sprintf("none of the %d upstreams is eligible", len(snap.Servers))
}
