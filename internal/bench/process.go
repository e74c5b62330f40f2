package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// ModuleRoot is the directory of the go.mod of the module being built (`go env GOMOD`).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// Binary builds ./cmd/fwdmux once per process into a temp dir and returns its path.
// FWDMUX_BIN, when set, is used instead. Call CleanupBinary at exit.
func Binary() (string, error) {
	buildOnce.Do(func() {
		if b := os.Getenv("FWDMUX_BIN"); b != "" {
			buildBin = b
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "fwdmux-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(buildDir, "fwdmux")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/fwdmux")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/fwdmux: %w\n%s", err, out)
		}
	})
	return buildBin, buildErr
}

// CleanupBinary removes the built binary.
func CleanupBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// ProcConfig starts fwdmux.
type ProcConfig struct {
	// Args are extra flags. -listen, -admin, -state-dir and -log-format json are added
	// unless given here.
	Args []string
	// Config is TOML written to a file and passed with -c.
	Config string
	// StateDir (default: a new temp dir, removed by Proc.Cleanup).
	StateDir string
	// Listen and Admin addresses (default 127.0.0.1:0; read back from the log).
	Listen, Admin string
	// Env is added to the environment. GOMAXPROCS sets the variable when > 0.
	Env        []string
	GOMAXPROCS int
	// Stderr, when set, also receives fwdmux's log.
	Stderr io.Writer
	// Stdout receives fwdmux's stdout (default discarded).
	Stdout io.Writer
	// StartTimeout bounds the wait for the "fwdmux started" line (default 20s).
	StartTimeout time.Duration
}

// Proc is a running fwdmux.
type Proc struct {
	Cfg      ProcConfig
	Listen   string
	Admin    string
	StateDir string
	Pid      int

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	mu       sync.Mutex
	log      bytes.Buffer
	peakRSS  int64 // kB
	lastRSS  int64
	lastCPU  time.Duration
	stopSamp chan struct{}
	sampDone chan struct{}
	tmp      string
}

