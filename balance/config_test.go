package balance

import (
	"errors"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
)

func TestUpstreamConfigValidate(t *testing.T) {
	f := false
	tests := []struct {
		name  string
		u     UpstreamConfig
		field string
	}{
		{"ok", UpstreamConfig{Address: "a.example:24224"}, ""},
		{"ok tls", UpstreamConfig{Address: "tls://a.example:24224", TLSServerName: "b"}, ""},
		{"ok no ack", UpstreamConfig{Address: "a:1", RequireAck: &f, Heartbeat: "none"}, ""},
		{"missing address", UpstreamConfig{}, "address"},
		{"no port", UpstreamConfig{Address: "a.example"}, "address"},
		{"bad port", UpstreamConfig{Address: "a:99999"}, "address"},
		{"bad scheme", UpstreamConfig{Address: "udp://a:1"}, "address"},
		{"weight", UpstreamConfig{Address: "a:1", Weight: 1001}, "weight"},
		{"negative weight", UpstreamConfig{Address: "a:1", Weight: -1}, "weight"},
		{"ca without tls", UpstreamConfig{Address: "a:1", TLSCAFile: "/x"}, "tls_ca_file"},
		{"missing ca", UpstreamConfig{Address: "tls://a:1", TLSCAFile: "/nonexistent/ca.pem"}, "tls_ca_file"},
		{"user without key", UpstreamConfig{Address: "a:1", Username: "u"}, "username"},
		{"heartbeat", UpstreamConfig{Address: "a:1", Heartbeat: "icmp"}, "heartbeat"},
		{"heartbeat interval", UpstreamConfig{Address: "a:1", HeartbeatInterval: conf.Duration(time.Millisecond)}, "heartbeat_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.u.WithDefaults().Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("error %v, want a FieldError on %q", err, tt.field)
			}
		})
	}
}

func TestUpstreamDefaults(t *testing.T) {
	u := UpstreamConfig{Address: " h:1 "}.WithDefaults()
	if u.ID != "h:1" || u.Weight != 1 || u.Heartbeat != HeartbeatTCP || u.HeartbeatInterval.D() != time.Second || !u.AckRequired() {
		t.Fatalf("defaults: %+v", u)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c := Config{}.WithDefaults()
	if c.AckTimeout.D() != 20*time.Second || c.MaxInFlight != 8 || c.PhiThreshold != 16 || c.BreakerFailures != 3 {
		t.Fatalf("defaults: %+v", c)
	}
	bad := []struct {
		mut   func(*Config)
		field string
	}{
		{func(c *Config) { c.MaxInFlight = -1 }, "max_in_flight"},
		{func(c *Config) { c.PhiThreshold = -1 }, "phi_threshold"},
		{func(c *Config) { c.ReconnectMax = conf.Duration(time.Millisecond) }, "reconnect_max"},
		{func(c *Config) { c.BreakerFailures = -2 }, "breaker_failures"},
	}
	for _, b := range bad {
		c := Config{}.WithDefaults()
		b.mut(&c)
		var fe *conf.FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Field != b.field {
			t.Errorf("error %v, want FieldError on %s", err, b.field)
		}
	}
}
