// Package conf holds the small types every component's Config shares: a Duration that
// reads "5s" from TOML and JSON, and FieldError, which names the bad field.
package conf

import (
	"fmt"
	"time"
)

// Duration is a time.Duration that marshals as text ("1.5s", "100ms").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText parses Go duration syntax; a bare "0" is zero.
func (d *Duration) UnmarshalText(b []byte) error {
	if string(b) == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"500ms\", \"5s\", \"1m\")", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// FieldError names a configuration field and what is wrong with it.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Prefix returns err with its field prefixed by p ("servers[1]" + "address"); other
// errors are wrapped with p.
func Prefix(p string, err error) error {
	if err == nil {
		return nil
	}
	if fe, ok := err.(*FieldError); ok {
		return &FieldError{Field: p + "." + fe.Field, Reason: fe.Reason}
	}
	return fmt.Errorf("%s: %w", p, err)
}
