package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/fwdmux/fwdmux/admin"
	"github.com/fwdmux/fwdmux/balance"
	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/tail"
)

// Config is fwdmux's own TOML schema: every component's Config under its table.
type Config struct {
	// StateDir holds positions.json and runtime.json (default ./fwdmux-state).
	StateDir string `toml:"state_dir" json:"state_dir"`
	// LogFormat is text (default) or json; LogLevel debug, info (default), warn, error.
	LogFormat string `toml:"log_format" json:"log_format"`
	LogLevel  string `toml:"log_level" json:"log_level"`
	// DrainTimeout bounds the flush of the ring to upstreams at shutdown (default 30s).
	DrainTimeout conf.Duration `toml:"drain_timeout" json:"drain_timeout"`

	Listener proxy.ListenerConfig     `toml:"listener" json:"listener"`
	Ring     proxy.RingConfig         `toml:"ring" json:"ring"`
	Forward  balance.Config           `toml:"forward" json:"forward"`
	Servers  []balance.UpstreamConfig `toml:"servers" json:"servers"`
	Tail     tail.Config              `toml:"tail" json:"tail"`
	Logs     []tail.TargetConfig      `toml:"logs" json:"logs"`
	Admin    admin.Config             `toml:"admin" json:"admin"`

	// hydra is set when the file was a fluent-agent-hydra config, mapped onto this
	// schema; warnings are what the mapping could not carry over.
	hydra    bool
	warnings []string
}

// ConfigError is a bad configuration: the key, where it is, and what was expected.
type ConfigError struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// loadFile reads a TOML config, detecting a fluent-agent-hydra file by its CamelCase keys.
func loadFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var probe map[string]any
	if _, err := toml.Decode(string(data), &probe); err != nil {
		return Config{}, tomlError(path, data, err)
	}
	if isHydra(probe) {
		return loadHydra(path, data)
	}
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		return Config{}, tomlError(path, data, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		// Typos must not silently do nothing.
		key := und[0]
		line := lineOf(data, key)
		return Config{}, &ConfigError{File: path, Line: line, Key: indexedKey(data, key.String(), line), Msg: "unknown key" + suggest(key)}
	}
	return c, nil
}

// tomlError turns a decode error into a *ConfigError with the key and its line. Parse
// and text-unmarshal errors are toml.ParseError; type mismatches ("weight = \"x\"") are
// plain errors of the form `toml: line N (last key "K"): ...`.
func tomlError(path string, data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if msg == "" {
			msg = pe.Error()
		}
		line := pe.Position.Line
		return &ConfigError{File: path, Line: line, Key: indexedKey(data, pe.LastKey, line), Msg: msg}
	}
	if m := decodeErrRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		if line == 0 && m[2] != "" {
			line = lineOf(data, toml.Key(strings.Split(m[2], ".")))
		}
		return &ConfigError{File: path, Line: line, Key: indexedKey(data, m[2], line), Msg: m[3]}
	}
	return &ConfigError{File: path, Msg: err.Error()}
}

var decodeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// indexedKey names an entry of an array of tables by its index: "servers.weight" on a
// line under the second [[servers]] becomes "servers[1].weight", as validate names it.
func indexedKey(data []byte, key string, line int) string {
	table, rest, ok := strings.Cut(key, ".")
	if !ok || line <= 0 {
		return key
	}
	n := 0
	for i, l := range strings.Split(string(data), "\n") {
		if i+1 > line {
			break
		}
		if h, ok := tableHeader(l); ok && h == "[["+table+"]]" {
			n++
		}
	}
	if n == 0 {
		return key
	}
	return fmt.Sprintf("%s[%d].%s", table, n-1, rest)
}

// tableHeader returns a line's "[table]" or "[[table]]" header without spaces.
func tableHeader(line string) (string, bool) {
	t := strings.TrimSpace(line)
	if i := strings.Index(t, "#"); i >= 0 {
		t = strings.TrimSpace(t[:i])
	}
	if !strings.HasPrefix(t, "[") || !strings.HasSuffix(t, "]") {
		return "", false
	}
	return strings.ReplaceAll(t, " ", ""), true
}

// lineOf finds the line where a key is assigned in its table, or where its table
// opens; the first assignment of its last part anywhere if the tables do not match.
func lineOf(data []byte, key toml.Key) int {
	last := key[len(key)-1]
	want := strings.Join(key[:len(key)-1], ".")
	table, first := "", 0
	for i, line := range strings.Split(string(data), "\n") {
		if h, ok := tableHeader(line); ok {
			name := strings.Trim(h, "[]")
			if name == key.String() {
				return i + 1
			}
			table = name
			continue
		}
		t := strings.TrimSpace(line)
		t = strings.Trim(t, `"`) // a quoted key
		if !strings.HasPrefix(t, last) {
			continue
		}
		rest := strings.TrimSpace(strings.TrimLeft(strings.TrimPrefix(t, last), `"`))
		if !strings.HasPrefix(rest, "=") {
			continue
		}
		if table == want {
			return i + 1
		}
		if first == 0 {
			first = i + 1
		}
	}
	return first
}

