package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fwdmux/fwdmux/admin"
	"github.com/fwdmux/fwdmux/balance"
	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/tail"
)

const listenOff = "off"

type options struct {
	config    string
	listen    string
	admin     string
	adminSet  bool
	servers   []string
	logs      []string
	stateDir  string
	logFormat string
	logLevel  string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

const usageHead = `fwdmux forwards logs from Fluentd-protocol clients and tailed files to
Fluentd / Fluent Bit aggregators, losing nothing it accepted.

Usage:
  fwdmux [flags]                 run (flags override env, env overrides the config file)
  fwdmux check -c FILE           validate a config and print what would run
  fwdmux healthcheck [-admin A]  exit 0 if the running process is ready
  fwdmux version

With no flags: forward listener on 127.0.0.1:24224, admin API on 127.0.0.1:24223,
and, with no upstream, every event printed to stdout as one JSON line.

Environment: FWDMUX_LISTEN, FWDMUX_ADMIN, FWDMUX_SERVERS (comma-separated),
FWDMUX_LOGS (comma-separated TAG=PATH), FWDMUX_STATE_DIR, FWDMUX_ADMIN_TOKEN,
FWDMUX_SHARED_KEY.

Flags:
`

func flagSet(name string, o *options, out io.Writer) (*flag.FlagSet, *multiFlag, *multiFlag) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	servers, logs := new(multiFlag), new(multiFlag)
	fs.StringVar(&o.config, "c", "", "TOML config `file` (fwdmux's schema or a fluent-agent-hydra config.toml)")
	fs.StringVar(&o.listen, "listen", "", "forward listener `addr` (default 127.0.0.1:24224; unix:///path for a socket; off)")
	fs.Func("admin", "admin API `addr` (default 127.0.0.1:24223; \"\" or off disables it)", func(v string) error {
		o.admin, o.adminSet = v, true
		return nil
	})
	fs.Var(servers, "server", "upstream `host:port` or tls://host:port, repeatable; none = print events to stdout")
	fs.Var(logs, "log", "tail target `TAG=PATH`, repeatable; PATH may be a glob")
	fs.StringVar(&o.stateDir, "state-dir", "", "`dir` for positions and runtime changes (default ./fwdmux-state)")
	fs.StringVar(&o.logFormat, "log-format", "", "log `format`: text or json (default text)")
	fs.StringVar(&o.logLevel, "log-level", "", "log `level`: debug, info, warn or error (default info)")
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	return fs, servers, logs
}

func parseFlags(name string, args []string, stderr io.Writer) (options, error) {
	var o options
	fs, servers, logs := flagSet(name, &o, stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return o, err
		}
		return o, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return o, &usageError{fmt.Sprintf("unexpected argument %q (commands: version, check, healthcheck)", fs.Arg(0))}
	}
	o.servers, o.logs = *servers, *logs
	return o, nil
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// app is the running process: every component and who stops it.
type app struct {
	cfg    Config
	log    *slog.Logger
	ring   *proxy.Ring
	ln     *proxy.Listener
	pool   *balance.Pool
	stdout *proxy.Stdout
	tail   *tail.Manager
	api    *admin.Server
	// started turns true once the tail targets made their first scan: /ready waits
	// for it, so lines written after /ready answers 200 are never skipped.
	started atomic.Bool

	// config-sourced items currently applied, for SIGHUP diffs
	mu         sync.Mutex
	cfgLogs    map[string]tail.TargetConfig
	cfgServers map[string]balance.UpstreamConfig
}

