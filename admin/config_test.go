package admin

import (
	"errors"
	"strings"
	"testing"

	"github.com/fwdmux/fwdmux/internal/conf"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"defaults", Config{}, ""},
		{"off", Config{Listen: "off"}, ""},
		{"ipv6 loopback", Config{Listen: "[::1]:24223"}, ""},
		{"localhost", Config{Listen: "localhost:24223"}, ""},
		{"remote with token", Config{Listen: "0.0.0.0:24223", Token: "x"}, ""},
		{"remote allowed insecure", Config{Listen: ":24223", AllowInsecureRemote: true}, ""},
		{"remote without token", Config{Listen: "0.0.0.0:24223"}, "listen"},
		{"all interfaces without token", Config{Listen: ":24223"}, "listen"},
		{"hostname without token", Config{Listen: "admin.example:24223"}, "listen"},
		{"no port", Config{Listen: "127.0.0.1"}, "listen"},
		{"relative allow path", Config{AllowPaths: []string{"var/log/**"}}, "allow_paths[0]"},
		{"tiny body limit", Config{MaxBodyBytes: 10}, "max_body_bytes"},
		{"negative timeout", Config{ReadTimeout: -1}, "read_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			var fe *conf.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.field != "" && !errors.As(err, &fe):
				t.Fatalf("error %v, want a FieldError for %s", err, tt.field)
			case tt.field != "" && fe.Field != tt.field:
				t.Fatalf("field %q, want %q", fe.Field, tt.field)
			}
		})
	}
}

func TestNewRefusesInsecureRemote(t *testing.T) {
	_, err := New(Config{Listen: "0.0.0.0:24223"}, Deps{Targets: newFakeTargets(), Servers: newFakeServers(), Stats: &fakeStats{}}, nil)
	if err == nil || !strings.Contains(err.Error(), "without a token") || !strings.Contains(err.Error(), "allow_insecure_remote") {
		t.Fatalf("New: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Listen != DefaultListen || len(c.AllowPaths) != 1 || c.AllowPaths[0] != "/var/log/**" || c.MaxBodyBytes != 64<<10 {
		t.Fatalf("defaults: %+v", c)
	}
}
