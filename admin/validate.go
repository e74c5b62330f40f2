package admin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/fwdmux/fwdmux/internal/conf"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Limits on request fields, mirrored in openapi.yaml.
const (
	maxPathLen = 4096
	maxTagLen  = 512
	maxWeight  = 1000
)

// LogID is the id the API gives a target posted without one: "log-" and 8 hex digits of
// a hash of its tag and path, so posting the same target twice is a 409, not a second
// tailer. cmd may name config targets the same way.
func LogID(spec LogSpec) string {
	h := sha256.Sum256([]byte(spec.Tag + "\x00" + spec.Path))
	return "log-" + hex.EncodeToString(h[:4])
}

// ServerID is the id the API gives an upstream posted without one: "srv-" and 8 hex
// digits of a hash of its address.
func ServerID(spec ServerSpec) string {
	h := sha256.Sum256([]byte(spec.Address))
	return "srv-" + hex.EncodeToString(h[:4])
}

// decodeJSON reads the (size-limited) body into v, refusing unknown fields, trailing
// data and wrong types, with the field at fault named. durations lists the fields of v
// that are conf.Duration, whose parse errors encoding/json reports without a field.
func decodeJSON(r *http.Request, v any, durations ...string) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err // *http.MaxBytesError -> 413
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badBody("the request body is empty; send a JSON object", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, body, durations)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badBody("the request body must hold exactly one JSON object", nil)
	}
	return nil
}

var durationType = reflect.TypeFor[conf.Duration]()

func jsonError(err error, body []byte, durations []string) error {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute):
		if ute.Field == "" {
			return badBody(fmt.Sprintf("the body must be a JSON object, not %s", ute.Value), err)
		}
		return &apiError{status: http.StatusBadRequest, slug: "invalid-field", field: ute.Field,
			detail: fmt.Sprintf("must be %s, not %s", jsonTypeName(ute.Type), ute.Value), err: err}
	case errors.As(err, &se):
		return badBody(fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se), err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badBody("the JSON body is truncated", err)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if n, uerr := strconv.Unquote(name); uerr == nil {
			name = n
		}
		return &apiError{status: http.StatusBadRequest, slug: "unknown-field", field: name,
			detail: "is not a known field", err: err}
	}
	// A conf.Duration's UnmarshalText failed: find which field.
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) == nil {
		for _, name := range durations {
			if b, ok := raw[name]; ok {
				var d conf.Duration
				if derr := json.Unmarshal(b, &d); derr != nil {
					return &apiError{status: http.StatusBadRequest, slug: "invalid-field", field: name,
						detail: derr.Error(), err: derr}
				}
			}
		}
	}
	return badBody(err.Error(), err)
}