// suggest names the known key a typo was probably meant to be.
func suggest(key toml.Key) string {
	known := map[string][]string{
		"":         {"state_dir", "log_format", "log_level", "drain_timeout", "listener", "ring", "forward", "servers", "tail", "logs", "admin"},
		"listener": tomlKeys(proxy.ListenerConfig{}),
		"ring":     tomlKeys(proxy.RingConfig{}),
		"forward":  tomlKeys(balance.Config{}),
		"servers":  tomlKeys(balance.UpstreamConfig{}),
		"tail":     tomlKeys(tail.Config{}),
		"logs":     tomlKeys(tail.TargetConfig{}),
		"admin":    tomlKeys(admin.Config{}),
	}
	table := ""
	if len(key) > 1 {
		table = key[0]
	}
	last := key[len(key)-1]
	best, bestD := "", 3
	for _, k := range known[table] {
		if d := editDistance(last, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// defaults fills every zero field the way the components would.
func (c *Config) defaults() {
	if c.StateDir == "" {
		c.StateDir = "./fwdmux-state"
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = conf.Duration(30 * time.Second)
	}
	c.Listener = c.Listener.WithDefaults()
	c.Ring = c.Ring.WithDefaults()
	c.Forward = c.Forward.WithDefaults()
	for i := range c.Servers {
		if c.Servers[i].ID == "" {
			// The same id the admin API would give it: URL-safe, stable across restarts.
			c.Servers[i].ID = admin.ServerID(admin.ServerSpec{Address: strings.TrimSpace(c.Servers[i].Address)})
		}
		c.Servers[i] = c.Servers[i].WithDefaults()
	}
	c.Tail = c.Tail.WithDefaults()
	if c.Tail.PositionFile == "" {
		c.Tail.PositionFile = filepath.Join(c.StateDir, "positions.json")
	}
	for i := range c.Logs {
		c.Logs[i] = c.Logs[i].WithDefaults()
	}
	if c.Admin.StateDir == "" {
		c.Admin.StateDir = c.StateDir
	}
	c.Admin = c.Admin.WithDefaults()
}

// validate names the bad key with its table, e.g. servers[1].weight.
func (c *Config) validate() error {
	fe := func(prefix string, err error) error {
		if err == nil {
			return nil
		}
		var f *conf.FieldError
		if errors.As(err, &f) {
			key := f.Field
			if prefix != "" {
				key = prefix + "." + f.Field
			}
			return &ConfigError{Key: key, Msg: f.Reason}
		}
		return &ConfigError{Key: prefix, Msg: err.Error()}
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return &ConfigError{Key: "log_format", Msg: fmt.Sprintf("%q: want text or json", c.LogFormat)}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return &ConfigError{Key: "log_level", Msg: fmt.Sprintf("%q: want debug, info, warn or error", c.LogLevel)}
	}
	if c.DrainTimeout < 0 {
		return &ConfigError{Key: "drain_timeout", Msg: "must be >= 0"}
	}
	lc := c.Listener
	if lc.Addr == listenOff {
		// "off" disables the listener; the rest of its table must still be sound.
		lc.Addr = "127.0.0.1:0"
	}
	if err := fe("listener", lc.Validate()); err != nil {
		return err
	}
	if err := fe("ring", c.Ring.Validate()); err != nil {
		return err
	}
	if err := fe("forward", c.Forward.Validate()); err != nil {
		return err
	}
	ids := map[string]bool{}
	for i, s := range c.Servers {
		p := fmt.Sprintf("servers[%d]", i)
		if err := fe(p, s.Validate()); err != nil {
			return err
		}
		if ids[s.ID] {
			return &ConfigError{Key: p + ".id", Msg: fmt.Sprintf("duplicate upstream id %q (set id to tell them apart)", s.ID)}
		}
		ids[s.ID] = true
	}
	if err := fe("tail", c.Tail.Validate()); err != nil {
		return err
	}
	ids = map[string]bool{}
	for i, l := range c.Logs {
		p := fmt.Sprintf("logs[%d]", i)
		if err := fe(p, l.Validate()); err != nil {
			return err
		}
		if ids[l.ID] {
			return &ConfigError{Key: p + ".id", Msg: fmt.Sprintf("duplicate log id %q", l.ID)}
		}
		ids[l.ID] = true
	}
	return fe("admin", c.Admin.Validate())
}

// applyEnv overlays FWDMUX_* variables (env overrides the file).
func (c *Config) applyEnv(lookupEnv func(string) (string, bool)) error {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	if v := getenv("FWDMUX_LISTEN"); v != "" {
		c.Listener.Addr = v
	}
	if v, ok := lookupEnv("FWDMUX_ADMIN"); ok {
		c.Admin.Listen = adminAddr(v)
	}
	if v := getenv("FWDMUX_SERVERS"); v != "" {
		c.Servers = serversFrom(splitList(v))
	}
	if v := getenv("FWDMUX_LOGS"); v != "" {
		logs, err := logsFrom(splitList(v), "FWDMUX_LOGS")
		if err != nil {
			return err
		}
		c.Logs = logs
	}
	if v := getenv("FWDMUX_STATE_DIR"); v != "" {
		c.StateDir = v
	}
	if v := getenv("FWDMUX_ADMIN_TOKEN"); v != "" {
		c.Admin.Token = v
	}
	if v := getenv("FWDMUX_SHARED_KEY"); v != "" {
		c.Listener.SharedKey = v
	}
	return nil
}

func adminAddr(v string) string {
	if v == "" || strings.EqualFold(v, "off") {
		return admin.ListenOff
	}
	return v
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func serversFrom(addrs []string) []balance.UpstreamConfig {
	out := make([]balance.UpstreamConfig, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, balance.UpstreamConfig{Address: a})
	}
	return out
}

func logsFrom(specs []string, origin string) ([]tail.TargetConfig, error) {
	out := make([]tail.TargetConfig, 0, len(specs))
	for _, s := range specs {
		tag, path, ok := strings.Cut(s, "=")
		if !ok || tag == "" || path == "" {
			return nil, &ConfigError{Key: origin, Msg: fmt.Sprintf("%q: want TAG=PATH", s)}
		}
		out = append(out, tail.TargetConfig{Tag: tag, Path: path})
	}
	return out, nil
}

// applyFlags overlays command-line flags (flags override env).
func (c *Config) applyFlags(o options) error {
	if o.listen != "" {
		c.Listener.Addr = o.listen
	}
	if o.adminSet {
		c.Admin.Listen = adminAddr(o.admin)
	}
	if len(o.servers) > 0 {
		c.Servers = serversFrom(o.servers)
	}
	if len(o.logs) > 0 {
		logs, err := logsFrom(o.logs, "-log")
		if err != nil {
			return err
		}
		c.Logs = logs
	}
	if o.stateDir != "" {
		c.StateDir = o.stateDir
	}
	if o.logFormat != "" {
		c.LogFormat = o.logFormat
	}
	if o.logLevel != "" {
		c.LogLevel = o.logLevel
	}
	return nil
}

// buildConfig composes file, environment and flags, then defaults and validates.
func buildConfig(o options, lookupEnv func(string) (string, bool)) (Config, error) {
	var c Config
	if o.config != "" {
		var err error
		if c, err = loadFile(o.config); err != nil {
			return Config{}, err
		}
	}
	if err := c.applyEnv(lookupEnv); err != nil {
		return Config{}, err
	}
	if err := c.applyFlags(o); err != nil {
		return Config{}, err
	}
	c.defaults()
	if err := c.validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && o.config != "" && ce.File == "" {
			ce.File = o.config
			if !c.hydra {
				ce.Line = lineOfValidated(o.config, ce.Key)
			}
		}
		return Config{}, err
	}
	return c, nil
}

// tomlKeys lists the toml tags of a struct's fields (embedded structs flattened).
func tomlKeys(v any) []string {
	return slices.Sorted(slices.Values(structTags(v)))
}

// lineOfValidated finds the line of a key validate named ("servers[1].weight",
// "listener.addr") in the file, or 0 when the value came from a default, the
// environment or a flag.
func lineOfValidated(path, key string) int {
	data, err := os.ReadFile(path)
	if err != nil || key == "" {
		return 0
	}
	m := validatedKeyRE.FindStringSubmatch(key)
	if m == nil {
		return 0
	}
	table, idx, field := m[1], -1, m[3]
	if m[2] != "" {
		idx, _ = strconv.Atoi(m[2])
	}
	if table == "" { // a top-level key
		table, field = field, ""
		if i := strings.Index(table, "."); i >= 0 {
			table, field = table[:i], table[i+1:]
		}
		if field == "" {
			return lineOf(data, toml.Key{table})
		}
	}
	if i := strings.IndexAny(field, ".["); i >= 0 { // types.x, allow_paths[0]
		field = field[:i]
	}
	cur, n := "", -1
	for i, l := range strings.Split(string(data), "\n") {
		if h, ok := tableHeader(l); ok {
			cur = strings.Trim(h, "[]")
			if h == "[["+table+"]]" {
				n++
			}
			continue
		}
		if cur != table || (idx >= 0 && n != idx) {
			continue
		}
		t := strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(t, field); ok && strings.HasPrefix(strings.TrimSpace(rest), "=") {
			return i + 1
		}
	}
	return 0
}

// validatedKeyRE splits "servers[1].weight" into servers, 1, weight and "listener.addr"
// into listener, "", addr; a bare "log_level" lands in the third group.
var validatedKeyRE = regexp.MustCompile(`^(?:([a-z_]+)(?:\[(\d+)\])?\.)?([a-z_][a-z_.\[\]0-9]*)$`)
