package admin

import (
	"errors"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/proxy"
)

// Sentinels the component adapters wrap so the API can pick the status.
var (
	// ErrNotFound: no target or upstream has that id (404).
	ErrNotFound = errors.New("not found")
	// ErrDuplicate: a target or upstream with that id (or the same identity) exists (409).
	ErrDuplicate = errors.New("already exists")
)

// Where an item comes from, as GET shows it.
const (
	SourceConfig = "config" // the config file, flags or environment
	SourceAPI    = "api"    // added at runtime through this API
)

// Output modes reported in Snapshot.Output.
const (
	OutputForward = "forward"
	OutputStdout  = "stdout"
)

// Targets is the tail manager as the API sees it. The admin package owns the ids'
// source bookkeeping: implementations need not fill LogStatus.Source.
type Targets interface {
	// List returns every running target.
	List() []LogStatus
	// Get returns the target with that id.
	Get(id string) (LogStatus, bool)
	// Add starts a target. spec.ID is always set (the API assigns one when the client
	// did not) and spec.Path has passed the allow-list. It may return a
	// *conf.FieldError (400 naming that field) or an error wrapping ErrDuplicate (409).
	Add(spec LogSpec) (LogStatus, error)
	// Remove stops the target after committing its position. An error wrapping
	// ErrNotFound means 404.
	Remove(id string) error
}

// Servers is the upstream pool as the API sees it.
type Servers interface {
	// List returns every upstream.
	List() []ServerStatus
	// Get returns the upstream with that id.
	Get(id string) (ServerStatus, bool)
	// Add connects a new upstream. spec.ID is set, spec.Weight is in 1..1000 and
	// spec.RequireAck is non-nil. Errors as for Targets.Add.
	Add(spec ServerSpec) (ServerStatus, error)
	// Remove takes the upstream out of rotation and hands its in-flight chunks to the
	// others; nothing is lost. An error wrapping ErrNotFound means 404.
	Remove(id string) error
}

// Stats returns the process-wide counters. Snapshot is called once per /stats, /, and
// /metrics request (and by /ready when no Readiness is given), so it must be cheap and
// safe for concurrent use.
type Stats interface {
	Snapshot() Snapshot
}

// Readiness answers /ready. ok=false carries a human-readable reason.
type Readiness interface {
	Ready() (ok bool, reason string)
}

// LogSpec is one tail target, as in the config file and the POST /logs body.
type LogSpec struct {
	// ID names the target in /logs/{id}; assigned by the API when empty (see LogID).
	ID string `json:"id,omitempty"`
	// Path is an absolute file path or glob (required).
	Path string `json:"path"`
	// Tag is the Fluentd tag of the events (required).
	Tag string `json:"tag"`
	// Exclude lists globs of files the target skips.
	Exclude []string `json:"exclude,omitempty"`
	// Format is none (default), ltsv, json, regexp, apache, nginx or syslog.
	Format string `json:"format,omitempty"`
	// Regexp is the pattern with named groups for format "regexp".
	Regexp string `json:"regexp,omitempty"`
	// MessageKey is the record key of the line for format "none".
	MessageKey string `json:"message_key,omitempty"`
	// TimeKey is the record key that holds the event time.
	TimeKey string `json:"time_key,omitempty"`
	// TimeFormat parses TimeKey (Go layout or strftime, as the tail package reads it).
	TimeFormat string `json:"time_format,omitempty"`
	// KeepTimeKey keeps TimeKey in the record.
	KeepTimeKey bool `json:"keep_time_key,omitempty"`
	// Types converts record values: key -> "integer", "float" or "bool".
	Types map[string]string `json:"types,omitempty"`
	// MultilineStart is the regexp that starts a new event; other lines are appended.
	MultilineStart string `json:"multiline_start,omitempty"`
	// MultilineTimeout flushes a pending multiline event after this long.
	MultilineTimeout conf.Duration `json:"multiline_timeout,omitzero"`
	// ReadFromHead reads new files from the start instead of the end.
	ReadFromHead bool `json:"read_from_head,omitempty"`
	// RotateWait keeps reading a rotated file for this long.
	RotateWait conf.Duration `json:"rotate_wait,omitzero"`
	// MaxLineBytes truncates longer lines.
	MaxLineBytes int `json:"max_line_bytes,omitempty"`
	// KeepInvalidUTF8 passes invalid UTF-8 through instead of replacing it.
	KeepInvalidUTF8 bool `json:"keep_invalid_utf8,omitempty"`
}

