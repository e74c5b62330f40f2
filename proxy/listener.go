package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/wire"
)

// Ack modes for forward clients that ask for acks.
const (
	AckUpstream = "upstream" // ack when every chunk holding the frame's events was acked upstream
	AckReceived = "received" // ack when the events are in the ring
)

// ListenerConfig configures the in_forward listener.
type ListenerConfig struct {
	// Addr is "host:port" for TCP (default 127.0.0.1:24224) or "unix:///path".
	Addr string `toml:"addr" json:"addr"`
	// UnixPath adds a unix socket beside a TCP Addr (default none).
	UnixPath string `toml:"unix_path" json:"unix_path"`
	// UDPHeartbeat answers heartbeat datagrams on the TCP port number (default true).
	UDPHeartbeat *bool `toml:"udp_heartbeat" json:"udp_heartbeat"`
	// TLSCertFile and TLSKeyFile turn on TLS for TCP connections.
	TLSCertFile string `toml:"tls_cert_file" json:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file" json:"tls_key_file"`
	// SharedKey turns on the HELO/PING/PONG handshake (default off).
	SharedKey string `toml:"shared_key" json:"shared_key"`
	// SelfHostname is sent in PONG (default: os.Hostname()).
	SelfHostname string `toml:"self_hostname" json:"self_hostname"`
	// Users requires username/password in the handshake (user -> password).
	Users map[string]string `toml:"users" json:"users"`
	// Ack is when a client's chunk is acked: "upstream" (default) or "received".
	Ack string `toml:"ack" json:"ack"`
	// MaxConnections bounds concurrent client connections (default 4096).
	MaxConnections int `toml:"max_connections" json:"max_connections"`
	// IdleTimeout closes a connection that sent nothing for this long (default 1h;
	// loggers keep idle keep-alive connections, so this only reclaims dead peers).
	IdleTimeout conf.Duration `toml:"idle_timeout" json:"idle_timeout"`
	// HandshakeTimeout bounds TLS and shared_key handshakes (default 10s).
	HandshakeTimeout conf.Duration `toml:"handshake_timeout" json:"handshake_timeout"`
	// FlushTimeout bounds how long a closing connection waits to put its last
	// partial chunk into a full ring at shutdown (default 10s).
	FlushTimeout conf.Duration `toml:"flush_timeout" json:"flush_timeout"`
	// Limits bound frames (max_frame_bytes, max_decompressed_bytes, max_depth).
	wire.Limits
	// Batch sets chunk size and age.
	BatchConfig
}

// WithDefaults fills zero fields.
func (c ListenerConfig) WithDefaults() ListenerConfig {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:24224"
	}
	if c.UDPHeartbeat == nil {
		t := true
		c.UDPHeartbeat = &t
	}
	if c.SelfHostname == "" {
		c.SelfHostname, _ = os.Hostname()
	}
	if c.Ack == "" {
		c.Ack = AckUpstream
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 4096
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = conf.Duration(time.Hour)
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = conf.Duration(10 * time.Second)
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = conf.Duration(10 * time.Second)
	}
	c.Limits = c.Limits.WithDefaults()
	c.BatchConfig = c.BatchConfig.WithDefaults()
	return c
}

// Validate names the first bad field.
func (c ListenerConfig) Validate() error {
	if strings.HasPrefix(c.Addr, "unix://") {
		if strings.TrimPrefix(c.Addr, "unix://") == "" {
			return &conf.FieldError{Field: "addr", Reason: "unix:// needs a path"}
		}
	} else if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return &conf.FieldError{Field: "addr", Reason: fmt.Sprintf("%q is not host:port or unix:///path", c.Addr)}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return &conf.FieldError{Field: "tls_cert_file", Reason: "tls_cert_file and tls_key_file go together"}
	}
	if c.Ack != AckUpstream && c.Ack != AckReceived {
		return &conf.FieldError{Field: "ack", Reason: fmt.Sprintf("%q is not upstream or received", c.Ack)}
	}
	if len(c.Users) > 0 && c.SharedKey == "" {
		return &conf.FieldError{Field: "users", Reason: "user authentication needs shared_key"}
	}
	if c.MaxConnections < 1 {
		return &conf.FieldError{Field: "max_connections", Reason: "must be at least 1"}
	}
	if c.MaxFrameBytes < 1024 {
		return &conf.FieldError{Field: "max_frame_bytes", Reason: "must be at least 1024"}
	}
	if c.MaxDecompressedBytes < c.MaxFrameBytes {
		return &conf.FieldError{Field: "max_decompressed_bytes", Reason: "must be at least max_frame_bytes"}
	}
	return c.BatchConfig.Validate()
}

