package admin

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
)

// DefaultListen is the API's default address.
const DefaultListen = "127.0.0.1:24223"

// ListenOff disables the API.
const ListenOff = "off"

// Config configures the admin API.
type Config struct {
	// Listen is the API's TCP address (default "127.0.0.1:24223"; "off" disables the API.
	// A flag or variable given as "" should be passed as "off": the zero value means
	// the default here).
	Listen string `toml:"listen" json:"listen"`
	// Token, when set, is required as "Authorization: Bearer <token>" on every
	// mutating request (POST, DELETE). Default none.
	Token string `toml:"token" json:"token"`
	// AllowInsecureRemote permits a non-loopback Listen without a Token (default false:
	// such a config is refused).
	AllowInsecureRemote bool `toml:"allow_insecure_remote" json:"allow_insecure_remote"`
	// AllowPaths are the absolute paths or globs POST /logs may tail; "dir/**" allows a
	// whole tree (default ["/var/log/**"]; the directories of the configured targets,
	// Deps.ConfigPaths, are always allowed too).
	AllowPaths []string `toml:"allow_paths" json:"allow_paths"`
	// StateDir holds runtime.json, the changes made through the API (default none:
	// changes last until restart; cmd passes -state-dir).
	StateDir string `toml:"state_dir" json:"state_dir"`
	// MaxBodyBytes bounds a request body (default 64 KiB); larger bodies get 413.
	MaxBodyBytes int64 `toml:"max_body_bytes" json:"max_body_bytes"`
	// ReadHeaderTimeout bounds reading the request headers (default 5s).
	ReadHeaderTimeout conf.Duration `toml:"read_header_timeout" json:"read_header_timeout"`
	// ReadTimeout bounds reading the whole request (default 10s).
	ReadTimeout conf.Duration `toml:"read_timeout" json:"read_timeout"`
	// WriteTimeout bounds writing the response (default 30s).
	WriteTimeout conf.Duration `toml:"write_timeout" json:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections (default 60s).
	IdleTimeout conf.Duration `toml:"idle_timeout" json:"idle_timeout"`
	// ShutdownTimeout bounds the graceful shutdown of open requests (default 5s).
	ShutdownTimeout conf.Duration `toml:"shutdown_timeout" json:"shutdown_timeout"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.AllowPaths == nil {
		c.AllowPaths = []string{"/var/log/**"}
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	def := func(d *conf.Duration, v time.Duration) {
		if *d == 0 {
			*d = conf.Duration(v)
		}
	}
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.ReadTimeout, 10*time.Second)
	def(&c.WriteTimeout, 30*time.Second)
	def(&c.IdleTimeout, 60*time.Second)
	def(&c.ShutdownTimeout, 5*time.Second)
	return c
}

// Enabled reports whether the API listens at all.
func (c Config) Enabled() bool { return c.Listen != ListenOff }

// Validate names the first bad field. Call it after WithDefaults.
func (c Config) Validate() error {
	if c.Enabled() {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return &conf.FieldError{Field: "listen", Reason: fmt.Sprintf("%q is not host:port (or \"off\")", c.Listen)}
		}
		if port == "" {
			return &conf.FieldError{Field: "listen", Reason: fmt.Sprintf("%q has no port", c.Listen)}
		}
		if c.Token == "" && !c.AllowInsecureRemote && !isLoopback(host) {
			return &conf.FieldError{Field: "listen", Reason: fmt.Sprintf(
				"refusing to serve the admin API on non-loopback address %q without a token: "+
					"set a token (admin token / FWDMUX_ADMIN_TOKEN), listen on 127.0.0.1, "+
					"or set allow_insecure_remote = true", c.Listen)}
		}
	}
	for i, p := range c.AllowPaths {
		if !filepath.IsAbs(p) {
			return &conf.FieldError{Field: fmt.Sprintf("allow_paths[%d]", i), Reason: fmt.Sprintf("%q is not an absolute path", p)}
		}
	}
	if c.MaxBodyBytes < 1024 {
		return &conf.FieldError{Field: "max_body_bytes", Reason: "must be at least 1024"}
	}
	for _, d := range []struct {
		name string
		v    conf.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"read_timeout", c.ReadTimeout},
		{"write_timeout", c.WriteTimeout},
		{"idle_timeout", c.IdleTimeout},
		{"shutdown_timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			return &conf.FieldError{Field: d.name, Reason: "must be > 0"}
		}
	}
	return nil
}

// isLoopback reports whether host only answers on the loopback interface. An empty
// host or a wildcard listens on every interface; other names are taken as remote.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