// StartProc starts fwdmux and waits for its "fwdmux started" log line.
func StartProc(cfg ProcConfig) (*Proc, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	p := &Proc{Cfg: cfg, done: make(chan struct{}), stopSamp: make(chan struct{}), sampDone: make(chan struct{})}
	if cfg.StateDir == "" {
		p.tmp, err = os.MkdirTemp("", "fwdmux-e2e-")
		if err != nil {
			return nil, err
		}
		cfg.StateDir = filepath.Join(p.tmp, "state")
	}
	p.StateDir = cfg.StateDir
	args := []string{}
	has := func(f string) bool {
		for _, a := range cfg.Args {
			if a == f || strings.HasPrefix(a, f+"=") {
				return true
			}
		}
		return false
	}
	if !has("-listen") {
		l := cfg.Listen
		if l == "" {
			l = "127.0.0.1:0"
		}
		args = append(args, "-listen", l)
	}
	if !has("-admin") {
		a := cfg.Admin
		if a == "" {
			a = "127.0.0.1:0"
		}
		args = append(args, "-admin", a)
	}
	if !has("-state-dir") {
		args = append(args, "-state-dir", cfg.StateDir)
	}
	if !has("-log-format") {
		args = append(args, "-log-format", "json")
	}
	if cfg.Config != "" {
		dir := p.tmp
		if dir == "" {
			if dir, err = os.MkdirTemp("", "fwdmux-e2e-"); err != nil {
				return nil, err
			}
			p.tmp = dir
		}
		file := filepath.Join(dir, "fwdmux.toml")
		if err := os.WriteFile(file, []byte(cfg.Config), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-c", file)
	}
	args = append(args, cfg.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	if cfg.GOMAXPROCS > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(cfg.GOMAXPROCS))
	}
	if cfg.Stdout != nil {
		cmd.Stdout = cfg.Stdout
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.cmd = cmd
	p.Pid = cmd.Process.Pid
	started := make(chan map[string]any, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.log.Write(line)
			p.log.WriteByte('\n')
			p.mu.Unlock()
			if cfg.Stderr != nil {
				cfg.Stderr.Write(append(line, '\n'))
			}
			if bytes.Contains(line, []byte(`fwdmux started`)) {
				var m map[string]any
				json.Unmarshal(line, &m)
				if m == nil {
					m = map[string]any{}
				}
				select {
				case started <- m:
				default:
				}
			}
		}
	}()
	go func() {
		<-readDone
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	go p.sample()
	to := cfg.StartTimeout
	if to == 0 {
		to = 20 * time.Second
	}
	select {
	case m := <-started:
		p.Listen, _ = m["listen"].(string)
		p.Admin, _ = m["admin"].(string)
	case <-p.done:
		p.stopSampling()
		return nil, fmt.Errorf("fwdmux exited before starting: %v\n%s", p.waitErr, p.Log())
	case <-time.After(to):
		p.Kill()
		return nil, fmt.Errorf("fwdmux did not start within %v\n%s", to, p.Log())
	}
	return p, nil
}

// Restart starts a new fwdmux with the same config, addresses and state dir. The old
// one must have exited.
func (p *Proc) Restart() (*Proc, error) {
	cfg := p.Cfg
	cfg.Listen, cfg.Admin, cfg.StateDir = p.Listen, p.Admin, p.StateDir
	var q *Proc
	var err error
	for range 20 { // the port may take a moment to be free
		q, err = StartProc(cfg)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if q != nil && p.tmp != "" && q.tmp == "" {
		q.tmp = p.tmp
	}
	return q, err
}

// Log is everything fwdmux wrote to stderr so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *Proc) sample() {
	defer close(p.sampDone)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		p.sampleOnce()
		select {
		case <-p.stopSamp:
			return
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

func (p *Proc) sampleOnce() {
	rss, hwm, err := ReadRSS(p.Pid)
	if err == nil {
		p.mu.Lock()
		p.lastRSS = rss
		if hwm > p.peakRSS {
			p.peakRSS = hwm
		}
		if rss > p.peakRSS {
			p.peakRSS = rss
		}
		p.mu.Unlock()
	}
	if cpu, err := ReadCPU(p.Pid); err == nil {
		p.mu.Lock()
		p.lastCPU = cpu
		p.mu.Unlock()
	}
}

func (p *Proc) stopSampling() {
	select {
	case <-p.stopSamp:
	default:
		close(p.stopSamp)
	}
	<-p.sampDone
}

// PeakRSS is the highest VmHWM/VmRSS seen, in kB.
func (p *Proc) PeakRSS() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peakRSS
}

// RSS is the latest VmRSS sample in kB.
func (p *Proc) RSS() int64 {
	p.sampleOnce()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastRSS
}

// CPU is the process's user+system CPU time (the last sample if it has exited).
func (p *Proc) CPU() time.Duration {
	p.sampleOnce()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastCPU
}

// ReadRSS reads VmRSS and VmHWM (kB) from /proc/<pid>/status.
func ReadRSS(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, nil
}

// clkTck is USER_HZ, 100 on every Linux architecture Go supports.
const clkTck = 100

// ReadCPU reads utime+stime from /proc/<pid>/stat.
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// Stop sends SIGTERM and waits up to timeout; it returns the exit code (-1 if killed by
// a signal) or an error on timeout (the process is then killed).
func (p *Proc) Stop(timeout time.Duration) (int, error) {
	p.sampleOnce()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		return -1, fmt.Errorf("fwdmux did not exit within %v of SIGTERM", timeout)
	}
	p.stopSampling()
	return p.cmd.ProcessState.ExitCode(), nil
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	p.sampleOnce()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.stopSampling()
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Cleanup kills the process if it still runs and removes its temp dir.
func (p *Proc) Cleanup() {
	if !p.Exited() {
		p.Kill()
	}
	if p.tmp != "" {
		os.RemoveAll(p.tmp)
	}
}

// TempDir is the process's temp dir (config file, default state dir).
func (p *Proc) TempDir() string { return p.tmp }

// URL is the admin API URL of path.
func (p *Proc) URL(path string) string { return "http://" + p.Admin + path }

// WaitReady polls GET /ready until 200 or ctx ends.
func (p *Proc) WaitReady(ctx context.Context) error {
	for {
		resp, err := http.Get(p.URL("/ready"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fwdmux not ready: %w", ctx.Err())
		case <-p.done:
			return fmt.Errorf("fwdmux exited: %v", p.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Do sends an admin API request with a JSON body (nil for none) and decodes a JSON
// answer into out (may be nil). It returns the status code.
func (p *Proc) Do(method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.URL(path), rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d %s: %w", method, path, resp.StatusCode, data, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, nil
}

// FileOffsets returns read_offset per followed file path from GET /logs.
func (p *Proc) FileOffsets() (map[string]int64, error) {
	var body struct {
		Logs []struct {
			Files []struct {
				Path       string `json:"path"`
				ReadOffset int64  `json:"read_offset"`
			} `json:"files"`
		} `json:"logs"`
	}
	if _, err := p.Do("GET", "/logs", nil, &body); err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, l := range body.Logs {
		for _, f := range l.Files {
			m[f.Path] = f.ReadOffset
		}
	}
	return m, nil
}
