package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

// proc is a running fwdmux binary with its stdout lines and stderr collected.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout []string
	stderr bytes.Buffer
	done   chan struct{} // closed when the process exited and its output is read
	err    error         // Wait's result, set before done closes
}

func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(binPath, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errp, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.stdout = append(p.stdout, sc.Text())
			p.mu.Unlock()
		}
		io.Copy(io.Discard, out)
	})
	readers.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := errp.Read(buf)
			p.mu.Lock()
			p.stderr.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	go func() {
		readers.Wait()
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("fwdmux stderr:\n%s", p.stderrText())
		}
	})
	return p
}

func (p *proc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) stdoutLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stdout...)
}

// signal sends sig and, for SIGTERM, waits for the exit code.
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.t.Fatal("fwdmux did not exit within 60s of " + sig.String())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatal(p.err)
	return -1
}

func (p *proc) waitStderr(what string) {
	p.t.Helper()
	eventually(p.t, 20*time.Second, "stderr to show "+strconv.Quote(what), func() error {
		if strings.Contains(p.stderrText(), what) {
			return nil
		}
		select {
		case <-p.done:
			p.t.Fatalf("fwdmux exited (%v) before logging %q", p.err, what)
		default:
		}
		return fmt.Errorf("not yet")
	})
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	wait := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func healthcheck(t *testing.T, admin string) (int, string) {
	t.Helper()
	out, err := exec.Command(binPath, "healthcheck", "-admin", admin, "-timeout", "2s").CombinedOutput()
	if err == nil {
		return 0, string(out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	t.Fatal(err)
	return -1, ""
}

// event is one stdout JSON line.
type event struct {
	Tag    string         `json:"tag"`
	Time   time.Time      `json:"time"`
	Record map[string]any `json:"record"`
}

// seqs collects the "seq" of every stdout event with tag; dups counts repeats.
func seqs(lines []string, tag string) (map[int]bool, int) {
	seen, dups := map[int]bool{}, 0
	for _, l := range lines {
		var ev event
		if json.Unmarshal([]byte(l), &ev) != nil || ev.Tag != tag {
			continue
		}
		f, ok := ev.Record["seq"].(float64)
		if !ok {
			continue
		}
		if seen[int(f)] {
			dups++
		}
		seen[int(f)] = true
	}
	return seen, dups
}

func allSeen(seen map[int]bool, n int) error {
	for i := range n {
		if !seen[i] {
			return fmt.Errorf("seq %d missing (%d of %d seen)", i, len(seen), n)
		}
	}
	return nil
}

// The real binary with flags only: events from fluent-logger-golang come out on stdout
// as JSON lines, healthcheck answers while it runs, SIGTERM drains and exits 0.
func TestProcessStdoutHealthcheckDrain(t *testing.T) {
	listen, adminPort := freePort(t), freePort(t)
	listenAddr := "127.0.0.1:" + strconv.Itoa(listen)
	adminAddr := "127.0.0.1:" + strconv.Itoa(adminPort)
	p := startProc(t, nil, "-listen", listenAddr, "-admin", adminAddr,
		"-state-dir", t.TempDir(), "-log-format", "json")
	p.waitStderr(`"msg":"fwdmux started"`)

	// One startup line with the addresses, the output and the upstreams.
	var started map[string]any
	for _, l := range strings.Split(p.stderrText(), "\n") {
		if strings.Contains(l, `"msg":"fwdmux started"`) {
			if err := json.Unmarshal([]byte(l), &started); err != nil {
				t.Fatalf("startup line is not JSON: %v: %s", err, l)
			}
		}
	}
	for k, want := range map[string]string{"listen": listenAddr, "admin": adminAddr, "output": "stdout", "upstreams": ""} {
		if started[k] != want {
			t.Errorf("startup line %s = %v, want %q", k, started[k], want)
		}
	}

	if code, out := healthcheck(t, adminAddr); code != 0 {
		t.Errorf("healthcheck while running: exit %d: %s", code, out)
	}

	const n = 300
	logger, err := fluent.New(fluent.Config{FluentHost: "127.0.0.1", FluentPort: listen, RequestAck: true, Timeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := logger.Post("test.stdout", map[string]any{"seq": i, "msg": "hello"}); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	logger.Close()
	eventually(t, 20*time.Second, "events on stdout", func() error {
		seen, _ := seqs(p.stdoutLines(), "test.stdout")
		return allSeen(seen, n)
	})
	if _, dups := seqs(p.stdoutLines(), "test.stdout"); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	var ev event
	if err := json.Unmarshal([]byte(p.stdoutLines()[0]), &ev); err != nil || ev.Record["msg"] != "hello" || ev.Time.IsZero() {
		t.Errorf("first line %q: %v", p.stdoutLines()[0], err)
	}

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if !strings.Contains(p.stderrText(), "drained") {
		t.Errorf("no \"drained\" in the logs after SIGTERM")
	}
	if code, out := healthcheck(t, adminAddr); code != 1 {
		t.Errorf("healthcheck after stop: exit %d, want 1: %s", code, out)
	}
}

// The same through the environment only, no flags and no file: the container's way.
func TestProcessEnvironmentOnly(t *testing.T) {
	listen, adminPort := freePort(t), freePort(t)
	state := t.TempDir()
	p := startProc(t, []string{
		"FWDMUX_LISTEN=127.0.0.1:" + strconv.Itoa(listen),
		"FWDMUX_ADMIN=127.0.0.1:" + strconv.Itoa(adminPort),
		"FWDMUX_STATE_DIR=" + state,
	})
	p.waitStderr("fwdmux started")
	if !strings.Contains(p.stderrText(), "state_dir="+state) {
		t.Errorf("startup line does not show the state dir %s", state)
	}
	// healthcheck finds the admin API through FWDMUX_ADMIN as well.
	hc := exec.Command(binPath, "healthcheck")
	hc.Env = append(os.Environ(), "FWDMUX_ADMIN=127.0.0.1:"+strconv.Itoa(adminPort))
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("healthcheck with FWDMUX_ADMIN: %v: %s", err, out)
	}
	if code := p.stop(syscall.SIGINT); code != 0 {
		t.Errorf("exit code after SIGINT = %d, want 0", code)
	}
}

// A listener that cannot bind fails the start at once with the address in the error.
func TestProcessListenBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := startProc(t, nil, "-listen", ln.Addr().String(), "-admin", "off", "-state-dir", t.TempDir())
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("fwdmux kept running with its listen address taken")
	}
	if ee, ok := p.err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit = %v, want 1", p.err)
	}
	if !strings.Contains(p.stderrText(), ln.Addr().String()) {
		t.Errorf("the error does not name the address %s", ln.Addr())
	}
}

// SIGHUP re-reads the file: a new [[logs]] target appears in GET /logs and is tailed;
// a bad file is rejected and the running configuration stays.
func TestProcessSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	logA := filepath.Join(dir, "a.log")
	logB := filepath.Join(dir, "b.log")
	for _, f := range []string{logA, logB} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	head := fmt.Sprintf("state_dir = %q\n[listener]\naddr = \"127.0.0.1:%d\"\n[admin]\nlisten = %q\n[tail]\npoll_interval = \"100ms\"\n",
		filepath.Join(dir, "state"), freePort(t), adminAddr)
	targetA := fmt.Sprintf("[[logs]]\nid = \"a\"\ntag = \"reload.a\"\npath = %q\nread_from_head = true\n", logA)
	targetB := fmt.Sprintf("[[logs]]\nid = \"b\"\ntag = \"reload.b\"\npath = %q\nread_from_head = true\n", logB)
	cfg := filepath.Join(dir, "fwdmux.toml")
	writeCfg := func(body string) {
		t.Helper()
		// Write beside and rename, as config management tools do.
		tmp := cfg + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(head + targetA)

	p := startProc(t, nil, "-c", cfg)
	p.waitStderr("fwdmux started")
	logIDs := func() ([]string, error) {
		resp, err := http.Get("http://" + adminAddr + "/logs")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Logs []struct {
				ID  string `json:"id"`
				Tag string `json:"tag"`
			} `json:"logs"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return nil, err
		}
		var ids []string
		for _, l := range body.Logs {
			ids = append(ids, l.ID+"="+l.Tag)
		}
		return ids, nil
	}
	wantIDs := func(want ...string) func() error {
		return func() error {
			ids, err := logIDs()
			if err != nil {
				return err
			}
			if strings.Join(ids, ",") != strings.Join(want, ",") {
				return fmt.Errorf("GET /logs: %v, want %v", ids, want)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "target a", wantIDs("a=reload.a"))

	// Add target b.
	writeCfg(head + targetA + targetB)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "target b after SIGHUP", wantIDs("a=reload.a", "b=reload.b"))
	p.waitStderr("configuration reloaded")

	appendLines := func(path string, from, to int) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for i := from; i < to; i++ {
			fmt.Fprintf(f, "{\"seq\":%d}\n", i)
		}
	}
	// format none: the line lands in "message"; seq is checked from it.
	lineSeqs := func(tag string) map[int]bool {
		seen := map[int]bool{}
		for _, l := range p.stdoutLines() {
			var ev event
			if json.Unmarshal([]byte(l), &ev) != nil || ev.Tag != tag {
				continue
			}
			var rec struct{ Seq int }
			if msg, ok := ev.Record["message"].(string); ok && json.Unmarshal([]byte(msg), &rec) == nil {
				seen[rec.Seq] = true
			}
		}
		return seen
	}
	appendLines(logB, 0, 50)
	eventually(t, 20*time.Second, "lines of the target added by SIGHUP", func() error { return allSeen(lineSeqs("reload.b"), 50) })

	// A bad file: rejected, logged, nothing changes.
	writeCfg(head + targetA + targetB + "[[logs]]\nid = \"c\"\ntag = \"reload.c\"\npath = \"/var/log/c.log\"\nbogus_key = 1\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitStderr("config rejected")
	if !strings.Contains(p.stderrText(), "bogus_key") {
		t.Errorf("the rejection does not name the bad key")
	}
	if err := wantIDs("a=reload.a", "b=reload.b")(); err != nil {
		t.Errorf("after a rejected config: %v", err)
	}
	appendLines(logB, 50, 60)
	appendLines(logA, 0, 10)
	eventually(t, 20*time.Second, "targets still tailed after a rejected config", func() error {
		if err := allSeen(lineSeqs("reload.b"), 60); err != nil {
			return err
		}
		return allSeen(lineSeqs("reload.a"), 10)
	})

	// Remove target a.
	writeCfg(head + targetB)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "target a removed after SIGHUP", wantIDs("b=reload.b"))

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if !strings.Contains(p.stderrText(), "drained") {
		t.Errorf("no \"drained\" after SIGTERM")
	}
	// The positions of the remaining target were saved.
	if _, err := os.Stat(filepath.Join(dir, "state", "positions.json")); err != nil {
		t.Errorf("positions not saved: %v", err)
	}
}