// ReceiverStats is a snapshot of the listener's counters.
type ReceiverStats struct {
	Address           string           `json:"address"`
	Connections       int64            `json:"connections"`
	ActiveConnections int64            `json:"active_connections"`
	Frames            int64            `json:"frames"`
	Events            int64            `json:"events"`
	Bytes             int64            `json:"bytes"`
	Acks              int64            `json:"acks"`
	InvalidEvents     int64            `json:"invalid_events"`
	Heartbeats        int64            `json:"heartbeats"`
	Errors            map[string]int64 `json:"errors"`
}

// Listener is the in_forward side of fwdmux: it accepts Forward protocol clients over
// TCP (optionally TLS), a unix socket, answers UDP heartbeats, and batches every
// client's events into chunks for the sink.
type Listener struct {
	cfg  ListenerConfig
	sink Sink
	log  *slog.Logger
	tls  *tls.Config

	addrMu sync.Mutex
	addr   net.Addr
	ready  chan struct{}

	connections atomic.Int64
	active      atomic.Int64
	frames      atomic.Int64
	events      atomic.Int64
	bytes       atomic.Int64
	acks        atomic.Int64
	invalid     atomic.Int64
	heartbeats  atomic.Int64
	errMu       sync.Mutex
	errs        map[string]int64
	inflate     wire.InflateGate // one inflation per core at a time, across connections
}

// NewListener validates cfg (after defaults) and loads TLS material. It starts nothing.
func NewListener(cfg ListenerConfig, sink Sink, log *slog.Logger) (*Listener, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Listener{cfg: cfg, sink: sink, log: log.With("component", "listener"), errs: map[string]int64{}, ready: make(chan struct{}),
		inflate: wire.NewInflateGate(runtime.GOMAXPROCS(0))}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("listener tls: %w", err)
		}
		l.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return l, nil
}

// Ready is closed once the listener accepts connections.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Addr is the bound address of the main socket, once Ready.
func (l *Listener) Addr() net.Addr {
	l.addrMu.Lock()
	defer l.addrMu.Unlock()
	return l.addr
}

func (l *Listener) countErr(reason string) {
	l.errMu.Lock()
	l.errs[reason]++
	l.errMu.Unlock()
}

// Stats returns a snapshot.
func (l *Listener) Stats() ReceiverStats {
	s := ReceiverStats{
		Connections:       l.connections.Load(),
		ActiveConnections: l.active.Load(),
		Frames:            l.frames.Load(),
		Events:            l.events.Load(),
		Bytes:             l.bytes.Load(),
		Acks:              l.acks.Load(),
		InvalidEvents:     l.invalid.Load(),
		Heartbeats:        l.heartbeats.Load(),
		Errors:            map[string]int64{},
	}
	if a := l.Addr(); a != nil {
		s.Address = a.String()
	} else {
		s.Address = l.cfg.Addr
	}
	l.errMu.Lock()
	for k, v := range l.errs {
		s.Errors[k] = v
	}
	l.errMu.Unlock()
	return s
}

// Listen binds the sockets without serving, so a caller knows the listener is up
// before doing anything slow. Run calls it when it was not called.
func (l *Listener) listen() ([]net.Listener, net.PacketConn, error) {
	var lns []net.Listener
	var udp net.PacketConn
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	if path, ok := strings.CutPrefix(l.cfg.Addr, "unix://"); ok {
		ln, err := listenUnix(path)
		if err != nil {
			return nil, nil, err
		}
		lns = append(lns, ln)
	} else {
		ln, err := net.Listen("tcp", l.cfg.Addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen %s: %w", l.cfg.Addr, err)
		}
		if l.tls != nil {
			ln = tls.NewListener(ln, l.tls)
		}
		lns = append(lns, ln)
		if *l.cfg.UDPHeartbeat {
			udpAddr := ln.Addr().String() // same port number, even when Addr asked for :0
			udp, err = net.ListenPacket("udp", udpAddr)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("listen udp %s: %w", udpAddr, err)
			}
		}
	}
	if l.cfg.UnixPath != "" {
		ln, err := listenUnix(l.cfg.UnixPath)
		if err != nil {
			closeAll()
			if udp != nil {
				udp.Close()
			}
			return nil, nil, err
		}
		lns = append(lns, ln)
	}
	return lns, udp, nil
}

