package conf

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDurationTextRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"5s", 5 * time.Second, false},
		{"150ms", 150 * time.Millisecond, false},
		{"1m30s", 90 * time.Second, false},
		{"0", 0, false},
		{"5", 0, true},
		{"soon", 0, true},
	} {
		var d Duration
		err := d.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.err || d.D() != tc.want {
			t.Errorf("%q: got %v, %v; want %v, err=%v", tc.in, d, err, tc.want, tc.err)
		}
	}
	var v struct {
		D Duration `toml:"d" json:"d"`
	}
	if _, err := toml.Decode(`d = "2s"`, &v); err != nil || v.D.D() != 2*time.Second {
		t.Fatalf("toml: %v %v", v.D, err)
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"d":"2s"}` {
		t.Fatalf("json: %s %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"x"}`), &v); err == nil {
		t.Fatal("json accepted a bad duration")
	}
}

func TestPrefixNamesTheNestedField(t *testing.T) {
	err := Prefix("servers[1]", &FieldError{Field: "weight", Reason: "must be 1..1000"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "servers[1].weight" || err.Error() != "servers[1].weight: must be 1..1000" {
		t.Fatalf("got %v", err)
	}
	other := errors.New("boom")
	if err := Prefix("tail", other); !errors.Is(err, other) || err.Error() != "tail: boom" {
		t.Fatalf("got %v", err)
	}
	if Prefix("x", nil) != nil {
		t.Fatal("nil not kept")
	}
}
