package balance

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
)

// Heartbeat types.
const (
	HeartbeatTCP  = "tcp"  // connect to the forward port and close (works with fluent-bit)
	HeartbeatUDP  = "udp"  // fluentd's UDP heartbeat: 0x00 to the same port over UDP, wait for a reply
	HeartbeatNone = "none" // no probes; the phi detector is disabled, only the breaker acts
)

// Breaker states reported in UpstreamStatus.Breaker.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// Sentinels for Add and Remove; test with errors.Is.
var (
	ErrDuplicate = errors.New("upstream already exists")
	ErrNotFound  = errors.New("upstream not found")
)

// tlsScheme prefixes an address that wants TLS.
const tlsScheme = "tls://"

// UpstreamConfig is one upstream Forward server.
type UpstreamConfig struct {
	// ID names the upstream in the admin API (default: Address).
	ID string `toml:"id" json:"id"`
	// Address is "host:port" or "tls://host:port" (required). The host name is
	// resolved again on every connect (fluentd#3083).
	Address string `toml:"address" json:"address"`
	// Weight is the relative share of chunks among eligible peers, 1..1000 (default 1).
	Weight int `toml:"weight" json:"weight"`
	// Standby upstreams get chunks only when no primary is eligible.
	Standby bool `toml:"standby" json:"standby"`
	// TLSCAFile verifies the upstream's certificate against this PEM bundle (default:
	// the system roots). Only with a tls:// address.
	TLSCAFile string `toml:"tls_ca_file" json:"tls_ca_file"`
	// TLSInsecureSkipVerify disables certificate verification (default false).
	TLSInsecureSkipVerify bool `toml:"tls_insecure_skip_verify" json:"tls_insecure_skip_verify"`
	// TLSServerName is the name checked in the certificate (default: the address's host).
	TLSServerName string `toml:"tls_server_name" json:"tls_server_name"`
	// SharedKey turns on the HELO/PING/PONG handshake (default: none).
	SharedKey string `toml:"shared_key" json:"shared_key"`
	// SelfHostname is our name in PING (default os.Hostname()).
	SelfHostname string `toml:"self_hostname" json:"self_hostname"`
	// Username and Password answer the server's user authentication (needs SharedKey).
	Username string `toml:"username" json:"username"`
	Password string `toml:"password" json:"password"`
	// TimeAsInteger rewrites event times as integer seconds for receivers that reject
	// EventTime (fluentd <= 0.12) (default false).
	TimeAsInteger bool `toml:"time_as_integer" json:"time_as_integer"`
	// Heartbeat is "tcp" (default: fluent-bit has no UDP responder), "udp" or "none".
	Heartbeat string `toml:"heartbeat" json:"heartbeat"`
	// HeartbeatInterval is the probe period feeding the phi detector (default 1s, as fluentd).
	HeartbeatInterval conf.Duration `toml:"heartbeat_interval" json:"heartbeat_interval"`
	// RequireAck sends each chunk with a chunk id and waits for its ack (default true).
	// false: a chunk counts as delivered once fully written (at-most-once on failure).
	RequireAck *bool `toml:"require_ack" json:"require_ack"`
}

// WithDefaults fills zero fields.
func (u UpstreamConfig) WithDefaults() UpstreamConfig {
	u.Address = strings.TrimSpace(u.Address)
	if u.ID == "" {
		u.ID = u.Address
	}
	if u.Weight == 0 {
		u.Weight = 1
	}
	if u.Heartbeat == "" {
		u.Heartbeat = HeartbeatTCP
	}
	if u.HeartbeatInterval == 0 {
		u.HeartbeatInterval = conf.Duration(time.Second)
	}
	if u.RequireAck == nil {
		t := true
		u.RequireAck = &t
	}
	if u.SelfHostname == "" {
		if h, err := os.Hostname(); err == nil {
			u.SelfHostname = h
		}
	}
	return u
}

// AckRequired reports RequireAck with its default (true) applied.
func (u UpstreamConfig) AckRequired() bool { return u.RequireAck == nil || *u.RequireAck }

// TLS reports whether the address asks for TLS.
func (u UpstreamConfig) TLS() bool { return strings.HasPrefix(u.Address, tlsScheme) }

// HostPort returns the address without its scheme.
func (u UpstreamConfig) HostPort() string { return strings.TrimPrefix(u.Address, tlsScheme) }

