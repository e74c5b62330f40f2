package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
)

type options struct {
	listen    string
	admin     string
	servers   []string
	logs      []string
	stateDir  string
	logFormat string
	logLevel  string
	config    string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fwdmux", flag.ContinueOnError)
	var o options
	var servers, logs multiFlag
	fs.StringVar(&o.config, "c", "", "TOML config `file` (fwdmux's schema or a fluent-agent-hydra config.toml)")
	fs.StringVar(&o.listen, "listen", "", "forward listener `addr` (default 127.0.0.1:24224; unix:///path for a socket)")
	fs.StringVar(&o.admin, "admin", "", "admin API `addr` (default 127.0.0.1:24223; \"off\" disables it)")
	fs.Var(&servers, "server", "upstream `host:port` or tls://host:port, repeatable; none = print events to stdout")
	fs.Var(&logs, "log", "tail target `TAG=PATH`, repeatable; PATH may be a glob")
	fs.StringVar(&o.stateDir, "state-dir", "", "`dir` for positions and runtime changes (default ./fwdmux-state)")
	fs.StringVar(&o.logFormat, "log-format", "", "log format: text or json (default text)")
	fs.StringVar(&o.logLevel, "log-level", "", "log level: debug, info, warn or error (default info)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q (commands: version, check, healthcheck)", fs.Arg(0))}
	}
	o.servers, o.logs = servers, logs
	return run(ctx, o)
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch level {
	case "", "info":
		lv = slog.LevelInfo
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, &usageError{fmt.Sprintf("-log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, &usageError{fmt.Sprintf("-log-format %q: want text or json", format)}
}

func run(ctx context.Context, o options) error {
	log, err := newLogger(o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	ring := proxy.NewRing(proxy.RingConfig{})
	ln, err := proxy.NewListener(proxy.ListenerConfig{Addr: o.listen}, ring, log)
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	intakeCtx, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	outputCtx, stopOutput := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOutput()

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Go(func() {
		if err := ln.Run(intakeCtx); err != nil {
			errc <- err
		}
	})
	out := proxy.NewStdout(ring, os.Stdout)
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		if err := out.Run(outputCtx); err != nil {
			errc <- err
		}
	}()

	var runErr error
	select {
	case s := <-sigs:
		log.Info("shutting down: intake stopped, draining", "signal", s.String())
	case runErr = <-errc:
	case <-ctx.Done():
	}
	stopIntake()
	wg.Wait()
	ring.CloseIntake()
	drain := 30 * time.Second
	t := time.NewTimer(drain)
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
	if c, e := ring.Pending(); c > 0 {
		log.Warn("undelivered at exit", "chunks", c, "events", e)
	}
	return runErr
}