func build(cfg Config, log *slog.Logger, stdoutW io.Writer) (*app, error) {
	a := &app{cfg: cfg, log: log, cfgLogs: map[string]tail.TargetConfig{}, cfgServers: map[string]balance.UpstreamConfig{}}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		// Keep forwarding: positions and runtime changes are then not saved, which the
		// components report themselves.
		log.Error("state directory unusable: positions and runtime changes will not be saved", "dir", cfg.StateDir, "err", err)
	}
	a.ring = proxy.NewRing(cfg.Ring)
	if cfg.Listener.Addr != listenOff {
		ln, err := proxy.NewListener(cfg.Listener, a.ring, log)
		if err != nil {
			return nil, fmt.Errorf("listener: %w", err)
		}
		a.ln = ln
	}
	pool, err := balance.NewPool(cfg.Forward, a.ring, log)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	a.pool = pool
	for _, s := range cfg.Servers {
		if _, err := pool.Add(s); err != nil {
			return nil, fmt.Errorf("server %s: %w", s.Address, err)
		}
		a.cfgServers[s.ID] = s
	}
	tm, err := tail.NewManager(cfg.Tail, a.ring, log)
	if err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	a.tail = tm
	var paths []string
	for _, l := range cfg.Logs {
		if _, err := tm.Add(l); err != nil {
			return nil, fmt.Errorf("log %s: %w", l.Path, err)
		}
		a.cfgLogs[l.ID] = l
		paths = append(paths, l.Path)
	}
	stats := &statsAdapter{start: time.Now(), ln: a.ln, ring: a.ring, pool: pool, tail: tm}
	srv := serversAdapter{p: pool}
	ready := readiness{pool: pool, started: &a.started}
	if cfg.Admin.Enabled() {
		api, err := admin.New(cfg.Admin, admin.Deps{Targets: targetsAdapter{tm}, Servers: &srv, Stats: stats, Readiness: &ready, ConfigPaths: paths}, log)
		if err != nil {
			return nil, err
		}
		a.api = api
		// Runtime changes saved by an earlier run come back before we decide the output.
		if err := api.Restore(); err != nil {
			log.Error("restoring runtime changes failed; continuing with the configuration only", "err", err)
		}
	}
	if len(pool.List()) == 0 {
		a.stdout = proxy.NewStdout(a.ring, stdoutW)
		stats.stdout = a.stdout
		srv.stdout = true
		ready.stdout = true
	}
	return a, nil
}

func run(ctx context.Context, o options, stdoutW, stderrW io.Writer) error {
	cfg, err := buildConfig(o, os.LookupEnv)
	if err != nil {
		return err
	}
	log := newLogger(stderrW, cfg.LogFormat, cfg.LogLevel)
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	a, err := build(cfg, log, stdoutW)
	if err != nil {
		return err
	}
	return a.run(ctx, sigs, o.config)
}

func (a *app) run(ctx context.Context, sigs chan os.Signal, configFile string) error {
	log := a.log
	intakeCtx, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	outputCtx, stopOutput := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOutput()
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAPI()

	errc := make(chan error, 4)
	var intake, apiWG sync.WaitGroup
	// The forward listener first: Docker's fluentd log driver refuses to start
	// containers while the address is down.
	if a.ln != nil {
		intake.Go(func() {
			if err := a.ln.Run(intakeCtx); err != nil {
				errc <- err
			}
		})
		select {
		case <-a.ln.Ready():
		case err := <-errc:
			stopIntake()
			intake.Wait()
			return err
		}
	}
	if a.api != nil {
		if err := a.api.Listen(); err != nil {
			stopIntake()
			intake.Wait()
			return err
		}
		apiWG.Go(func() {
			if err := a.api.Serve(apiCtx); err != nil {
				errc <- err
			}
		})
	}
	tailCtx, stopTail := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTail()
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		if err := a.tail.Run(tailCtx); err != nil {
			errc <- err
		}
	}()
	// Tail targets present at start are positioned at their end (without
	// read_from_head): announce readiness only once that position is taken.
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := a.tail.WaitStarted(wctx); err != nil {
		log.Warn("tail targets still scanning after 30s; reporting ready anyway", "err", err)
	}
	wcancel()
	a.started.Store(true)
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		var err error
		if a.stdout != nil {
			err = a.stdout.Run(outputCtx)
		} else {
			err = a.pool.Run(outputCtx)
		}
		if err != nil {
			errc <- err
		}
	}()
	a.logStartup()

	var runErr error