// Validate names the first bad field. Call it after WithDefaults.
func (u UpstreamConfig) Validate() error {
	if u.Address == "" {
		return &conf.FieldError{Field: "address", Reason: "is required"}
	}
	if strings.Contains(u.Address, "://") && !u.TLS() {
		return &conf.FieldError{Field: "address", Reason: fmt.Sprintf("%q: the only scheme is tls://", u.Address)}
	}
	host, port, err := net.SplitHostPort(u.HostPort())
	if err != nil {
		return &conf.FieldError{Field: "address", Reason: fmt.Sprintf("%q is not host:port", u.Address)}
	}
	if host == "" {
		return &conf.FieldError{Field: "address", Reason: fmt.Sprintf("%q has no host", u.Address)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return &conf.FieldError{Field: "address", Reason: fmt.Sprintf("port %q is not 1..65535", port)}
	}
	if u.ID == "" {
		return &conf.FieldError{Field: "id", Reason: "is required"}
	}
	if u.Weight < 1 || u.Weight > 1000 {
		return &conf.FieldError{Field: "weight", Reason: "must be 1..1000"}
	}
	if !u.TLS() {
		switch {
		case u.TLSCAFile != "":
			return &conf.FieldError{Field: "tls_ca_file", Reason: "needs a tls:// address"}
		case u.TLSInsecureSkipVerify:
			return &conf.FieldError{Field: "tls_insecure_skip_verify", Reason: "needs a tls:// address"}
		case u.TLSServerName != "":
			return &conf.FieldError{Field: "tls_server_name", Reason: "needs a tls:// address"}
		}
	}
	if u.TLSCAFile != "" {
		if _, err := os.Stat(u.TLSCAFile); err != nil {
			return &conf.FieldError{Field: "tls_ca_file", Reason: err.Error()}
		}
	}
	if (u.Username != "" || u.Password != "") && u.SharedKey == "" {
		return &conf.FieldError{Field: "username", Reason: "user authentication needs shared_key"}
	}
	switch u.Heartbeat {
	case HeartbeatTCP, HeartbeatUDP, HeartbeatNone:
	default:
		return &conf.FieldError{Field: "heartbeat", Reason: fmt.Sprintf("%q is not one of tcp, udp, none", u.Heartbeat)}
	}
	if u.HeartbeatInterval.D() < 10*time.Millisecond {
		return &conf.FieldError{Field: "heartbeat_interval", Reason: "must be at least 10ms"}
	}
	return nil
}

// Config is the pool-wide configuration.
type Config struct {
	// AckTimeout bounds the wait for a chunk's ack (and for writing it) (default 20s).
	// A healthy fluentd acks a chunk once it sits in its buffer: milliseconds, seconds
	// under GC or fsync pressure. fluentd's own 190s (the SYN retry total) would leave a
	// black-holed upstream holding chunks for minutes; 20s fails over while the ring
	// still has room, and stays clear of an aggregator's normal stalls.
	AckTimeout conf.Duration `toml:"ack_timeout" json:"ack_timeout"`
	// ConnectTimeout bounds dial + TLS + shared_key handshake (default 5s).
	ConnectTimeout conf.Duration `toml:"connect_timeout" json:"connect_timeout"`
	// MaxInFlight is the number of chunks sent and not yet acked per upstream
	// connection (default 8: 8 MiB of 1 MiB chunks keeps a 10 Gb/s link with a 5 ms
	// round trip busy).
	MaxInFlight int `toml:"max_in_flight" json:"max_in_flight"`
	// PhiThreshold marks an upstream down when its phi exceeds it (default 16, with
	// fluentd's formula: about 37s of silence with 1s heartbeats).
	PhiThreshold float64 `toml:"phi_threshold" json:"phi_threshold"`
	// RecoverWait is how long heartbeats must come back before an upstream the phi
	// detector took down is eligible again (default 10s, fluentd's recover_wait).
	RecoverWait conf.Duration `toml:"recover_wait" json:"recover_wait"`
	// BreakerFailures consecutive send/ack/connect failures open an upstream's breaker
	// (default 3).
	BreakerFailures int `toml:"breaker_failures" json:"breaker_failures"`
	// BreakerOpenTimeout is how long a breaker stays open before it lets one probe
	// chunk through (half-open) (default 5s).
	BreakerOpenTimeout conf.Duration `toml:"breaker_open_timeout" json:"breaker_open_timeout"`
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff between
	// connection attempts (defaults 100ms and 10s).
	ReconnectMin conf.Duration `toml:"reconnect_min" json:"reconnect_min"`
	ReconnectMax conf.Duration `toml:"reconnect_max" json:"reconnect_max"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.AckTimeout == 0 {
		c.AckTimeout = conf.Duration(20 * time.Second)
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = conf.Duration(5 * time.Second)
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 8
	}
	if c.PhiThreshold == 0 {
		c.PhiThreshold = 16
	}
	if c.RecoverWait == 0 {
		c.RecoverWait = conf.Duration(10 * time.Second)
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 3
	}
	if c.BreakerOpenTimeout == 0 {
		c.BreakerOpenTimeout = conf.Duration(5 * time.Second)
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = conf.Duration(100 * time.Millisecond)
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = conf.Duration(10 * time.Second)
	}
	return c
}

// Validate names the first bad field. Call it after WithDefaults.
func (c Config) Validate() error {
	switch {
	case c.AckTimeout.D() < time.Millisecond:
		return &conf.FieldError{Field: "ack_timeout", Reason: "must be at least 1ms"}
	case c.ConnectTimeout.D() < time.Millisecond:
		return &conf.FieldError{Field: "connect_timeout", Reason: "must be at least 1ms"}
	case c.MaxInFlight < 1 || c.MaxInFlight > 1024:
		return &conf.FieldError{Field: "max_in_flight", Reason: "must be 1..1024"}
	case !(c.PhiThreshold > 0):
		return &conf.FieldError{Field: "phi_threshold", Reason: "must be > 0"}
	case c.RecoverWait < 0:
		return &conf.FieldError{Field: "recover_wait", Reason: "must be >= 0"}
	case c.BreakerFailures < 1:
		return &conf.FieldError{Field: "breaker_failures", Reason: "must be >= 1"}
	case c.BreakerOpenTimeout.D() < time.Millisecond:
		return &conf.FieldError{Field: "breaker_open_timeout", Reason: "must be at least 1ms"}
	case c.ReconnectMin.D() < time.Millisecond:
		return &conf.FieldError{Field: "reconnect_min", Reason: "must be at least 1ms"}
	case c.ReconnectMax < c.ReconnectMin:
		return &conf.FieldError{Field: "reconnect_max", Reason: "must be >= reconnect_min"}
	}
	return nil
}
