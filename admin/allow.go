package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// allowList decides which paths POST /logs may tail.
//
// A rule is an absolute path or glob. "dir/**" allows everything below dir; any other
// rule allows the files it matches (filepath.Match), or exactly the same glob. A request
// is checked after filepath.Clean and after resolving symlinks in the longest existing
// prefix of its static part (for a glob, the directory before the first wildcard), so
// neither "/var/log/../../etc/shadow" nor a symlink out of /var/log gets through. Rules
// are compared both as written and with their own static part resolved, so a /var/log
// that is itself a symlink still works.
//
// Not covered: symlinks below the static directory of a glob, which only the tailer
// sees when it expands the glob; and a symlink swapped after the check.
type allowList struct {
	rules []string
}

func newAllowList(patterns, configPaths []string) allowList {
	var a allowList
	seen := map[string]bool{}
	add := func(r string) {
		if r != "" && !seen[r] {
			seen[r] = true
			a.rules = append(a.rules, r)
		}
	}
	for _, p := range patterns {
		add(cleanRule(p))
	}
	for _, p := range configPaths {
		if !filepath.IsAbs(p) {
			continue
		}
		// The directory of the file or of the glob's last element: "/srv/*/logs/*.log"
		// allows "/srv/*/logs/**".
		add(filepath.Join(filepath.Dir(filepath.Clean(p)), "**"))
	}
	return a
}

func cleanRule(p string) string {
	if !filepath.IsAbs(p) {
		return ""
	}
	if strings.HasSuffix(p, "/**") {
		return filepath.Join(filepath.Clean(strings.TrimSuffix(p, "/**")), "**")
	}
	return filepath.Clean(p)
}

const globMeta = `*?[\{}`

func hasMeta(s string) bool { return strings.ContainsAny(s, globMeta) }

// splitStatic splits a clean absolute path into its longest wildcard-free directory
// prefix and the rest ("" for a path without wildcards, which is returned whole).
func splitStatic(p string) (static, rest string) {
	if !hasMeta(p) {
		return p, ""
	}
	parts := strings.Split(p, "/")
	i := 0
	for i < len(parts) && !hasMeta(parts[i]) {
		i++
	}
	static = strings.Join(parts[:i], "/")
	if static == "" {
		static = "/"
	}
	return static, strings.Join(parts[i:], "/")
}

// resolveExisting resolves symlinks in the longest existing prefix of the clean absolute
// path p and appends the components that do not exist yet. A dangling symlink is
// followed to where it points, since the file may appear there later. An error other
// than "does not exist" (a permission error, a loop) is returned: what cannot be
// resolved is not allowed.
func resolveExisting(p string) (string, error) {
	var missing []string // components below cur, innermost first
	cur := p
	for hops := 0; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			for i := len(missing) - 1; i >= 0; i-- {
				r = filepath.Join(r, missing[i])
			}
			return r, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", err
		}
		if fi, lerr := os.Lstat(cur); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			// cur exists and is a symlink whose target does not: follow it by hand.
			if hops++; hops > 40 {
				return "", fmt.Errorf("%s: too many symlinks", p)
			}
			target, err := os.Readlink(cur)
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(cur), target)
			}
			cur = filepath.Clean(target)
			continue
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		missing = append(missing, filepath.Base(cur))
		cur = parent
	}
}

// resolvePattern resolves the static part of a clean absolute path or glob.
func resolvePattern(p string) (string, error) {
	static, rest := splitStatic(p)
	r, err := resolveExisting(static)
	if err != nil {
		return "", err
	}
	if rest == "" {
		return r, nil
	}
	return filepath.Join(r, rest), nil
}

// check returns the cleaned path if the allow-list lets it be tailed, or the error to
// answer with (400 for a malformed path, 403 naming field "path" for a refused one).
func (a allowList) check(path string) (string, error) {
	switch {
	case path == "":
		return "", badField("path", "is required")
	case strings.ContainsRune(path, 0):
		return "", badField("path", "contains a NUL byte")
	case !filepath.IsAbs(path):
		return "", badField("path", fmt.Sprintf("%q is not an absolute path", path))
	}
	// In a glob, ".." is refused before cleaning: inside braces ("{a,../..}") it is
	// not a path element that filepath.Clean could remove soundly.
	if hasMeta(path) {
		for _, el := range strings.FieldsFunc(path, func(r rune) bool { return strings.ContainsRune("/{},", r) }) {
			if el == ".." {
				return "", badField("path", "\"..\" is not allowed in a glob")
			}
		}
	}
	clean := filepath.Clean(path)
	resolved, err := resolvePattern(clean)
	if err != nil {
		return "", &apiError{status: http.StatusForbidden, slug: "forbidden-path", field: "path",
			detail: fmt.Sprintf("%q cannot be resolved, so it is not allowed", path), err: err}
	}
	for _, rule := range a.rules {
		if ruleAllows(rule, resolved) {
			return clean, nil
		}
		if rr, err := resolvePattern(rule); err == nil && rr != rule && ruleAllows(rr, resolved) {
			return clean, nil
		}
	}
	detail := fmt.Sprintf("%q is outside the allowed paths (%s)", path, strings.Join(a.rules, ", "))
	if resolved != clean {
		detail = fmt.Sprintf("%q (resolved to %q) is outside the allowed paths (%s)", path, resolved, strings.Join(a.rules, ", "))
	}
	return "", &apiError{status: http.StatusForbidden, slug: "forbidden-path", field: "path", detail: detail}
}

// ruleAllows reports whether rule covers every file that target (a resolved path or
// glob) can name. When both sides hold wildcards in the same place it requires them to
// be equal: glob-in-glob containment is not decided, only refused.
func ruleAllows(rule, target string) bool {
	if base, ok := strings.CutSuffix(rule, "/**"); ok {
		if base == "" { // "/**"
			return true
		}
		if !hasMeta(base) {
			return target == base || strings.HasPrefix(target, base+"/")
		}
		rp, tp := strings.Split(base, "/"), strings.Split(target, "/")
		if len(tp) <= len(rp) {
			return false
		}
		return componentsMatch(rp, tp[:len(rp)])
	}
	rp, tp := strings.Split(rule, "/"), strings.Split(target, "/")
	if len(rp) != len(tp) {
		return false
	}
	return componentsMatch(rp, tp)
}

func componentsMatch(rule, target []string) bool {
	for i := range rule {
		if hasMeta(target[i]) {
			if rule[i] != target[i] {
				return false
			}
			continue
		}
		if ok, err := filepath.Match(rule[i], target[i]); err != nil || !ok {
			return false
		}
	}
	return true
}