func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if t == durationType {
		return `a duration string such as "1s"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonTypeName(t.Elem())
	}
	return t.String()
}

var logFormats = []string{"none", "ltsv", "json", "regexp", "apache", "nginx", "syslog"}

var typeNames = []string{"integer", "float", "bool"}

func checkID(id string) error {
	if !idPattern.MatchString(id) {
		return badField("id", fmt.Sprintf("%q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", id))
	}
	return nil
}

// checkLogSpec validates spec, checks its path against the allow-list, cleans the path
// and assigns an id if it has none.
func (s *Server) checkLogSpec(spec *LogSpec) error {
	if spec.Path == "" {
		return badField("path", "is required")
	}
	if len(spec.Path) > maxPathLen {
		return badField("path", fmt.Sprintf("is longer than %d bytes", maxPathLen))
	}
	if err := checkTag(spec.Tag); err != nil {
		return err
	}
	clean, err := s.allow.check(spec.Path)
	if err != nil {
		return err
	}
	spec.Path = clean
	if spec.ID == "" {
		spec.ID = LogID(*spec)
	} else if err := checkID(spec.ID); err != nil {
		return err
	}
	for i, ex := range spec.Exclude {
		if _, err := filepath.Match(ex, ""); ex == "" || err != nil {
			return badField(fmt.Sprintf("exclude[%d]", i), fmt.Sprintf("%q is not a valid glob", ex))
		}
	}
	switch {
	case spec.Format == "" || slices.Contains(logFormats, spec.Format):
	default:
		return badField("format", fmt.Sprintf("%q is not one of %s", spec.Format, strings.Join(logFormats, ", ")))
	}
	if spec.Format == "regexp" && spec.Regexp == "" {
		return badField("regexp", `is required with format "regexp"`)
	}
	if spec.Regexp != "" {
		re, err := regexp.Compile(spec.Regexp)
		if err != nil {
			return badField("regexp", err.Error())
		}
		if spec.Format == "regexp" && !hasNamedGroup(re) {
			return badField("regexp", "has no named group (?P<name>...), so records would be empty")
		}
	}
	if spec.MultilineStart != "" {
		if _, err := regexp.Compile(spec.MultilineStart); err != nil {
			return badField("multiline_start", err.Error())
		}
	}
	for k, v := range spec.Types {
		if k == "" {
			return badField("types", "has an empty key")
		}
		if !slices.Contains(typeNames, v) {
			return badField("types."+k, fmt.Sprintf("%q is not one of %s", v, strings.Join(typeNames, ", ")))
		}
	}
	if spec.MultilineTimeout < 0 {
		return badField("multiline_timeout", "must not be negative")
	}
	if spec.RotateWait < 0 {
		return badField("rotate_wait", "must not be negative")
	}
	if spec.MaxLineBytes < 0 {
		return badField("max_line_bytes", "must not be negative")
	}
	return nil
}

func hasNamedGroup(re *regexp.Regexp) bool {
	for _, n := range re.SubexpNames() {
		if n != "" {
			return true
		}
	}
	return false
}

func checkTag(tag string) error {
	if tag == "" {
		return badField("tag", "is required")
	}
	if len(tag) > maxTagLen {
		return badField("tag", fmt.Sprintf("is longer than %d bytes", maxTagLen))
	}
	if strings.IndexFunc(tag, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return badField("tag", "must not contain spaces or control characters")
	}
	return nil
}

var heartbeats = []string{"tcp", "udp", "none"}

// checkServerSpec validates spec, applies the defaults (weight 1, require_ack true) and
// assigns an id if it has none.
func checkServerSpec(spec *ServerSpec) error {
	if spec.Address == "" {
		return badField("address", "is required")
	}
	hostport, isTLS := strings.CutPrefix(spec.Address, "tls://")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" || strings.Contains(hostport, "://") {
		return badField("address", fmt.Sprintf(`%q is not "host:port" or "tls://host:port"`, spec.Address))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return badField("address", fmt.Sprintf("%q has no valid port (1-65535)", spec.Address))
	}
	if spec.ID == "" {
		spec.ID = ServerID(*spec)
	} else if err := checkID(spec.ID); err != nil {
		return err
	}
	if spec.Weight == 0 {
		spec.Weight = 1
	}
	if spec.Weight < 1 || spec.Weight > maxWeight {
		return badField("weight", fmt.Sprintf("%d is not between 1 and %d", spec.Weight, maxWeight))
	}
	if !isTLS {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"tls_ca_file", spec.TLSCAFile != ""},
			{"tls_server_name", spec.TLSServerName != ""},
			{"tls_insecure_skip_verify", spec.TLSInsecureSkipVerify},
		} {
			if f.set {
				return badField(f.name, `needs a "tls://" address`)
			}
		}
	}
	if spec.Heartbeat != "" && !slices.Contains(heartbeats, spec.Heartbeat) {
		return badField("heartbeat", fmt.Sprintf("%q is not one of %s", spec.Heartbeat, strings.Join(heartbeats, ", ")))
	}
	if spec.HeartbeatInterval < 0 {
		return badField("heartbeat_interval", "must not be negative")
	}
	if spec.Password != "" && spec.Username == "" {
		return badField("username", "is required with a password")
	}
	if spec.RequireAck == nil {
		t := true
		spec.RequireAck = &t
	}
	return nil
}
