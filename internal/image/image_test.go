// Package image tests the fwdmux container image for real: it builds the image from
// the repository's Dockerfile with podman (FROM scratch, no registry needed), runs it,
// sends events with fluent-logger-golang, checks they reach an upstream and that the
// in-container healthcheck answers, then stops it and checks the SIGTERM drain.
//
// It skips when podman is not installed. On Debian:
//
//	apt-get install -y podman runc
//
// The podman flags it uses (storage driver vfs, cgroupfs, file events, runc, explicit
// ulimits, host network) are the ones that work inside CI containers; see podmanArgs.
package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

// nonRootUID is the user the Dockerfile runs as.
const nonRootUID = "65532"

func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("image test skipped in -short mode")
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		msg := "podman not installed: the container image test needs it (Debian: apt-get install -y podman runc)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg) // CI installs it: a skip there would hide a broken image
		}
		t.Skip(msg)
	}
	root := repoRoot(t)
	work := t.TempDir()
	p := &pod{t: t, bin: podman, root: filepath.Join(work, "storage"), runroot: filepath.Join(work, "run"), tmp: filepath.Join(work, "tmp")}
	for _, d := range []string{p.root, p.runroot, p.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	// The build context, laid out as `make image` prepares it.
	ctxDir := filepath.Join(work, "context")
	prepareContext(t, root, ctxDir)

	tag := "localhost/fwdmux-test:" + randHex(4)
	p.must(5*time.Minute, "build", "--network=none", "--format", "docker", "--pull=never", "-t", tag, ctxDir)
	t.Cleanup(func() { p.run(time.Minute, "rmi", "-f", tag) })

	// The image's own metadata: non-root, the ports, the healthcheck.
	inspect := p.must(time.Minute, "image", "inspect", tag)
	var imgs []struct {
		Healthcheck *struct{ Test []string } // podman reports it here
		Config      struct {
			User         string
			ExposedPorts map[string]any
			Env          []string
			Entrypoint   []string
			Healthcheck  *struct{ Test []string }
		}
	}
	if err := json.Unmarshal([]byte(inspect), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("image inspect: %v\n%s", err, inspect)
	}
	ic := imgs[0].Config
	if ic.Healthcheck == nil {
		ic.Healthcheck = imgs[0].Healthcheck
	}
	if !strings.HasPrefix(ic.User, nonRootUID) {
		t.Errorf("image user = %q, want %s (non-root)", ic.User, nonRootUID)
	}
	for _, port := range []string{"24224/tcp", "24224/udp", "24223/tcp"} {
		if _, ok := ic.ExposedPorts[port]; !ok {
			t.Errorf("image does not expose %s: %v", port, ic.ExposedPorts)
		}
	}
	if ic.Healthcheck == nil || !strings.Contains(strings.Join(ic.Healthcheck.Test, " "), "/fwdmux healthcheck") {
		t.Errorf("image healthcheck = %+v, want /fwdmux healthcheck", ic.Healthcheck)
	}
	if !contains(ic.Env, "FWDMUX_LISTEN=0.0.0.0:24224") || !contains(ic.Env, "FWDMUX_STATE_DIR=/var/lib/fwdmux") {
		t.Errorf("image env = %v, want FWDMUX_LISTEN=0.0.0.0:24224 and FWDMUX_STATE_DIR=/var/lib/fwdmux", ic.Env)
	}

	// The upstream: the same static binary on the host in stdout mode, a real Forward
	// server that acks chunks once it printed them.
	upPort := freePort(t)
	up := startUpstream(t, filepath.Join(ctxDir, "bin", "fwdmux"), upPort, filepath.Join(work, "upstream-state"))

	// The container on the host network, on ports of its own so parallel runs and a
	// fwdmux on the machine do not collide.
	listenPort, adminPort := freePort(t), freePort(t)
	name := "fwdmux-test-" + randHex(4)
	p.must(2*time.Minute, "run", "-d", "--name", name,
		"--network=host",
		"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
		"-e", "FWDMUX_LISTEN=127.0.0.1:"+strconv.Itoa(listenPort),
		"-e", "FWDMUX_ADMIN=127.0.0.1:"+strconv.Itoa(adminPort),
		"-e", "FWDMUX_SERVERS=127.0.0.1:"+strconv.Itoa(upPort),
		tag, "-log-format", "json")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run(time.Minute, "logs", name)
			t.Logf("container logs:\n%s", out)
		}
		p.run(time.Minute, "rm", "-f", "-t", "0", name)
	})

	// Ready: the in-container healthcheck (what HEALTHCHECK runs) exits 0.
	eventually(t, 60*time.Second, "fwdmux healthcheck inside the container", func() error {
		_, err := p.run(30*time.Second, "exec", name, "/fwdmux", "healthcheck")
		return err
	})
	if out, err := p.run(time.Minute, "healthcheck", "run", name); err != nil {
		t.Errorf("podman healthcheck run (the image's HEALTHCHECK): %v\n%s", err, out)
	}
	if out, err := p.run(30*time.Second, "exec", name, "/fwdmux", "version"); err != nil || !strings.HasPrefix(out, "fwdmux ") {
		t.Errorf("fwdmux version in the container: %v %q", err, out)
	}

	// Events with sequence numbers through a real client that waits for acks.
	const n = 200
	logger, err := fluent.New(fluent.Config{
		FluentHost: "127.0.0.1", FluentPort: listenPort, RequestAck: true,
		Timeout: 5 * time.Second, WriteTimeout: 5 * time.Second, MaxRetry: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := logger.Post("image.test", map[string]any{"seq": i, "msg": "hello from the image test"}); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	if err := logger.Close(); err != nil {
		t.Errorf("logger close: %v", err)
	}
	eventually(t, 30*time.Second, fmt.Sprintf("%d events at the upstream", n), func() error {
		seen, dups := up.seqs("image.test")
		for i := range n {
			if !seen[i] {
				return fmt.Errorf("seq %d missing (%d of %d seen, %d duplicates)", i, len(seen), n, dups)
			}
		}
		return nil
	})
	_, dups := up.seqs("image.test")
	t.Logf("%d events delivered through the container, %d duplicates", n, dups)

	// SIGTERM: a clean drain, exit code 0.
	p.must(2*time.Minute, "stop", "-t", "30", name)
	code := strings.TrimSpace(p.must(time.Minute, "inspect", "--format", "{{.State.ExitCode}}", name))
	if code != "0" {
		t.Errorf("exit code after SIGTERM = %s, want 0", code)
	}
	logs, _ := p.run(time.Minute, "logs", name)
	if !strings.Contains(logs, "drained") {
		t.Errorf("container logs have no \"drained\" after SIGTERM:\n%s", logs)
	}
	if strings.Contains(logs, "state directory unusable") {
		t.Errorf("the non-root user cannot write /var/lib/fwdmux:\n%s", logs)
	}
}

// pod runs podman with the flags that work in CI containers and an isolated store.
type pod struct {
	t                       *testing.T
	bin, root, runroot, tmp string
}

// podmanArgs are the global flags: vfs storage (no overlay in nested containers),
// cgroupfs (no systemd), file events (no journald), runc, and a private store.
func (p *pod) podmanArgs() []string {
	return []string{
		"--storage-driver=vfs",
		"--cgroup-manager=cgroupfs",
		"--events-backend=file",
		"--runtime=runc",
		"--root=" + p.root,
		"--runroot=" + p.runroot,
		"--tmpdir=" + p.tmp,
	}
}

func (p *pod) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, append(p.podmanArgs(), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("podman %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), err
}

func (p *pod) must(timeout time.Duration, args ...string) string {
	p.t.Helper()
	out, err := p.run(timeout, args...)
	if err != nil {
		p.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// prepareContext lays out what `make image` prepares: the static binary, passwd and
// group with the non-root user, the CA bundle and the state directory, beside the
// repository's Dockerfile and .dockerignore.
func prepareContext(t *testing.T, root, dir string) {
	t.Helper()
	bin := filepath.Join(dir, "bin", "fwdmux")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=image-test", "-o", bin, "./cmd/fwdmux")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rootfs := filepath.Join(dir, "bin", "rootfs")
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/:/sbin/nologin\nfwdmux:x:65532:65532:fwdmux:/var/lib/fwdmux:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nfwdmux:x:65532:\n",
	}
	for name, body := range files {
		write(t, filepath.Join(rootfs, name), []byte(body))
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Logf("no CA bundle on this machine (%v): the image gets an empty one", err)
	}
	write(t, filepath.Join(rootfs, "etc", "ssl", "certs", "ca-certificates.crt"), ca)
	if err := os.MkdirAll(filepath.Join(rootfs, "var", "lib", "fwdmux"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, f), b)
	}
}

// upstream is a host fwdmux in stdout mode; it collects the JSON lines it prints.
type upstream struct {
	mu    sync.Mutex
	lines []string
}

func startUpstream(t *testing.T, bin string, port int, state string) *upstream {
	t.Helper()
	cmd := exec.Command(bin, "-listen", "127.0.0.1:"+strconv.Itoa(port), "-admin", "off", "-state-dir", state)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := &upstream{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			up.mu.Lock()
			up.lines = append(up.lines, sc.Text())
			up.mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		waited := make(chan error, 1)
		go func() { <-done; waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			t.Logf("upstream stderr:\n%s", stderr.String())
		}
	})
	eventually(t, 10*time.Second, "the upstream listening", func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return up
}

// seqs returns the sequence numbers seen for tag and how many arrived more than once.
func (u *upstream) seqs(tag string) (map[int]bool, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	seen, dups := map[int]bool{}, 0
	for _, l := range u.lines {
		var ev struct {
			Tag    string `json:"tag"`
			Record struct {
				Seq *int `json:"seq"`
			} `json:"record"`
		}
		if json.Unmarshal([]byte(l), &ev) != nil || ev.Tag != tag || ev.Record.Seq == nil {
			continue
		}
		if seen[*ev.Record.Seq] {
			dups++
		}
		seen[*ev.Record.Seq] = true
	}
	return seen, dups
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
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

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	wait := 50 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}
