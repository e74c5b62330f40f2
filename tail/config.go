package tail

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/fwdmux/fwdmux/internal/conf"
)

// Formats a target accepts. The presets are regexp formats with a time layout and types.
const (
	FormatNone   = "none"
	FormatLTSV   = "ltsv"
	FormatJSON   = "json"
	FormatRegexp = "regexp"
	FormatApache = "apache"
	FormatNginx  = "nginx"
	FormatSyslog = "syslog"
)

// Defaults, written once so the docs and WithDefaults agree.
const (
	DefaultMessageKey       = "message"
	DefaultRotateWait       = 5 * time.Second
	DefaultMaxLineBytes     = 1 << 20
	DefaultMultilineTimeout = time.Second
	DefaultPollInterval     = time.Second
	DefaultReadInterval     = 50 * time.Millisecond
	DefaultChunkBytes       = 1 << 20
	DefaultChunkAge         = 100 * time.Millisecond
	DefaultSaveEvery        = time.Second
)

// TargetConfig is one tail target: a path or glob, the tag its records get, and how its
// lines become records.
type TargetConfig struct {
	// ID names the target in the admin API and the position file (default: the tag and a
	// hash of tag and path, stable across restarts).
	ID string `toml:"id" json:"id"`
	// Path is a file or a glob (*, ?, [..], {a,b}, ** for any depth). Required.
	Path string `toml:"path" json:"path"`
	// Tag is the records' tag. Required. A '*' is replaced by the file path with '/'
	// turned into '.' and the leading dot trimmed, as fluentd's `tag app.*`.
	Tag string `toml:"tag" json:"tag"`
	// Exclude skips matching files: a glob on the full path, or on the base name when it
	// has no '/'.
	Exclude string `toml:"exclude" json:"exclude"`
	// Format is none (default), ltsv, json, regexp, or the presets apache, nginx, syslog.
	Format string `toml:"format" json:"format"`
	// Regexp has named groups ((?P<name>..) or (?<name>..)); required for format regexp.
	Regexp string `toml:"regexp" json:"regexp"`
	// MessageKey holds the line for format none and for lines that fail to parse
	// (default "message").
	MessageKey string `toml:"message_key" json:"message_key"`
	// TimeKey takes the event time from this field (default none: the read time; "time"
	// for the presets).
	TimeKey string `toml:"time_key" json:"time_key"`
	// TimeFormat is a Go layout or one of unix, apache, nginx, syslog, rfc3339 (default:
	// unix for numbers, rfc3339 for strings; the preset's layout for presets).
	TimeFormat string `toml:"time_format" json:"time_format"`
	// KeepTimeKey keeps the time field in the record (default false: it is removed).
	KeepTimeKey bool `toml:"keep_time_key" json:"keep_time_key"`
	// Types converts fields: field -> integer | float | bool, as fluent-agent-hydra's Types.
	Types map[string]string `toml:"types" json:"types"`
	// MultilineStart starts a record; lines that do not match it are joined to the
	// previous record with "\n" (stack traces).
	MultilineStart string `toml:"multiline_start" json:"multiline_start"`
	// MultilineTimeout flushes a pending multiline record after this idle time (default 1s).
	MultilineTimeout conf.Duration `toml:"multiline_timeout" json:"multiline_timeout"`
	// ReadFromHead reads files found at the target's first start from the beginning
	// (default false; files created later, or after a restart, are always read from
	// the beginning).
	ReadFromHead *bool `toml:"read_from_head" json:"read_from_head"`
	// RotateWait keeps reading a file renamed away for this long (default 5s).
	RotateWait conf.Duration `toml:"rotate_wait" json:"rotate_wait"`
	// MaxLineBytes truncates longer lines; they are counted (default 1 MiB).
	MaxLineBytes int `toml:"max_line_bytes" json:"max_line_bytes"`
	// KeepInvalidUTF8 sends invalid UTF-8 as is (default false: replaced by U+FFFD).
	KeepInvalidUTF8 bool `toml:"keep_invalid_utf8" json:"keep_invalid_utf8"`
	// PathKey adds the file path to every record under this key (default none).
	PathKey string `toml:"path_key" json:"path_key"`
}

