package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// binPath is fwdmux built once for the tests that run the real process.
var binPath string

func TestMain(m *testing.M) {
	// The tests choose the environment they want; the caller's must not leak in.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "FWDMUX_") {
			os.Unsetenv(k)
		}
	}
	dir, err := os.MkdirTemp("", "fwdmux-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "fwdmux")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race") // the process tests then find races in the real program
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