// LogStatus is a target as GET /logs shows it.
type LogStatus struct {
	LogSpec
	// Source is SourceConfig or SourceAPI; set by the admin package.
	Source string `json:"source"`
	// Files are the files the target follows now.
	Files []FileStatus `json:"files"`
}

// FileStatus is one followed file.
type FileStatus struct {
	Path            string `json:"path"`
	TargetID        string `json:"target_id,omitempty"`
	Tag             string `json:"tag,omitempty"`
	Inode           uint64 `json:"inode"`
	ReadOffset      int64  `json:"read_offset"`
	CommittedOffset int64  `json:"committed_offset"`
	Size            int64  `json:"size"`
	LagBytes        int64  `json:"lag_bytes"`
	Lines           int64  `json:"lines"`
	Bytes           int64  `json:"bytes"`
	ParseErrors     int64  `json:"parse_errors"`
	TruncatedLines  int64  `json:"truncated_lines"`
	// LastRead is when the file last yielded bytes; nil before the first read.
	LastRead *time.Time `json:"last_read"`
	// LastError is the last error reading the file, empty if none.
	LastError string `json:"last_error,omitempty"`
}

// ServerSpec is one upstream, as in the config file and the POST /servers body.
type ServerSpec struct {
	// ID names the upstream in /servers/{id}; assigned by the API when empty (see ServerID).
	ID string `json:"id,omitempty"`
	// Address is "host:port" or "tls://host:port" (required).
	Address string `json:"address"`
	// Weight is the relative share of chunks, 1..1000 (default 1).
	Weight int `json:"weight,omitempty"`
	// Standby upstreams get chunks only when no primary is eligible.
	Standby bool `json:"standby,omitempty"`
	// TLSCAFile verifies the upstream's certificate against this CA bundle.
	TLSCAFile string `json:"tls_ca_file,omitempty"`
	// TLSInsecureSkipVerify disables certificate verification.
	TLSInsecureSkipVerify bool `json:"tls_insecure_skip_verify,omitempty"`
	// TLSServerName overrides the name checked in the certificate.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// SharedKey enables the HELO/PING/PONG handshake. Write-only.
	SharedKey string `json:"shared_key,omitempty"`
	// SelfHostname is sent in PING.
	SelfHostname string `json:"self_hostname,omitempty"`
	// Username for user authentication in the handshake.
	Username string `json:"username,omitempty"`
	// Password for user authentication in the handshake. Write-only.
	Password string `json:"password,omitempty"`
	// TimeAsInteger sends event times as integer seconds instead of EventTime.
	TimeAsInteger bool `json:"time_as_integer,omitempty"`
	// Heartbeat is "tcp", "udp" or "none" (empty: the pool's default).
	Heartbeat string `json:"heartbeat,omitempty"`
	// HeartbeatInterval overrides the pool's heartbeat interval.
	HeartbeatInterval conf.Duration `json:"heartbeat_interval,omitzero"`
	// RequireAck asks the upstream to ack every chunk (default true). Never nil once
	// the API hands the spec to Servers.Add.
	RequireAck *bool `json:"require_ack,omitempty"`
}

// AckRequired returns RequireAck with its default (true) applied.
func (s ServerSpec) AckRequired() bool { return s.RequireAck == nil || *s.RequireAck }

