// Command fwdbench runs the real fwdmux through end-to-end scenarios and prints one row
// per scenario: events, seconds, events/s, fwdmux CPU per event (or CPU % of one core for
// fixed-rate scenarios), peak RSS, lost and duplicated events. It exits 1 if any scenario
// lost an event, never because of a time figure.
//
//	go run ./cmd/fwdbench -quick
//	go run ./cmd/fwdbench -json bench.json -gomaxprocs 1
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// Row is one scenario's result.
type Row struct {
	Scenario       string  `json:"scenario"`
	Events         int64   `json:"events"`
	Seconds        float64 `json:"seconds"`
	EventsPerSec   float64 `json:"events_per_sec"`
	MBPerSec       float64 `json:"mb_per_sec,omitempty"`
	CPUMicrosPerEv float64 `json:"cpu_us_per_event,omitempty"`
	CPUPercent     float64 `json:"cpu_percent"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	Lost           int64   `json:"lost"`
	Dup            int64   `json:"dup"`
	FixedRate      bool    `json:"fixed_rate"`
	Err            string  `json:"error,omitempty"`
}

type runner struct {
	quick        bool
	gomaxprocs   int
	readInterval string
	dir          string
	verbose      bool
}

func main() {
	var (
		quick   = flag.Bool("quick", false, "a few seconds per scenario (whole run under a minute)")
		jsonOut = flag.String("json", "", "also write the results as JSON to this file")
		procs   = flag.Int("gomaxprocs", 1, "GOMAXPROCS for fwdmux (0: leave unset)")
		only    = flag.String("run", "", "only scenarios matching this regexp")
		verbose = flag.Bool("v", false, "print fwdmux's log of failed scenarios")
		readIv  = flag.String("read-interval", "50ms", "fwdmux's [tail] read_interval (its default is 50ms)")
	)
	flag.Parse()
	dir, err := os.MkdirTemp("", "fwdbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer os.RemoveAll(dir)
	defer bench.CleanupBinary()
	if _, err := bench.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	r := &runner{quick: *quick, gomaxprocs: *procs, dir: dir, verbose: *verbose, readInterval: *readIv}
	var re *regexp.Regexp
	if *only != "" {
		re = regexp.MustCompile(*only)
	}
	type scen struct {
		name string
		fn   func(name string) Row
	}
	scens := []scen{
		{"tail_none_max", func(n string) Row { return r.tailMax(n, bench.FormatNone) }},
		{"tail_none_100k_per_s", func(n string) Row { return r.tailRate(n, bench.FormatNone) }},
		{"tail_ltsv_100k_per_s", func(n string) Row { return r.tailRate(n, bench.FormatLTSV) }},
		{"tail_json_100k_per_s", func(n string) Row { return r.tailRate(n, bench.FormatJSON) }},
		{"tail_apache_100k_per_s", func(n string) Row { return r.tailRate(n, bench.FormatApache) }},
		{"tail_ltsv_max", func(n string) Row { return r.tailMax(n, bench.FormatLTSV) }},
		{"tail_json_max", func(n string) Row { return r.tailMax(n, bench.FormatJSON) }},
		{"forward_packed_1000_ack", r.forwardPacked},
		{"message_100_fluent_logger", func(n string) Row { return r.fluentLoggers(n, false) }},
		{"message_100_fluent_logger_ack", func(n string) Row { return r.fluentLoggers(n, true) }},
		{"tail_1000_files_100_per_s", r.manyFiles},
		{"rss_idle", r.idle},
	}
	var rows []Row
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tevents\tseconds\tevents/s\tMB/s\tCPU-µs/event\tCPU %\tpeak RSS MB\tlost\tdup\t")
	lost := false
	for _, s := range scens {
		if re != nil && !re.MatchString(s.name) {
			continue
		}
		row := s.fn(s.name)
		rows = append(rows, row)
		if row.Lost > 0 || row.Err != "" {
			lost = true
		}
		cpu := "-"
		if row.CPUMicrosPerEv > 0 && !row.FixedRate {
			cpu = fmt.Sprintf("%.2f", row.CPUMicrosPerEv)
		}
		mbs := "-"
		if row.MBPerSec > 0 {
			mbs = fmt.Sprintf("%.1f", row.MBPerSec)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%s\t%s\t%.1f\t%.1f\t%d\t%d\t\n", row.Scenario, row.Events, row.Seconds,
			row.EventsPerSec, mbs, cpu, row.CPUPercent, row.PeakRSSMB, row.Lost, row.Dup)
		fmt.Fprintf(os.Stderr, "done: %s\n", row.Scenario)
		if row.Err != "" {
			fmt.Fprintf(os.Stderr, "%s: %s\n", row.Scenario, row.Err)
		}
	}
	tw.Flush()
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rows, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if lost {
		fmt.Fprintln(os.Stderr, "FAIL: a scenario lost events or failed")
		os.Exit(1)
	}
}

func (r *runner) size(quick, full int64) int64 {
	if r.quick {
		return quick
	}
	return full
}

func (r *runner) span() time.Duration {
	if r.quick {
		return 3 * time.Second
	}
	return 15 * time.Second
}

// env is one scenario's fwdmux and sink.
type env struct {
	sink *bench.Sink
	proc *bench.Proc
	dir  string
}

func (r *runner) start(name, extra string) (*env, error) {
	dir := filepath.Join(r.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sink, err := bench.NewSink()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("[[servers]]\naddress = %q\n[tail]\npoll_interval = \"250ms\"\nread_interval = %q\n%s", sink.Addr(), r.readInterval, extra)
	pc := bench.ProcConfig{Config: cfg, GOMAXPROCS: r.gomaxprocs, StateDir: filepath.Join(dir, "state")}
	if os.Getenv("FWDBENCH_LOG") != "" {
		pc.Stderr = os.Stderr // fwdmux's log as it runs (with GODEBUG=gctrace=1: the GC)
	}
	p, err := bench.StartProc(pc)
	if err != nil {
		sink.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		p.Cleanup()
		sink.Close()
		return nil, err
	}
	return &env{sink: sink, proc: p, dir: dir}, nil
}

func (e *env) close() {
	e.proc.Stop(30 * time.Second)
	e.proc.Cleanup()
	e.sink.Close()
}

func logCfg(tag, path, format string) string {
	return fmt.Sprintf("[[logs]]\ntag = %q\npath = %q\nformat = %q\nread_from_head = true\n", tag, path, format)
}

// finish waits for every sent event and fills the row.
func (r *runner) finish(e *env, row *Row, sent bench.Sent, t0 time.Time, cpu0 time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := e.sink.Tracker.Wait(ctx, sent); err != nil {
		row.Err = fmt.Sprintf("not everything arrived: %v", err)
		if r.verbose {
			fmt.Fprintln(os.Stderr, e.proc.Log())
		}
	}
	el := time.Since(t0)
	cpu := e.proc.CPU() - cpu0
	rep := e.sink.Tracker.Report(sent)
	row.Events = rep.Sent
	row.Seconds = el.Seconds()
	row.EventsPerSec = float64(rep.Unique) / el.Seconds()
	if rep.Unique > 0 {
		row.CPUMicrosPerEv = float64(cpu.Microseconds()) / float64(rep.Unique)
	}
	row.CPUPercent = 100 * cpu.Seconds() / el.Seconds()
	row.PeakRSSMB = float64(e.proc.PeakRSS()) / 1024
	row.Lost = rep.Missing
	row.Dup = rep.Dup
}

func (r *runner) tailMax(name, format string) Row {
	row := Row{Scenario: name}
	n := r.size(500_000, 5_000_000)
	path := filepath.Join(r.dir, name+".log")
	w, err := bench.NewFileWriter(bench.FileWriterConfig{Path: path, Src: "f", Format: format})
	if err == nil {
		err = w.Write(context.Background(), n)
		w.Close()
	}
	if err != nil {
		row.Err = err.Error()
		return row
	}
	// fwdmux reads the file from its start: time it, and count its CPU, from exec.
	t0 := time.Now()
	e, err := r.start(name, logCfg("bench", path, format))
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer e.close()
	var cpu0 time.Duration
	r.finish(e, &row, bench.Sent{"f": n}, t0, cpu0)
	return row
}

func (r *runner) tailRate(name, format string) Row {
	row := Row{Scenario: name, FixedRate: true}
	path := filepath.Join(r.dir, name+".log")
	w, err := bench.NewFileWriter(bench.FileWriterConfig{Path: path, Src: "f", Format: format, Rate: 100_000})
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer w.Close()
	e, err := r.start(name, logCfg("bench", path, format))
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer e.close()
	n := int64(100_000 * r.span().Seconds())
	t0, cpu0 := time.Now(), e.proc.CPU()
	if err := w.Write(context.Background(), n); err != nil {
		row.Err = err.Error()
	}
	r.finish(e, &row, bench.Sent{"f": n}, t0, cpu0)
	return row
}

func (r *runner) forwardPacked(name string) Row {
	row := Row{Scenario: name}
	e, err := r.start(name, "")
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer e.close()
	const clients = 4
	per := r.size(250_000, 2_500_000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bytesIn int64
	errs := make(chan error, clients)
	t0, cpu0 := time.Now(), e.proc.CPU()
	sent := bench.Sent{}
	for i := range clients {
		src := fmt.Sprintf("c%d", i)
		sent[src] = per
		wg.Go(func() {
			c := bench.NewForwardClient(bench.ForwardClientConfig{Addr: e.proc.Listen, Src: src, Mode: bench.PackedForward,
				EventsPerFrame: 1000, Ack: true, Window: 8})
			defer c.Close()
			if err := c.Send(context.Background(), per); err != nil {
				errs <- err
			}
			mu.Lock()
			bytesIn += per * 100
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		row.Err = err.Error()
	}
	r.finish(e, &row, sent, t0, cpu0)
	row.MBPerSec = float64(e.sink.Bytes.Load()) / row.Seconds / 1e6
	return row
}

// fluentLoggers runs 100 synchronous fluent-logger-golang clients. Without acks each
// client writes as fast as it can; with RequestAck each Post waits for the end-to-end
// ack (upstream round trip), so that row measures latency-bound throughput.
func (r *runner) fluentLoggers(name string, ack bool) Row {
	row := Row{Scenario: name}
	e, err := r.start(name, "")
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer e.close()
	const clients = 100
	per := r.size(300, 3000)
	if !ack {
		per = r.size(3000, 30000)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := bench.Sent{}
	t0, cpu0 := time.Now(), e.proc.CPU()
	for i := range clients {
		src := fmt.Sprintf("l%d", i)
		wg.Go(func() {
			n, err := bench.RunFluentLogger(context.Background(), bench.FluentLoggerConfig{Addr: e.proc.Listen, Src: src, RequestAck: ack}, per)
			mu.Lock()
			sent[src] = n
			if err != nil {
				row.Err = err.Error()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	r.finish(e, &row, sent, t0, cpu0)
	return row
}

func (r *runner) manyFiles(name string) Row {
	row := Row{Scenario: name, FixedRate: true}
	dir := filepath.Join(r.dir, name)
	os.MkdirAll(dir, 0o755)
	const files = 1000
	var ws []*bench.FileWriter
	for i := range files {
		w, err := bench.NewFileWriter(bench.FileWriterConfig{Path: filepath.Join(dir, fmt.Sprintf("f%04d.log", i)), Src: fmt.Sprintf("f%d", i), Rate: 100})
		if err != nil {
			row.Err = err.Error()
			return row
		}
		ws = append(ws, w)
	}
	e, err := r.start(name, logCfg("many", filepath.Join(dir, "*.log"), "none"))
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer e.close()
	per := int64(100 * r.span().Seconds())
	sent := bench.Sent{}
	var wg sync.WaitGroup
	t0, cpu0 := time.Now(), e.proc.CPU()
	for _, w := range ws {
		sent[w.Src()] = per
		wg.Go(func() {
			w.Write(context.Background(), per)
			w.Close()
		})
	}
	wg.Wait()
	r.finish(e, &row, sent, t0, cpu0)
	return row
}

func (r *runner) idle(name string) Row {
	row := Row{Scenario: name, FixedRate: true}
	e, err := r.start(name, "")
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer e.close()
	t0, cpu0 := time.Now(), e.proc.CPU()
	time.Sleep(2 * time.Second)
	row.Seconds = time.Since(t0).Seconds()
	row.CPUPercent = 100 * (e.proc.CPU() - cpu0).Seconds() / row.Seconds
	row.PeakRSSMB = float64(e.proc.PeakRSS()) / 1024
	return row
}