// WithDefaults fills zero fields.
func (t TargetConfig) WithDefaults() TargetConfig {
	if t.Format == "" {
		t.Format = FormatNone
	}
	t.Format = strings.ToLower(t.Format)
	if t.MessageKey == "" {
		t.MessageKey = DefaultMessageKey
	}
	if p, ok := presets[t.Format]; ok {
		if t.TimeKey == "" {
			t.TimeKey = "time"
		}
		if t.TimeFormat == "" {
			t.TimeFormat = p.timeFormat
		}
		if len(p.types) > 0 {
			types := make(map[string]string, len(p.types)+len(t.Types))
			for k, v := range p.types {
				types[k] = v
			}
			for k, v := range t.Types { // the user's types win
				types[k] = v
			}
			t.Types = types
		}
	}
	if t.MultilineTimeout == 0 {
		t.MultilineTimeout = conf.Duration(DefaultMultilineTimeout)
	}
	if t.RotateWait == 0 {
		t.RotateWait = conf.Duration(DefaultRotateWait)
	}
	if t.MaxLineBytes == 0 {
		t.MaxLineBytes = DefaultMaxLineBytes
	}
	if t.ID == "" && t.Path != "" && t.Tag != "" {
		t.ID = defaultID(t.Tag, t.Path)
	}
	return t
}

