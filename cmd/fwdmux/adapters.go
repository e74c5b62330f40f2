package main

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/admin"
	"github.com/fwdmux/fwdmux/balance"
	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/tail"
)

// The admin package defines what it needs; these adapters translate tail, balance and
// proxy into it. They are the only place that knows both sides.

type targetsAdapter struct{ m *tail.Manager }

func logSpecToTarget(s admin.LogSpec) tail.TargetConfig {
	t := tail.TargetConfig{
		ID: s.ID, Path: s.Path, Tag: s.Tag, Format: s.Format, Regexp: s.Regexp,
		MessageKey: s.MessageKey, TimeKey: s.TimeKey, TimeFormat: s.TimeFormat,
		KeepTimeKey: s.KeepTimeKey, Types: s.Types, MultilineStart: s.MultilineStart,
		MultilineTimeout: s.MultilineTimeout, RotateWait: s.RotateWait,
		MaxLineBytes: s.MaxLineBytes, KeepInvalidUTF8: s.KeepInvalidUTF8,
	}
	switch len(s.Exclude) {
	case 0:
	case 1:
		t.Exclude = s.Exclude[0]
	default:
		t.Exclude = "{" + strings.Join(s.Exclude, ",") + "}"
	}
	if s.ReadFromHead {
		v := true
		t.ReadFromHead = &v
	}
	return t
}

func targetToLogSpec(t tail.TargetConfig) admin.LogSpec {
	s := admin.LogSpec{
		ID: t.ID, Path: t.Path, Tag: t.Tag, Format: t.Format, Regexp: t.Regexp,
		MessageKey: t.MessageKey, TimeKey: t.TimeKey, TimeFormat: t.TimeFormat,
		KeepTimeKey: t.KeepTimeKey, Types: t.Types, MultilineStart: t.MultilineStart,
		MultilineTimeout: t.MultilineTimeout, RotateWait: t.RotateWait,
		MaxLineBytes: t.MaxLineBytes, KeepInvalidUTF8: t.KeepInvalidUTF8,
		ReadFromHead: t.ReadFromHead != nil && *t.ReadFromHead,
	}
	if t.Exclude != "" {
		s.Exclude = []string{t.Exclude}
	}
	return s
}

func fileStatus(f tail.FileStats) admin.FileStatus {
	fs := admin.FileStatus{
		Path: f.Path, TargetID: f.Target, Tag: f.Tag, Inode: f.Inode,
		ReadOffset: f.ReadOffset, CommittedOffset: f.CommittedOffset, Size: f.Size,
		LagBytes: f.LagBytes, Lines: f.Lines, Bytes: f.Bytes, ParseErrors: f.ParseErrors,
		TruncatedLines: f.TruncatedLines,
	}
	if !f.LastRead.IsZero() {
		t := f.LastRead
		fs.LastRead = &t
	}
	return fs
}

func (a targetsAdapter) status(info tail.TargetInfo, files []tail.FileStats) admin.LogStatus {
	st := admin.LogStatus{LogSpec: targetToLogSpec(info.TargetConfig), Files: []admin.FileStatus{}}
	for _, f := range files {
		if f.Target == info.ID {
			st.Files = append(st.Files, fileStatus(f))
		}
	}
	return st
}

func (a targetsAdapter) List() []admin.LogStatus {
	files := a.m.Stats()
	out := []admin.LogStatus{}
	for _, t := range a.m.Targets() {
		out = append(out, a.status(t, files))
	}
	return out
}

func (a targetsAdapter) Get(id string) (admin.LogStatus, bool) {
	t, ok := a.m.Target(id)
	if !ok {
		return admin.LogStatus{}, false
	}
	return a.status(t, a.m.Stats()), true
}

func (a targetsAdapter) Add(spec admin.LogSpec) (admin.LogStatus, error) {
	info, err := a.m.Add(logSpecToTarget(spec))
	if err != nil {
		if errors.Is(err, tail.ErrDuplicate) {
			return admin.LogStatus{}, fmt.Errorf("%w: %w", admin.ErrDuplicate, err)
		}
		return admin.LogStatus{}, err
	}
	return a.status(info, nil), nil
}

func (a targetsAdapter) Remove(id string) error {
	if err := a.m.Remove(id); err != nil {
		if errors.Is(err, tail.ErrNotFound) {
			return fmt.Errorf("%w: %w", admin.ErrNotFound, err)
		}
		return err
	}
	return nil
}

// serversAdapter exposes the pool; in stdout mode (no upstream at start) it refuses
// additions with a message that says why.
type serversAdapter struct {
	p      *balance.Pool
	stdout bool
}

func serverSpecToUpstream(s admin.ServerSpec) balance.UpstreamConfig {
	return balance.UpstreamConfig{
		ID: s.ID, Address: s.Address, Weight: s.Weight, Standby: s.Standby,
		TLSCAFile: s.TLSCAFile, TLSInsecureSkipVerify: s.TLSInsecureSkipVerify,
		TLSServerName: s.TLSServerName, SharedKey: s.SharedKey, SelfHostname: s.SelfHostname,
		Username: s.Username, Password: s.Password, TimeAsInteger: s.TimeAsInteger,
		Heartbeat: s.Heartbeat, HeartbeatInterval: s.HeartbeatInterval, RequireAck: s.RequireAck,
	}
}

