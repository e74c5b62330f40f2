// Command fwdmux forwards logs from Fluentd-protocol clients and tailed files to
// Fluentd / Fluent Bit aggregators. See README.md for the quick start.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/fwdmux/fwdmux/admin"
)

var version = "dev"

func main() {
	os.Exit(realMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var err error
	if len(args) > 0 {
		switch args[0] {
		case "version", "-version", "--version":
			fmt.Fprintln(stdout, "fwdmux", version)
			return 0
		case "check":
			err = cmdCheck(args[1:], stdout, stderr)
			return exitCode(err, stderr)
		case "healthcheck":
			err = cmdHealthcheck(ctx, args[1:], stderr)
			return exitCode(err, stderr)
		}
	}
	o, err := parseFlags("fwdmux", args, stderr)
	if err == flag.ErrHelp {
		return 0
	}
	if err == nil {
		startOptions = o
		stop := startProfile(stderr)
		err = run(ctx, o, stdout, stderr)
		stop()
	}
	return exitCode(err, stderr)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "fwdmux:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// cmdCheck validates a config and prints the effective configuration as JSON (secrets
// masked). Exit 1 with the key, line and expectation when it is bad.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags("fwdmux check", args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if o.config == "" {
		return &usageError{"check needs -c FILE"}
	}
	cfg, err := buildConfig(o, os.LookupEnv)
	if err != nil {
		return err
	}
	for _, w := range cfg.warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	masked := cfg.masked()
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(masked); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "config OK:", o.config)
	return nil
}

// masked returns a copy with secrets replaced, for printing.
func (c Config) masked() Config {
	m := c
	mask := func(s *string) {
		if *s != "" {
			*s = "***"
		}
	}
	mask(&m.Listener.SharedKey)
	if len(m.Listener.Users) > 0 {
		users := map[string]string{}
		for u := range m.Listener.Users {
			users[u] = "***"
		}
		m.Listener.Users = users
	}
	m.Servers = append(m.Servers[:0:0], c.Servers...)
	for i := range m.Servers {
		mask(&m.Servers[i].SharedKey)
		mask(&m.Servers[i].Password)
	}
	mask(&m.Admin.Token)
	return m
}

// cmdHealthcheck asks the running process's /ready; for images without shell or curl.
func cmdHealthcheck(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("fwdmux healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin", "", "admin API `addr` of the running process (default $FWDMUX_ADMIN or 127.0.0.1:24223)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return &usageError{err.Error()}
	}
	a := *addr
	if a == "" {
		a = os.Getenv("FWDMUX_ADMIN")
	}
	if a == "" {
		a = admin.DefaultListen
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	return admin.Healthcheck(ctx, a, os.Getenv("FWDMUX_ADMIN_TOKEN"))
}

// startProfile writes a CPU profile to $FWDMUX_CPUPROFILE for the life of the process
// (and a heap profile beside it at exit), for `go tool pprof`. Off when unset.
func startProfile(stderr io.Writer) (stop func()) {
	path := os.Getenv("FWDMUX_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(stderr, "fwdmux: FWDMUX_CPUPROFILE:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(stderr, "fwdmux: FWDMUX_CPUPROFILE:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if h, err := os.Create(path + ".heap"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(h, 0)
			h.Close()
		}
	}
}