func listenUnix(path string) (net.Listener, error) {
	// A socket left by a killed process would make bind fail: remove it, but only if
	// nothing answers on it.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen unix %s: already in use", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen unix %s: %w", path, err)
	}
	return ln, nil
}

// Run serves until ctx ends. Then it stops reading from every connection, puts each
// connection's partial chunk into the sink (bounded by FlushTimeout), closes the
// connections and returns nil. It returns an error only if it cannot bind.
func (l *Listener) Run(ctx context.Context) error {
	lns, udp, err := l.listen()
	if err != nil {
		return err
	}
	l.addrMu.Lock()
	l.addr = lns[0].Addr()
	l.addrMu.Unlock()
	close(l.ready)
	l.log.Info("listening", "addr", lns[0].Addr().String(), "tls", l.tls != nil, "shared_key", l.cfg.SharedKey != "", "udp_heartbeat", udp != nil)

	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() {
		for _, ln := range lns {
			ln.Close()
		}
		if udp != nil {
			udp.Close()
		}
	})
	defer stop()
	if udp != nil {
		wg.Go(func() { l.serveUDP(ctx, udp) })
	}
	for _, ln := range lns[1:] {
		wg.Go(func() { l.accept(ctx, ln, &wg) })
	}
	l.accept(ctx, lns[0], &wg)
	return nil
}

func (l *Listener) accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	backoff := 10 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("accept failed", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		if l.active.Add(1) > int64(l.cfg.MaxConnections) {
			l.active.Add(-1)
			l.countErr("max_connections")
			l.log.Warn("connection refused: too many connections", "peer", c.RemoteAddr().String(), "max_connections", l.cfg.MaxConnections)
			c.Close()
			continue
		}
		l.connections.Add(1)
		wg.Go(func() {
			defer l.active.Add(-1)
			l.serve(ctx, c)
		})
	}
}

func (l *Listener) serveUDP(ctx context.Context, pc net.PacketConn) {
	buf := make([]byte, 1024)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		l.heartbeats.Add(1)
		// fluentd's in_forward answers every heartbeat datagram with one NUL byte.
		_, _ = pc.WriteTo([]byte{0}, from)
	}
}

// ackWriter writes acks to one client connection; acks come from upstream goroutines
// (ack = "upstream") or from the connection's own goroutine (ack = "received").
type ackWriter struct {
	mu     sync.Mutex
	c      net.Conn
	buf    []byte
	failed bool
	l      *Listener
	// owed counts acks the client waits for: such a client is not idle.
	owed atomic.Int64
	// written counts acks written: one is activity on the connection, as a frame is.
	written atomic.Int64
}

// request registers an ack the client waits for; write pays it.
func (w *ackWriter) request(id []byte, json bool) *ackReq {
	w.owed.Add(1)
	return &ackReq{w: w, id: append([]byte(nil), id...), json: json}
}