// defaultID is stable across restarts (the position file remembers targets by id) and
// safe in a URL path.
func defaultID(tag, path string) string {
	h := fnv.New32a()
	h.Write([]byte(tag))
	h.Write([]byte{0})
	h.Write([]byte(path))
	var b strings.Builder
	for _, r := range tag {
		if isIDRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("%s-%08x", b.String(), h.Sum32())
}

func isIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// Validate names the first bad field. Call it after WithDefaults.
func (t TargetConfig) Validate() error {
	if t.ID != "" {
		for _, r := range t.ID {
			if !isIDRune(r) {
				return &conf.FieldError{Field: "id", Reason: fmt.Sprintf("%q: only letters, digits, '.', '_' and '-'", t.ID)}
			}
		}
	}
	if t.Path == "" {
		return &conf.FieldError{Field: "path", Reason: "required"}
	}
	if !doublestar.ValidatePathPattern(t.Path) {
		return &conf.FieldError{Field: "path", Reason: fmt.Sprintf("%q is not a valid glob", t.Path)}
	}
	if t.Tag == "" {
		return &conf.FieldError{Field: "tag", Reason: "required"}
	}
	if t.Exclude != "" && !doublestar.ValidatePathPattern(t.Exclude) {
		return &conf.FieldError{Field: "exclude", Reason: fmt.Sprintf("%q is not a valid glob", t.Exclude)}
	}
	switch t.Format {
	case FormatNone, FormatLTSV, FormatJSON, FormatApache, FormatNginx, FormatSyslog, "":
		if t.Regexp != "" {
			return &conf.FieldError{Field: "regexp", Reason: "only with format regexp"}
		}
	case FormatRegexp:
		if t.Regexp == "" {
			return &conf.FieldError{Field: "regexp", Reason: "required with format regexp"}
		}
		re, err := regexp.Compile(t.Regexp)
		if err != nil {
			return &conf.FieldError{Field: "regexp", Reason: err.Error()}
		}
		named := false
		for _, n := range re.SubexpNames() {
			named = named || n != ""
		}
		if !named {
			return &conf.FieldError{Field: "regexp", Reason: "needs at least one named group (?P<name>...)"}
		}
	default:
		return &conf.FieldError{Field: "format", Reason: fmt.Sprintf("%q is not one of none, ltsv, json, regexp, apache, nginx, syslog", t.Format)}
	}
	if t.MessageKey == "" {
		return &conf.FieldError{Field: "message_key", Reason: "must not be empty"}
	}
	if t.TimeFormat != "" && t.TimeKey == "" {
		return &conf.FieldError{Field: "time_format", Reason: "needs time_key"}
	}
	if _, err := parseTimeFormat(t.TimeFormat); err != nil {
		return &conf.FieldError{Field: "time_format", Reason: err.Error()}
	}
	for k, v := range t.Types {
		if _, ok := typeNames[v]; !ok {
			return &conf.FieldError{Field: "types." + k, Reason: fmt.Sprintf("%q is not one of integer, float, bool", v)}
		}
	}
	if t.MultilineStart != "" {
		if _, err := regexp.Compile(t.MultilineStart); err != nil {
			return &conf.FieldError{Field: "multiline_start", Reason: err.Error()}
		}
	}
	if t.MultilineTimeout < 0 {
		return &conf.FieldError{Field: "multiline_timeout", Reason: "must be >= 0"}
	}
	if t.RotateWait < 0 {
		return &conf.FieldError{Field: "rotate_wait", Reason: "must be >= 0"}
	}
	if t.MaxLineBytes < 0 {
		return &conf.FieldError{Field: "max_line_bytes", Reason: "must be >= 0"}
	}
	return nil
}

// Config is the manager-wide configuration; targets are added with Manager.Add.
type Config struct {
	// PositionFile is where committed offsets are saved (the lead sets
	// <state-dir>/positions.json). Empty keeps positions in memory only.
	PositionFile string `toml:"position_file" json:"position_file"`
	// ReadInterval is how often a file that keeps changing is read (default 50ms). A
	// file that changes after being quiet is read at once; one that changes all the time
	// is read at most this often, so a writer that writes line by line costs one read and
	// one chunk per interval instead of one per line (batching from load). A negative
	// value ("-1ms") reads on every change.
	ReadInterval conf.Duration `toml:"read_interval" json:"read_interval"`
	// PollInterval is the stat-poll fallback for filesystems where change events do not
	// arrive, and the bound on picking up a new file (default 1s).
	PollInterval conf.Duration `toml:"poll_interval" json:"poll_interval"`
	// DisableFileEvents turns off directory events (inotify): every followed file is
	// then stat-polled every PollInterval. For filesystems whose events are unreliable
	// (network filesystems written from other hosts); it costs a stat per file per poll.
	DisableFileEvents bool `toml:"disable_file_events" json:"disable_file_events"`
	// ChunkBytes flushes a chunk at this size (default 1 MiB). A chunk is also flushed
	// the moment a file is read to its end.
	ChunkBytes int `toml:"chunk_bytes" json:"chunk_bytes"`
	// ChunkAge flushes a chunk this old while a file is still being read (default 100ms).
	ChunkAge conf.Duration `toml:"chunk_age" json:"chunk_age"`
	// SavePositionsEvery is how often changed positions are written (default 1s).
	SavePositionsEvery conf.Duration `toml:"save_positions_every" json:"save_positions_every"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.ReadInterval == 0 {
		c.ReadInterval = conf.Duration(DefaultReadInterval)
	}
	if c.PollInterval == 0 {
		c.PollInterval = conf.Duration(DefaultPollInterval)
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = DefaultChunkBytes
	}
	if c.ChunkAge == 0 {
		c.ChunkAge = conf.Duration(DefaultChunkAge)
	}
	if c.SavePositionsEvery == 0 {
		c.SavePositionsEvery = conf.Duration(DefaultSaveEvery)
	}
	return c
}

// Validate names the first bad field. Call it after WithDefaults.
func (c Config) Validate() error {
	if c.ReadInterval > conf.Duration(10*time.Second) {
		return &conf.FieldError{Field: "read_interval", Reason: "must be at most 10s (negative: read on every change)"}
	}
	if c.PollInterval < conf.Duration(10*time.Millisecond) {
		return &conf.FieldError{Field: "poll_interval", Reason: "must be at least 10ms"}
	}
	if c.ChunkBytes < 1024 {
		return &conf.FieldError{Field: "chunk_bytes", Reason: "must be at least 1024"}
	}
	if c.ChunkAge <= 0 {
		return &conf.FieldError{Field: "chunk_age", Reason: "must be > 0"}
	}
	if c.SavePositionsEvery < conf.Duration(10*time.Millisecond) {
		return &conf.FieldError{Field: "save_positions_every", Reason: "must be at least 10ms"}
	}
	return nil
}
