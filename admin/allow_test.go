package admin

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func TestAllowList(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	logs := mk("logs")
	mk("logs/app")
	outside := mk("outside")
	real := mk("real/logs")
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(outside, "logs/escape")                    // a directory symlink out of the tree
	link(filepath.Join(outside, "f"), "logs/f.log") // a file symlink out of the tree
	link(filepath.Join(logs, "app"), "logs/inner")  // a symlink that stays inside
	link(real, "varlog")                            // an allowed dir that is itself a symlink

	a := newAllowList(
		[]string{logs + "/**", filepath.Join(root, "varlog") + "/**", filepath.Join(root, "single", "one.log")},
		[]string{filepath.Join(root, "cfg", "*", "svc", "*.log"), filepath.Join(root, "plain", "x.log"), "relative/ignored"},
	)
	tests := []struct {
		path   string
		status int // 0: allowed
	}{
		{logs + "/a.log", 0},
		{logs + "/app/*.log", 0},
		{logs + "/**/*.log", 0},
		{logs + "/new/dir/not/yet.log", 0},
		{logs + "/inner/a.log", 0},
		{logs, 0},
		{filepath.Join(root, "varlog", "a.log"), 0},
		{filepath.Join(root, "real", "logs", "a.log"), 0}, // the same files, by their real path
		{filepath.Join(root, "single", "one.log"), 0},
		{filepath.Join(root, "cfg", "web", "svc", "a.log"), 0},
		{filepath.Join(root, "cfg", "*", "svc", "*.log"), 0},
		{filepath.Join(root, "plain", "y.log"), 0},

		{logs + "/escape/secret", http.StatusForbidden},
		{logs + "/escape/*", http.StatusForbidden},
		{logs + "/f.log", http.StatusForbidden},
		{logs + "/../outside/x", http.StatusForbidden},
		{logs + "x/a.log", http.StatusForbidden}, // a sibling with the same prefix
		{filepath.Join(root, "single", "two.log"), http.StatusForbidden},
		{filepath.Join(root, "cfg", "web", "other", "a.log"), http.StatusForbidden},
		{filepath.Join(root, "cfg", "[a-z]*", "svc", "a.log"), http.StatusForbidden}, // glob-in-glob: refused
		{root + "/*/a.log", http.StatusForbidden},
		{"/etc/shadow", http.StatusForbidden},

		{"relative/a.log", http.StatusBadRequest},
		{"", http.StatusBadRequest},
		{logs + "/{a,../../outside}/x", http.StatusBadRequest},
		{logs + "/*/../../outside/x", http.StatusBadRequest},
		{logs + "/a\x00.log", http.StatusBadRequest},
	}
	for _, tt := range tests {
		_, err := a.check(tt.path)
		got := 0
		if err != nil {
			got = toAPIError(err).status
		}
		if got != tt.status {
			t.Errorf("check(%q) = %v (status %d), want status %d", tt.path, err, got, tt.status)
		}
		if err != nil && toAPIError(err).field != "path" {
			t.Errorf("check(%q): field %q", tt.path, toAPIError(err).field)
		}
	}
}

func TestAllowListCleansPath(t *testing.T) {
	a := newAllowList([]string{"/var/log/**"}, nil)
	got, err := a.check("/var/log/./x//../app.log")
	if err != nil || got != "/var/log/app.log" {
		t.Fatalf("check = %q, %v", got, err)
	}
}
