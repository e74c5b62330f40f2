package main

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fwdmux/fwdmux/admin"
	"github.com/fwdmux/fwdmux/balance"
	"github.com/fwdmux/fwdmux/tail"
)

// hydraConfig is fluent-agent-hydra's config.toml, key for key.
type hydraConfig struct {
	TagPrefix        string
	FieldName        string
	ReadBufferSize   int
	ServerRoundRobin bool
	SubSecondTime    bool
	Servers          []hydraServer
	Logs             []hydraLog
	Receiver         *hydraHostPort
	Monitor          *hydraHostPort
}

type hydraServer struct {
	Host string
	Port int
}

type hydraLog struct {
	Tag        string
	File       string
	FieldName  string
	Format     string
	Regexp     string
	Types      string
	TimeParse  bool
	TimeKey    string
	TimeFormat string
}

type hydraHostPort struct {
	Host              string
	Port              int
	MaxBufferMessages int
}

// hydraKeys are fluent-agent-hydra's top-level keys.
var hydraKeys = []string{"TagPrefix", "FieldName", "ReadBufferSize", "ServerRoundRobin", "SubSecondTime", "Servers", "Logs", "Receiver", "Monitor"}

// isHydra: a file with one of hydra's top-level keys is hydra's (fwdmux's keys are
// snake_case). A capitalised typo in fwdmux's schema ("State_dir") is not enough: it
// must stay an unknown-key error, not turn the whole file into a hydra config.
func isHydra(probe map[string]any) bool {
	for k := range probe {
		if slices.Contains(hydraKeys, k) {
			return true
		}
	}
	return false
}

// loadHydra maps a fluent-agent-hydra config onto fwdmux's schema, so migrating is one
// restart. Unknown keys are warned about, not refused: hydra ignored them too.
func loadHydra(path string, data []byte) (Config, error) {
	var h hydraConfig
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&h)
	if err != nil {
		return Config{}, tomlError(path, data, err)
	}
	c := Config{hydra: true}
	for _, k := range md.Undecoded() {
		c.warnings = append(c.warnings, fmt.Sprintf("%s:%d: unknown fluent-agent-hydra key %s ignored", path, lineOf(data, k), k))
	}
	if h.ReadBufferSize != 0 {
		c.warnings = append(c.warnings, "ReadBufferSize has no equivalent: fwdmux sizes its read buffers itself")
	}
	for i, s := range h.Servers {
		port := s.Port
		if port == 0 {
			port = 24224
		}
		u := balance.UpstreamConfig{
			Address: net.JoinHostPort(s.Host, strconv.Itoa(port)),
			// hydra sends the first server everything and the others only when it is
			// down, unless ServerRoundRobin.
			Standby: !h.ServerRoundRobin && i > 0,
			// hydra writes integer times unless SubSecondTime.
			TimeAsInteger: !h.SubSecondTime,
		}
		c.Servers = append(c.Servers, u)
	}
	fieldName := h.FieldName
	for i, l := range h.Logs {
		t := tail.TargetConfig{Path: l.File, Tag: l.Tag, MessageKey: fieldName}
		if h.TagPrefix != "" {
			t.Tag = h.TagPrefix + "." + l.Tag
		}
		if l.FieldName != "" {
			t.MessageKey = l.FieldName
		}
		format := strings.ToLower(l.Format)
		switch format {
		case "", "none":
			t.Format = tail.FormatNone
		case "ltsv", "json":
			t.Format = format
		case "regexp":
			switch strings.ToLower(l.Regexp) {
			case "apache", "nginx", "syslog":
				t.Format = strings.ToLower(l.Regexp)
			default:
				t.Format = tail.FormatRegexp
				t.Regexp = l.Regexp
			}
		default:
			return Config{}, &ConfigError{File: path, Key: fmt.Sprintf("Logs[%d].Format", i), Msg: fmt.Sprintf("%q: want none, ltsv, json or regexp", l.Format)}
		}
		if l.Types != "" {
			types, err := hydraTypes(l.Types)
			if err != nil {
				return Config{}, &ConfigError{File: path, Key: fmt.Sprintf("Logs[%d].Types", i), Msg: err.Error()}
			}
			t.Types = types
		}
		if l.TimeParse {
			t.TimeKey = l.TimeKey
			if t.TimeKey == "" {
				t.TimeKey = "time"
			}
			t.TimeFormat = l.TimeFormat
			if t.TimeFormat == "" && t.Format != tail.FormatApache && t.Format != tail.FormatNginx && t.Format != tail.FormatSyslog {
				t.TimeFormat = "rfc3339"
			}
			t.KeepTimeKey = true // hydra left the field in the record
		}
		c.Logs = append(c.Logs, t)
	}
	if h.Receiver != nil {
		host := h.Receiver.Host
		port := h.Receiver.Port
		if port == 0 {
			port = 24224
		}
		c.Listener.Addr = net.JoinHostPort(host, strconv.Itoa(port))
		if h.Receiver.MaxBufferMessages != 0 {
			c.warnings = append(c.warnings, "Receiver.MaxBufferMessages has no equivalent: the ring is bounded in bytes ([ring] max_bytes)")
		}
	} else {
		// hydra without [Receiver] did not listen; neither do we (a local fluentd may
		// own the port).
		c.Listener.Addr = listenOff
	}
	if h.Monitor != nil {
		host := h.Monitor.Host
		if host == "" {
			host = "127.0.0.1"
		}
		port := h.Monitor.Port
		if port == 0 {
			port = 24223
		}
		c.Admin.Listen = net.JoinHostPort(host, strconv.Itoa(port))
	} else {
		c.Admin.Listen = admin.ListenOff
	}
	return c, nil
}

// hydraTypes parses "field:type,field:type"; hydra's "string" is the default and
// needs no conversion.
func hydraTypes(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return nil, fmt.Errorf("%q: want field:type", kv)
		}
		switch v {
		case "string":
		case "integer", "float", "bool":
			out[k] = v
		default:
			return nil, fmt.Errorf("%q: type %q is not string, integer, float or bool", kv, v)
		}
	}
	return out, nil
}