// Breaker states reported in ServerStatus.Breaker.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// ServerStatus is an upstream as GET /servers shows it: the spec without its secrets,
// plus live state.
type ServerStatus struct {
	ID                    string        `json:"id"`
	Address               string        `json:"address"`
	Weight                int           `json:"weight"`
	Standby               bool          `json:"standby"`
	TLSCAFile             string        `json:"tls_ca_file,omitempty"`
	TLSInsecureSkipVerify bool          `json:"tls_insecure_skip_verify,omitempty"`
	TLSServerName         string        `json:"tls_server_name,omitempty"`
	SharedKeySet          bool          `json:"shared_key_set"`
	SelfHostname          string        `json:"self_hostname,omitempty"`
	Username              string        `json:"username,omitempty"`
	PasswordSet           bool          `json:"password_set"`
	TimeAsInteger         bool          `json:"time_as_integer"`
	Heartbeat             string        `json:"heartbeat,omitempty"`
	HeartbeatInterval     conf.Duration `json:"heartbeat_interval,omitzero"`
	RequireAck            bool          `json:"require_ack"`

	// Source is SourceConfig or SourceAPI; set by the admin package.
	Source string `json:"source"`
	// Eligible: the upstream may be picked for the next chunk (breaker not open, phi
	// under the threshold, not removed).
	Eligible bool `json:"eligible"`
	// Phi is the accrual failure detector's current value.
	Phi float64 `json:"phi"`
	// Breaker is BreakerClosed, BreakerHalfOpen or BreakerOpen.
	Breaker        string `json:"breaker"`
	InFlightChunks int64  `json:"in_flight_chunks"`
	SentChunks     int64  `json:"sent_chunks"`
	SentEvents     int64  `json:"sent_events"`
	SentBytes      int64  `json:"sent_bytes"`
	Acks           int64  `json:"acks"`
	Retries        int64  `json:"retries"`
	LastError      string `json:"last_error"`
	// LastErrorTime is nil when there was no error.
	LastErrorTime *time.Time `json:"last_error_time"`
	LastRTTMillis float64    `json:"last_rtt_ms"`
}

// StatusFromSpec fills the spec part of a ServerStatus (secrets become *_set flags);
// adapters add the live fields.
func StatusFromSpec(spec ServerSpec) ServerStatus {
	w := spec.Weight
	if w == 0 {
		w = 1
	}
	return ServerStatus{
		ID:                    spec.ID,
		Address:               spec.Address,
		Weight:                w,
		Standby:               spec.Standby,
		TLSCAFile:             spec.TLSCAFile,
		TLSInsecureSkipVerify: spec.TLSInsecureSkipVerify,
		TLSServerName:         spec.TLSServerName,
		SharedKeySet:          spec.SharedKey != "",
		SelfHostname:          spec.SelfHostname,
		Username:              spec.Username,
		PasswordSet:           spec.Password != "",
		TimeAsInteger:         spec.TimeAsInteger,
		Heartbeat:             spec.Heartbeat,
		HeartbeatInterval:     spec.HeartbeatInterval,
		RequireAck:            spec.AckRequired(),
		Breaker:               BreakerClosed,
	}
}

// ReceiverStats counts the forward listener's work.
type ReceiverStats struct {
	Address           string `json:"address"`
	Connections       int64  `json:"connections"`        // accepted since start
	ActiveConnections int64  `json:"active_connections"` // open now
	Events            int64  `json:"events"`
	Bytes             int64  `json:"bytes"`
	Frames            int64  `json:"frames"`
	Acks              int64  `json:"acks"`
	// Errors counts closed connections by reason ("frame_too_large", "handshake", ...).
	Errors map[string]int64 `json:"errors"`
}

// SentStats counts what was acked upstream (or printed) for one tag.
type SentStats struct {
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
	Chunks int64 `json:"chunks"`
}

// Snapshot is everything /stats, / and /metrics show, copied at one moment.
type Snapshot struct {
	Receiver  ReceiverStats        `json:"receiver"`
	Ring      proxy.RingStats      `json:"ring"`
	Servers   []ServerStatus       `json:"servers"`
	Files     []FileStatus         `json:"files"`
	Sent      map[string]SentStats `json:"sent"`
	StartTime time.Time            `json:"start_time"`
	// Output is OutputForward or OutputStdout.
	Output string `json:"output"`
	// UptimeSeconds is filled by the admin package from StartTime.
	UptimeSeconds float64 `json:"uptime_seconds"`
}
