package balance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/wire"
	"github.com/sony/gobreaker/v2"
)

// UpstreamStatus is one upstream as the admin API shows it: its configuration without
// secrets, and its live state.
type UpstreamStatus struct {
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
	Heartbeat             string        `json:"heartbeat"`
	HeartbeatInterval     conf.Duration `json:"heartbeat_interval"`
	RequireAck            bool          `json:"require_ack"`

	// Eligible: breaker not open and phi under the threshold.
	Eligible bool `json:"eligible"`
	// Connected: a connection is established (chunks are routed only to connected
	// eligible upstreams).
	Connected bool `json:"connected"`
	// Phi is the failure detector's current value (0 with heartbeat "none").
	Phi float64 `json:"phi"`
	// Breaker is "closed", "half-open" or "open".
	Breaker string `json:"breaker"`
	// InFlightChunks are routed to this upstream and not yet acked or failed.
	InFlightChunks int `json:"in_flight_chunks"`
	// SentChunks, SentEvents and SentBytes count chunk writes (attempts, including ones
	// whose ack later failed); Acks counts chunks delivered (acked, or fully written
	// when require_ack is false); Retries counts chunks that failed here and went back
	// to the ring for another upstream.
	SentChunks int64 `json:"sent_chunks"`
	SentEvents int64 `json:"sent_events"`
	SentBytes  int64 `json:"sent_bytes"`
	Acks       int64 `json:"acks"`
	Retries    int64 `json:"retries"`
	// LastError is the last connection, send or ack failure, and when it happened.
	LastError     string    `json:"last_error"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	// LastRTT is the last chunk's time from write to ack, in nanoseconds.
	LastRTT time.Duration `json:"last_rtt"`
}

// upstream is one configured server with its live state. Config and pointers are set
// at Add and never change; the rest is atomic or guarded as noted.
type upstream struct {
	cfg  UpstreamConfig
	pool *Pool
	log  *slog.Logger
	tls  *tls.Config // nil without tls://
	br   *breaker
	det  *detector

	wrr wrrPeer // guarded by Pool.mu

	// Set under Pool.mu when started; stopped is closed when its goroutines exited.
	cancel  context.CancelFunc
	stopped chan struct{}

	conn      atomic.Pointer[conn] // the live connection, nil while (re)connecting
	removed   atomic.Bool
	failing   atomic.Bool  // last connect failed (log the first failure loud, the rest quiet)
	brState   atomic.Int32 // last breaker state seen, for transition logs
	flightSeq atomic.Uint64

	sentChunks atomic.Int64
	sentEvents atomic.Int64
	sentBytes  atomic.Int64
	acks       atomic.Int64
	retries    atomic.Int64
	lastRTT    atomic.Int64

	errMu       sync.Mutex
	lastErr     string
	lastErrTime time.Time
}

func newUpstream(p *Pool, cfg UpstreamConfig) (*upstream, error) {
	u := &upstream{
		cfg:  cfg,
		pool: p,
		log:  p.log.With("upstream", cfg.ID),
		wrr:  wrrPeer{weight: cfg.Weight},
	}
	if cfg.TLS() {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		u.tls = tc
	}
	u.br = newBreaker(cfg.ID, p.cfg.BreakerFailures, p.cfg.BreakerOpenTimeout.D(), nil)
	u.det = newDetector(cfg.HeartbeatInterval.D(), p.cfg.PhiThreshold, p.cfg.RecoverWait.D(),
		cfg.Heartbeat == HeartbeatNone, time.Now())
	return u, nil
}

func tlsConfig(cfg UpstreamConfig) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(cfg.HostPort())
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: cfg.TLSInsecureSkipVerify, //nolint:gosec // explicit opt-in
	}
	if cfg.TLSServerName != "" {
		tc.ServerName = cfg.TLSServerName
	}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, &conf.FieldError{Field: "tls_ca_file", Reason: err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &conf.FieldError{Field: "tls_ca_file", Reason: "no PEM certificate in " + cfg.TLSCAFile}
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// eligible: not removed, breaker not open, phi under the threshold.
func (u *upstream) eligible() bool {
	return !u.removed.Load() && !u.br.open() && !u.det.isDown()
}

// noteBreaker logs and signals breaker transitions; called after every breaker
// interaction, outside any lock (gobreaker's OnStateChange runs under its mutex).
func (u *upstream) noteBreaker() {
	s := u.br.cb.State()
	old := gobreaker.State(u.brState.Swap(int32(s)))
	if old == s {
		return
	}
	lvl := slog.LevelInfo
	if s == gobreaker.StateOpen {
		lvl = slog.LevelWarn
	}
	u.log.Log(context.Background(), lvl, "breaker state changed", "from", stateName(old), "to", stateName(s))
	u.pool.signal()
}

func (u *upstream) setErr(err error) {
	u.errMu.Lock()
	u.lastErr = err.Error()
	u.lastErrTime = time.Now()
	u.errMu.Unlock()
}

func (u *upstream) status() UpstreamStatus {
	c := u.cfg
	s := UpstreamStatus{
		ID:                    c.ID,
		Address:               c.Address,
		Weight:                c.Weight,
		Standby:               c.Standby,
		TLSCAFile:             c.TLSCAFile,
		TLSInsecureSkipVerify: c.TLSInsecureSkipVerify,
		TLSServerName:         c.TLSServerName,
		SharedKeySet:          c.SharedKey != "",
		SelfHostname:          c.SelfHostname,
		Username:              c.Username,
		PasswordSet:           c.Password != "",
		TimeAsInteger:         c.TimeAsInteger,
		Heartbeat:             c.Heartbeat,
		HeartbeatInterval:     c.HeartbeatInterval,
		RequireAck:            c.AckRequired(),
		Eligible:              u.eligible(),
		Phi:                   u.det.phi(time.Now()),
		Breaker:               u.br.state(),
		SentChunks:            u.sentChunks.Load(),
		SentEvents:            u.sentEvents.Load(),
		SentBytes:             u.sentBytes.Load(),
		Acks:                  u.acks.Load(),
		Retries:               u.retries.Load(),
		LastRTT:               time.Duration(u.lastRTT.Load()),
	}
	if cn := u.conn.Load(); cn != nil {
		s.Connected = true
		s.InFlightChunks = int(cn.load.Load())
	}
	u.errMu.Lock()
	s.LastError, s.LastErrorTime = u.lastErr, u.lastErrTime
	u.errMu.Unlock()
	return s
}

// run owns the upstream's goroutines: the connection loop here, heartbeats beside it.
func (u *upstream) run(ctx context.Context) {
	defer close(u.stopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	if u.cfg.Heartbeat != HeartbeatNone {
		wg.Go(func() { u.heartbeatLoop(ctx) })
	}
	u.connectLoop(ctx)
}

// connectLoop keeps one connection up, reconnecting with jittered exponential backoff.
func (u *upstream) connectLoop(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		c, err := u.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			u.connectFailed(err)
			attempt++
			if !sleepCtx(ctx, u.pool.backoff(attempt)) {
				return
			}
			continue
		}
		if u.failing.Swap(false) {
			u.log.Info("connected", "remote", c.nc.RemoteAddr().String())
		} else {
			u.log.Debug("connected", "remote", c.nc.RemoteAddr().String())
		}
		u.conn.Store(c)
		u.pool.signal()
		healthy := c.serve(ctx)
		u.conn.Store(nil)
		if ctx.Err() != nil {
			return
		}
		if healthy {
			attempt = 0
		}
		attempt++
		if !sleepCtx(ctx, u.pool.backoff(attempt)) {
			return
		}
	}
}

func (u *upstream) connectFailed(err error) {
	u.setErr(err)
	// A failed connect is a failed request for the breaker, when the breaker lets one
	// through (closed, or the half-open probe); while open it just stays open.
	if done, ok := u.br.allow(); ok {
		done(err)
	}
	u.noteBreaker()
	if !u.failing.Swap(true) {
		u.log.Warn("connect failed", "err", err)
	} else {
		u.log.Debug("connect failed", "err", err)
	}
}

// connect dials (resolving the host name again), wraps TLS and runs the shared_key
// handshake, all within ConnectTimeout.
func (u *upstream) connect(ctx context.Context) (*conn, error) {
	p := u.pool
	dctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout.D())
	defer cancel()
	d := net.Dialer{KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(dctx, "tcp", u.cfg.HostPort())
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", u.cfg.Address, err)
	}
	if u.tls != nil {
		tc := tls.Client(nc, u.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls handshake %s: %w", u.cfg.Address, err)
		}
		nc = tc
	}
	dec := wire.NewDecoder(nc, wire.Limits{MaxFrameBytes: 64 << 10})
	if u.cfg.SharedKey != "" {
		stop := context.AfterFunc(dctx, func() { nc.Close() })
		_, err := wire.ClientHandshake(dec, nc, wire.ClientAuth{
			Hostname:  u.cfg.SelfHostname,
			SharedKey: u.cfg.SharedKey,
			Username:  u.cfg.Username,
			Password:  u.cfg.Password,
		})
		if !stop() && err == nil {
			err = dctx.Err()
		}
		if err != nil {
			nc.Close()
			dec.Close()
			if dctx.Err() != nil && !errors.Is(err, wire.ErrAuth) {
				err = fmt.Errorf("%w (%w)", err, dctx.Err())
			}
			return nil, fmt.Errorf("handshake %s: %w", u.cfg.Address, err)
		}
	}
	return newConn(u, nc, dec), nil
}

// heartbeatLoop probes the upstream every interval, feeding the phi detector, and
// checks phi before each probe as fluentd does. The first probe is staggered by a
// random fraction of the interval so upstreams are not probed in lockstep.
func (u *upstream) heartbeatLoop(ctx context.Context) {
	iv := u.cfg.HeartbeatInterval.D()
	if !sleepCtx(ctx, rand.N(iv)) {
		return
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if p, down := u.det.check(time.Now()); down {
			u.log.Warn("phi above threshold: upstream down", "phi", p, "threshold", u.pool.cfg.PhiThreshold)
			u.pool.signal()
		}
		if err := u.probe(ctx, iv); err == nil {
			if u.det.heartbeat(time.Now(), false) {
				u.log.Info("heartbeats back: upstream up")
				u.pool.signal()
			}
		} else if ctx.Err() == nil {
			u.log.Debug("heartbeat failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe sends one heartbeat: a TCP connect, or fluentd's UDP datagram and its reply.
func (u *upstream) probe(ctx context.Context, iv time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, min(iv, u.pool.cfg.ConnectTimeout.D()))
	defer cancel()
	var d net.Dialer
	switch u.cfg.Heartbeat {
	case HeartbeatUDP:
		c, err := d.DialContext(pctx, "udp", u.cfg.HostPort())
		if err != nil {
			return err
		}
		defer c.Close()
		dl, _ := pctx.Deadline()
		_ = c.SetDeadline(dl)
		if _, err := c.Write([]byte{0}); err != nil {
			return err
		}
		var b [64]byte
		_, err = c.Read(b[:])
		return err
	default:
		c, err := d.DialContext(pctx, "tcp", u.cfg.HostPort())
		if err != nil {
			return err
		}
		return c.Close()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