// write sends {"ack": id}, as JSON when the frame that asked for it was JSON. The
// framing travels with each request: the writer is shared with other goroutines.
func (w *ackWriter) write(id []byte, json bool) {
	defer w.owed.Add(-1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed {
		return
	}
	if json {
		w.buf = wire.AppendAckJSON(w.buf[:0], id)
	} else {
		w.buf = wire.AppendAck(w.buf[:0], id)
	}
	// A client that stops reading must not stall the upstream goroutine running us.
	_ = w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.c.Write(w.buf); err != nil {
		w.failed = true
		return
	}
	w.l.acks.Add(1)
	w.written.Add(1)
}

type ackReq struct {
	w    *ackWriter
	id   []byte
	json bool
}

func (a *ackReq) done(Outcome) { a.w.write(a.id, a.json) }
func (a *ackReq) early()       { a.w.write(a.id, a.json) }

func (l *Listener) serve(ctx context.Context, c net.Conn) {
	peer := c.RemoteAddr().String()
	if peer == "" || peer == "@" {
		peer = "unix:" + c.LocalAddr().String()
	}
	log := l.log.With("peer", peer)
	defer c.Close()

	dec := wire.NewDecoder(c, l.cfg.Limits)
	defer dec.Close()
	dec.SetInflateGate(l.inflate)

	// Intake shutdown: wake the read so the loop can flush and leave.
	stopRead := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stopRead()

	if tc, ok := c.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, l.cfg.HandshakeTimeout.D())
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			l.countErr("tls")
			log.Warn("closing connection: TLS handshake failed", "reason", "tls", "err", err)
			return
		}
	}
	if l.cfg.SharedKey != "" {
		_ = c.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout.D()))
		host, err := wire.ServerHandshake(dec, c, wire.ServerAuth{Hostname: l.cfg.SelfHostname, SharedKey: l.cfg.SharedKey, Users: l.cfg.Users})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.countErr("handshake")
			log.Warn("closing connection: handshake failed", "reason", "handshake", "err", err)
			return
		}
		_ = c.SetDeadline(time.Time{})
		log = log.With("client_hostname", host)
	}

	aw := &ackWriter{c: c, l: l}
	b := NewBatcher(l.sink, l.cfg.BatchConfig)
	received := l.cfg.Ack == AckReceived
	idle := l.cfg.IdleTimeout.D()
	flushCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), l.cfg.FlushTimeout.D())
	}
	defer func() {
		if !b.Pending() {
			return
		}
		fctx, cancel := flushCtx()
		defer cancel()
		if err := b.Flush(fctx); err != nil {
			n := b.Abandon()
			l.countErr("shutdown_unflushed")
			log.Warn("events not accepted at close: the client was not acked for them", "events", n, "reason", err)
		}
	}()

	var f wire.Frame
	var framesSeen, armedAt, armedAcks int64
	idleArmed := false
	var deadline time.Time
	for {
		// The deadline wakes us for the batch age backstop (the client is mid-frame) or
		// for idleness; it is set only when it changes, to keep the hot loop cheap.
		want := b.Deadline()
		if !want.IsZero() {
			idleArmed = false
		} else if !idleArmed || armedAt != framesSeen {
			want = time.Now().Add(idle)
			idleArmed, armedAt, armedAcks = true, framesSeen, aw.written.Load()
		} else {
			want = deadline
		}
		if !want.Equal(deadline) {
			deadline = want
			_ = c.SetReadDeadline(deadline)
			if ctx.Err() != nil {
				return
			}
		}
		err := dec.Next(&f)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if ctx.Err() != nil {
					return // shutdown: the deferred flush hands on what we have
				}
				if b.Pending() {
					if err := b.Flush(ctx); err != nil {
						return
					}
					continue
				}
				if armedAt != framesSeen || armedAcks != aw.written.Load() {
					// Activity since the deadline was set, a frame read or an ack written
					// (after a long wait for it, idle counts from the ack): re-arm.
					idleArmed = false
					continue
				}
				if aw.owed.Load() > 0 {
					// The client is silent because it waits for our ack (a slow
					// upstream with ack = "upstream"): not idle, and closing would
					// only make it resend.
					idleArmed = false
					continue
				}
				l.countErr("idle_timeout")
				log.Info("closing idle connection", "idle", idle)
				return
			}
			if err == io.EOF || errors.Is(err, net.ErrClosed) {
				return
			}
			reason := wire.Reason(err)
			if reason == "io" {
				return
			}
			l.countErr(reason)
			log.Warn("closing connection: bad input", "reason", reason, "err", err)
			return
		}
		framesSeen++
		l.frames.Add(1)
		l.bytes.Add(int64(f.Bytes))
		if f.Invalid > 0 {
			l.invalid.Add(int64(f.Invalid))
			l.countErr("invalid_event")
		}
		var ack *ackReq
		if f.Chunk != nil && f.Mode != 0 {
			ack = aw.request(f.Chunk, f.JSON)
		}
		switch {
		case f.Mode == 0:
			// A keep-alive: nothing to deliver, but it may be the last thing buffered,
			// so it still reaches the drained-input flush below.
		case f.Count > 0:
			l.events.Add(int64(f.Count))
			var done func(Outcome)
			var early func()
			if ack != nil {
				if received {
					early = ack.early
				} else {
					done = ack.done
				}
			}
			if err := b.Add(ctx, f.Tag, f.Entries, f.Count, done, early); err != nil {
				return // ctx ended while the ring was full; the deferred flush retries
			}
		case ack != nil:
			ack.early() // nothing valid to deliver: ack so the client does not resend forever
		}
		if dec.Buffered() == 0 && b.Pending() {
			if err := b.Flush(ctx); err != nil {
				return
			}
		}
	}
}