func serverStatus(u balance.UpstreamStatus) admin.ServerStatus {
	s := admin.ServerStatus{
		ID: u.ID, Address: u.Address, Weight: u.Weight, Standby: u.Standby,
		TLSCAFile: u.TLSCAFile, TLSInsecureSkipVerify: u.TLSInsecureSkipVerify,
		TLSServerName: u.TLSServerName, SharedKeySet: u.SharedKeySet, SelfHostname: u.SelfHostname,
		Username: u.Username, PasswordSet: u.PasswordSet, TimeAsInteger: u.TimeAsInteger,
		Heartbeat: u.Heartbeat, HeartbeatInterval: u.HeartbeatInterval, RequireAck: u.RequireAck,
		Eligible: u.Eligible, Phi: u.Phi, Breaker: u.Breaker, InFlightChunks: int64(u.InFlightChunks),
		SentChunks: u.SentChunks, SentEvents: u.SentEvents, SentBytes: u.SentBytes, Acks: u.Acks,
		Retries: u.Retries, LastError: u.LastError,
		LastRTTMillis: float64(u.LastRTT) / float64(time.Millisecond),
	}
	if !u.LastErrorTime.IsZero() {
		t := u.LastErrorTime
		s.LastErrorTime = &t
	}
	return s
}

func (a serversAdapter) List() []admin.ServerStatus {
	out := []admin.ServerStatus{}
	for _, u := range a.p.List() {
		out = append(out, serverStatus(u))
	}
	return out
}

func (a serversAdapter) Get(id string) (admin.ServerStatus, bool) {
	u, ok := a.p.Get(id)
	if !ok {
		return admin.ServerStatus{}, false
	}
	return serverStatus(u), true
}

func (a serversAdapter) Add(spec admin.ServerSpec) (admin.ServerStatus, error) {
	if a.stdout {
		return admin.ServerStatus{}, &conf.FieldError{Field: "address", Reason: "fwdmux was started without upstreams and prints events to stdout; " +
			"start it with -server, FWDMUX_SERVERS or [[servers]] to forward (servers added then can be changed at runtime)"}
	}
	u, err := a.p.Add(serverSpecToUpstream(spec))
	if err != nil {
		if errors.Is(err, balance.ErrDuplicate) {
			return admin.ServerStatus{}, fmt.Errorf("%w: %w", admin.ErrDuplicate, err)
		}
		return admin.ServerStatus{}, err
	}
	return serverStatus(u), nil
}

func (a serversAdapter) Remove(id string) error {
	if err := a.p.Remove(id); err != nil {
		if errors.Is(err, balance.ErrNotFound) {
			return fmt.Errorf("%w: %w", admin.ErrNotFound, err)
		}
		return err
	}
	return nil
}

// statsAdapter gathers one snapshot of every component.
type statsAdapter struct {
	start  time.Time
	ln     *proxy.Listener // nil when the listener is off
	ring   *proxy.Ring
	pool   *balance.Pool
	tail   *tail.Manager
	stdout *proxy.Stdout // nil in forward mode
}

func (s *statsAdapter) Snapshot() admin.Snapshot {
	snap := admin.Snapshot{StartTime: s.start, Ring: s.ring.Stats(), Sent: map[string]admin.SentStats{}, Files: []admin.FileStatus{}, Servers: []admin.ServerStatus{}}
	if s.ln != nil {
		r := s.ln.Stats()
		snap.Receiver = admin.ReceiverStats{
			Address: r.Address, Connections: r.Connections, ActiveConnections: r.ActiveConnections,
			Events: r.Events, Bytes: r.Bytes, Frames: r.Frames, Acks: r.Acks, Errors: r.Errors,
		}
	} else {
		snap.Receiver.Errors = map[string]int64{}
	}
	if s.stdout != nil {
		snap.Output = admin.OutputStdout
		for tag, st := range s.stdout.SentByTag() {
			snap.Sent[tag] = admin.SentStats{Events: st.Events, Bytes: st.Bytes, Chunks: st.Chunks}
		}
	} else {
		snap.Output = admin.OutputForward
		for _, u := range s.pool.List() {
			snap.Servers = append(snap.Servers, serverStatus(u))
		}
		for tag, st := range s.pool.SentByTag() {
			snap.Sent[tag] = admin.SentStats{Events: st.Events, Bytes: st.Bytes, Chunks: st.Chunks}
		}
	}
	for _, f := range s.tail.Stats() {
		snap.Files = append(snap.Files, fileStatus(f))
	}
	return snap
}

// readiness: ready when the output can take events.
type readiness struct {
	pool    *balance.Pool
	stdout  bool
	started *atomic.Bool // the tail targets made their first scan
}

func (r readiness) Ready() (bool, string) {
	if r.started != nil && !r.started.Load() {
		return false, "starting: tail targets not scanned yet"
	}
	if r.stdout {
		return true, ""
	}
	if r.pool.Eligible() > 0 {
		return true, ""
	}
	return false, "no upstream is eligible (all breakers open, unreachable, or none configured)"
}