wait:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				a.reload(configFile)
				continue
			}
			log.Info("shutting down: intake stopped, draining to upstreams", "signal", s.String(), "drain_timeout", a.cfg.DrainTimeout.String())
			break wait
		case runErr = <-errc:
			log.Error("component failed, shutting down", "err", runErr)
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if a.api != nil {
		a.api.SetDraining()
	}
	// Intake first: the listener stops reading and hands on its partial chunks; the
	// tailers stop and save their positions. Acks that arrive during the drain still
	// advance positions in memory; they are saved once more at the end.
	stopIntake()
	intake.Wait()
	stopTail()
	<-tailDone
	a.ring.CloseIntake()

	t := time.NewTimer(a.cfg.DrainTimeout.D())
	defer t.Stop()
	select {
	case <-outDone:
	case <-t.C:
		log.Warn("drain deadline passed")
	case s := <-sigs:
		log.Warn("second signal: exiting without draining", "signal", s.String())
	}
	stopOutput()
	<-outDone
	if err := a.tail.SavePositions(); err != nil {
		log.Error("saving positions after the drain failed", "err", err)
	}
	stopAPI()
	apiWG.Wait()
	if c, e := a.ring.Pending(); c > 0 || !a.ring.Drained() {
		st := a.ring.Stats()
		log.Warn("undelivered at exit: forward clients that asked for acks will resend, tailed files resume from their positions",
			"queued_chunks", c, "queued_events", e, "unfinished_chunks", st.Chunks)
	} else {
		log.Info("drained: everything accepted was delivered")
	}
	return runErr
}

func (a *app) logStartup() {
	listen := listenOff
	if a.ln != nil {
		listen = a.ln.Addr().String()
	}
	apiAddr := listenOff
	if a.api != nil {
		apiAddr = a.api.Addr().String()
	}
	var ups []string
	for _, u := range a.pool.List() {
		ups = append(ups, u.Address)
	}
	var logs []string
	for _, t := range a.tail.Targets() {
		logs = append(logs, t.Tag+"="+t.Path)
	}
	output := "forward"
	if a.stdout != nil {
		output = "stdout"
	}
	a.log.Info("fwdmux started", "version", version, "listen", listen, "admin", apiAddr,
		"output", output, "upstreams", strings.Join(ups, ","), "logs", strings.Join(logs, ","),
		"state_dir", a.cfg.StateDir)
}

// reload re-reads the config file (SIGHUP) and applies the difference in targets and
// upstreams, as the admin API would. A bad file changes nothing.
func (a *app) reload(configFile string) {
	if configFile == "" {
		a.log.Warn("SIGHUP ignored: fwdmux was started without -c")
		return
	}
	// Flags and environment still override the file, as at start.
	cfg, err := buildConfig(a.cfgOptions(configFile), os.LookupEnv)
	if err != nil {
		a.log.Error("SIGHUP: config rejected, keeping the running configuration", "err", err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	newLogs := map[string]tail.TargetConfig{}
	for _, l := range cfg.Logs {
		newLogs[l.ID] = l
	}
	for id, old := range a.cfgLogs {
		if n, ok := newLogs[id]; !ok || !reflect.DeepEqual(n, old) {
			if err := a.tail.Remove(id); err != nil && !errors.Is(err, tail.ErrNotFound) {
				errs = append(errs, err)
			}
			delete(a.cfgLogs, id)
		}
	}
	for id, l := range newLogs {
		if _, ok := a.cfgLogs[id]; ok {
			continue
		}
		if _, err := a.tail.Add(l); err != nil {
			errs = append(errs, fmt.Errorf("log %s: %w", id, err))
			continue
		}
		a.cfgLogs[id] = l
	}
	if a.stdout == nil {
		newSrv := map[string]balance.UpstreamConfig{}
		for _, s := range cfg.Servers {
			newSrv[s.ID] = s
		}
		for id, old := range a.cfgServers {
			if n, ok := newSrv[id]; !ok || !reflect.DeepEqual(n, old) {
				if err := a.pool.Remove(id); err != nil && !errors.Is(err, balance.ErrNotFound) {
					errs = append(errs, err)
				}
				delete(a.cfgServers, id)
			}
		}
		for id, s := range newSrv {
			if _, ok := a.cfgServers[id]; ok {
				continue
			}
			if _, err := a.pool.Add(s); err != nil {
				errs = append(errs, fmt.Errorf("server %s: %w", id, err))
				continue
			}
			a.cfgServers[id] = s
		}
	} else if len(cfg.Servers) > 0 {
		errs = append(errs, errors.New("servers: fwdmux started in stdout mode; adding upstreams needs a restart"))
	}
	if len(errs) > 0 {
		a.log.Error("SIGHUP: configuration partly applied", "err", errors.Join(errs...))
		return
	}
	a.log.Info("SIGHUP: configuration reloaded", "logs", len(a.cfgLogs), "servers", len(a.cfgServers))
}

// cfgOptions are the options the process started with, with the file to re-read.
func (a *app) cfgOptions(file string) options {
	o := startOptions
	o.config = file
	return o
}

// startOptions keeps the command line for SIGHUP reloads.
var startOptions options
