package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/wire"
)

func TestListenerConfig(t *testing.T) {
	d := ListenerConfig{}.WithDefaults()
	if d.Addr != "127.0.0.1:24224" || !*d.UDPHeartbeat || d.Ack != AckUpstream || d.MaxConnections != 4096 ||
		d.IdleTimeout.D() != time.Hour || d.MaxFrameBytes != 32<<20 || d.MaxDecompressedBytes != 64<<20 ||
		d.ChunkBytes != 1<<20 || d.ChunkAge.D() != 100*time.Millisecond {
		t.Errorf("defaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	for _, tc := range []struct {
		mod   func(*ListenerConfig)
		field string
	}{
		{func(c *ListenerConfig) { c.Addr = "nonsense" }, "addr"},
		{func(c *ListenerConfig) { c.Addr = "unix://" }, "addr"},
		{func(c *ListenerConfig) { c.TLSCertFile = "cert.pem" }, "tls_cert_file"},
		{func(c *ListenerConfig) { c.Ack = "never" }, "ack"},
		{func(c *ListenerConfig) { c.Users = map[string]string{"u": "p"} }, "users"},
		{func(c *ListenerConfig) { c.MaxConnections = -1 }, "max_connections"},
		{func(c *ListenerConfig) { c.MaxFrameBytes = 100 }, "max_frame_bytes"},
		{func(c *ListenerConfig) { c.MaxDecompressedBytes = 2048; c.MaxFrameBytes = 4096 }, "max_decompressed_bytes"},
		{func(c *ListenerConfig) { c.ChunkBytes = 10 }, "chunk_bytes"},
	} {
		c := d
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate = %v, want an error naming %s", err, tc.field)
		}
		if _, err := NewListener(c, NewRing(RingConfig{}), nil); err == nil {
			t.Errorf("NewListener accepted a config with a bad %s", tc.field)
		}
	}
}

// ---- fluent-logger-golang ----

func newFluent(t testing.TB, h *harness, cfg fluent.Config) *fluent.Fluent {
	t.Helper()
	cfg.FluentHost = "127.0.0.1"
	cfg.FluentPort = h.port()
	cfg.Timeout = 10 * time.Second
	f, err := fluent.New(cfg)
	if err != nil {
		t.Fatalf("fluent.New: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// postFluent posts events [0, n) of src with the test's times and records.
func postFluent(f *fluent.Fluent, tag, src string, n, size int) error {
	for i := range n {
		sec, nsec := eventTime(i)
		msg := map[string]any{"src": src, "seq": i, "msg": message(src, i, size)}
		if err := f.PostWithTime(tag, time.Unix(int64(sec), int64(nsec)), msg); err != nil {
			return fmt.Errorf("%s post %d: %w", src, i, err)
		}
	}
	return nil
}

// checkFluentEvents checks tag, time and record of every event of src.
func checkFluentEvents(t testing.TB, events []event, tag, src string, size int, subsecond bool) {
	t.Helper()
	bad := 0
	for _, e := range events {
		k := e.key()
		if k.Src != src {
			continue
		}
		sec, nsec := eventTime(int(k.Seq))
		if !subsecond {
			nsec = 0
		}
		var problems []string
		if e.Tag != tag {
			problems = append(problems, fmt.Sprintf("tag %q", e.Tag))
		}
		if e.Sec != int64(sec) || e.Nsec != nsec {
			problems = append(problems, fmt.Sprintf("time %d.%09d, want %d.%09d", e.Sec, e.Nsec, sec, nsec))
		}
		if m, _ := e.Record["msg"].(string); m != message(src, int(k.Seq), size) || len(e.Record) != 3 {
			problems = append(problems, fmt.Sprintf("record %.80v", e.Record))
		}
		if len(problems) > 0 {
			if bad++; bad <= 3 {
				t.Errorf("%s seq %d: %s", src, k.Seq, strings.Join(problems, ", "))
			}
		}
	}
}

var fluentVariants = []struct {
	name string
	cfg  fluent.Config
}{
	{"sync", fluent.Config{}},
	{"sync_ack", fluent.Config{RequestAck: true}},
	{"subsecond", fluent.Config{SubSecondPrecision: true}},
	{"subsecond_ack", fluent.Config{SubSecondPrecision: true, RequestAck: true}},
	{"json", fluent.Config{MarshalAsJSON: true}},
	{"json_ack", fluent.Config{MarshalAsJSON: true, RequestAck: true}},
	{"async", fluent.Config{Async: true}},
	{"async_ack", fluent.Config{Async: true, RequestAck: true}},
	{"async_subsecond_ack", fluent.Config{Async: true, SubSecondPrecision: true, RequestAck: true}},
}

func TestListenerFluentLogger(t *testing.T) {
	for _, v := range fluentVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, ListenerConfig{})
			f := newFluent(t, h, v.cfg)
			const n, size = 300, 120
			tag := "fluent." + v.name
			if err := postFluent(f, tag, v.name, n, size); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil { // async: sends what is pending
				t.Fatal(err)
			}
			h.out.waitSrc(t, v.name, n)
			evs := h.out.Events()
			if dups := checkSeqs(t, evs, v.name, n); dups > 0 {
				t.Errorf("%d duplicates from a client that never had to retry", dups)
			}
			checkFluentEvents(t, evs, tag, v.name, size, v.cfg.SubSecondPrecision && !v.cfg.MarshalAsJSON)
			s := h.ln.Stats()
			if s.Events != n || len(s.Errors) != 0 {
				t.Errorf("stats: %d events, errors %v", s.Events, s.Errors)
			}
			if v.cfg.RequestAck {
				// Counted just after the write the client was waiting for.
				eventually(t, func() bool { return h.ln.Stats().Acks == n }, "%d acks counted (have %d)", n, h.ln.Stats().Acks)
			}
		})
	}
}

// Twenty clients at once, every variant, one listener.
func TestListenerFluentLoggerConcurrent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	const clients, n, size = 20, 500, 100
	var wg sync.WaitGroup
	for i := range clients {
		v := fluentVariants[i%len(fluentVariants)]
		src := fmt.Sprintf("c%02d-%s", i, v.name)
		f := newFluent(t, h, v.cfg)
		wg.Go(func() {
			if err := postFluent(f, "many."+src, src, n, size); err != nil {
				t.Error(err)
			}
			if err := f.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	h.out.waitCount(t, clients*n)
	evs := h.out.Events()
	for i := range clients {
		v := fluentVariants[i%len(fluentVariants)]
		src := fmt.Sprintf("c%02d-%s", i, v.name)
		if dups := checkSeqs(t, evs, src, n); dups > 0 {
			t.Errorf("%s: %d duplicates", src, dups)
		}
		checkFluentEvents(t, evs, "many."+src, src, size, v.cfg.SubSecondPrecision && !v.cfg.MarshalAsJSON)
	}
	if len(evs) != clients*n {
		t.Errorf("%d events, want %d", len(evs), clients*n)
	}
}

func TestListenerFluentLoggerLargeRecords(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	const n, size = 20, 200 << 10
	for _, v := range []struct {
		name string
		cfg  fluent.Config
	}{{"large_ack", fluent.Config{RequestAck: true}}, {"large_async", fluent.Config{Async: true}}, {"large_json", fluent.Config{MarshalAsJSON: true}}} {
		f := newFluent(t, h, v.cfg)
		if err := postFluent(f, "big", v.name, n, size); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		h.out.waitSrc(t, v.name, n)
		evs := h.out.Events()
		checkSeqs(t, evs, v.name, n)
		checkFluentEvents(t, evs, "big", v.name, size, false)
	}
}

// ---- acks ----

// With ack = "upstream" the client's ack waits for Done on the chunk holding its event.
func TestListenerAckUpstream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	f := newFluent(t, h, fluent.Config{RequestAck: true})
	if err := postFluent(f, "ack", "warmup", 1, 50); err != nil { // connect
		t.Fatal(err)
	}
	h.out.Hold()
	posted := make(chan error, 1)
	go func() {
		sec, _ := eventTime(0)
		posted <- f.PostWithTime("ack", time.Unix(int64(sec), 0), map[string]any{"src": "held", "seq": 0, "msg": "x"})
	}()
	eventually(t, func() bool { return h.out.Held() == 1 }, "the chunk to reach the output")
	// The event is in the output's hands but not acked upstream: the client must wait.
	select {
	case err := <-posted:
		t.Fatalf("Post returned (%v) before the chunk was done", err)
	case <-time.After(200 * time.Millisecond):
	}
	if s := h.ln.Stats(); s.Acks != 1 {
		t.Errorf("acks = %d before Done, want 1 (the warm-up)", s.Acks)
	}
	h.out.Release()
	select {
	case err := <-posted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Post did not return after Done")
	}
	eventually(t, func() bool { return h.ln.Stats().Acks == 2 }, "2 acks counted")
}

// With ack = "received" the ack goes out once the events are in the ring.
func TestListenerAckReceived(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{Ack: AckReceived})
	h.out.Hold()
	f := newFluent(t, h, fluent.Config{RequestAck: true})
	done := make(chan error, 1)
	go func() { done <- postFluent(f, "ack", "recv", 5, 50) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Post blocked although ack = received and the events are in the ring")
	}
	if h.out.Held() != 5 || h.ring.Stats().Chunks != 5 {
		t.Errorf("held %d, ring %d chunks: the events should be in the ring, not done", h.out.Held(), h.ring.Stats().Chunks)
	}
}

// A lone synchronous client waits one round trip to the output per event, not a
// batching timer (ChunkAge is 100 ms).
func TestListenerAckLatency(t *testing.T) {
	h := newHarness(t, ListenerConfig{})
	f := newFluent(t, h, fluent.Config{RequestAck: true})
	const n = 200
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if err := f.Post("lat", map[string]any{"src": "lat", "seq": i}); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	med := lat[n/2]
	t.Logf("ack latency: median %v, p90 %v, max %v", med, lat[n*9/10], lat[n-1])
	if med > 20*time.Millisecond {
		t.Errorf("median ack latency %v, want < 20ms: something waits for a timer", med)
	}
}

// ---- other clients and framing ----

const pythonSender = `
import sys
from fluent import sender
port, n = int(sys.argv[1]), int(sys.argv[2])
s = sender.FluentSender('py', host='127.0.0.1', port=port, nanosecond_precision=True)
for i in range(n):
    if not s.emit_with_time('ev', 1700000000 + i + 0.5, {'src': 'python', 'seq': i, 'msg': 'python#%d' % i}):
        print(s.last_error, file=sys.stderr)
        sys.exit(1)
s.close()
`

func TestListenerPythonFluentLogger(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import fluent.sender").Run(); err != nil {
		msg := fmt.Sprintf("Debian's python3-fluent-logger is not importable by %s (%v): apt-get install python3-fluent-logger", python, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg) // CI installs it: a skip there would hide an interop break
		}
		t.Skip(msg)
	}
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	const n = 1000
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", pythonSender, fmt.Sprint(h.port()), fmt.Sprint(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("python sender: %v\n%s", err, out)
	}
	h.out.waitSrc(t, "python", n)
	evs := h.out.Events()
	checkSeqs(t, evs, "python", n)
	for _, e := range evs {
		k := e.key()
		if e.Tag != "py.ev" || e.Sec != 1_700_000_000+k.Seq || e.Nsec != 500_000_000 || e.Record["msg"] != fmt.Sprintf("python#%d", k.Seq) {
			t.Fatalf("event %d: %+v", k.Seq, e)
		}
	}
}

// frameModes builds frames of every mode for events [from, from+n) of src.
func frameOf(mode wire.Mode, tag, src string, from, n, size int, chunk []byte) []byte {
	switch mode {
	case wire.ModeMessage:
		var b []byte
		for i := from; i < from+n; i++ {
			b = append(b, messageFrame(tag, src, i, size, chunk)...)
		}
		return b
	case wire.ModeForward:
		return wire.AppendForward(nil, tag, entries(src, from, n, size), n, chunk)
	default:
		return wire.AppendPackedForward(nil, tag, entries(src, from, n, size), n, chunk)
	}
}

// Many connections at once, every mode, every event byte for byte.
func TestListenerManyConnections(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	const conns, frames, per, size = 50, 10, 20, 80
	modes := []wire.Mode{wire.ModeMessage, wire.ModeForward, wire.ModePackedForward}
	var wg sync.WaitGroup
	for c := range conns {
		rc := dialRaw(t, "tcp", h.addr)
		wg.Go(func() {
			src := fmt.Sprintf("conn%02d", c)
			for f := range frames {
				id := fmt.Appendf(nil, "%s-%d", src, f)
				b := frameOf(modes[(c+f)%3], "many", src, f*per, per, size, id)
				if err := rc.write(b); err != nil {
					t.Error(err)
					return
				}
				// Message mode sends one ack per frame; the others one per batch.
				acks := 1
				if modes[(c+f)%3] == wire.ModeMessage {
					acks = per
				}
				for range acks {
					if _, err := rc.readAck(); err != nil {
						t.Errorf("%s: %v", src, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	h.out.waitCount(t, conns*frames*per)
	evs := h.out.Events()
	for c := range conns {
		src := fmt.Sprintf("conn%02d", c)
		checkSeqs(t, evs, src, frames*per)
		checkRaw(t, evs, src, size)
	}
	if s := h.ln.Stats(); s.Connections != conns || s.Events != conns*frames*per {
		t.Errorf("stats: %d connections, %d events", s.Connections, s.Events)
	}
}

// A frame written one byte at a time, with pauses, is decoded once complete.
func TestListenerFrameSplitAcrossWrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	rc := dialRaw(t, "tcp", h.addr)
	b := frameOf(wire.ModePackedForward, "split", "split", 0, 3, 60, []byte("chunk-1"))
	b = append(b, messageFrame("split", "split", 3, 60, nil)...)
	for i := range b {
		if err := rc.write(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Microsecond)
	}
	id, err := rc.readAck()
	if err != nil || string(id) != "chunk-1" {
		t.Fatalf("ack %q, %v", id, err)
	}
	h.out.waitSrc(t, "split", 4)
	checkSeqs(t, h.out.Events(), "split", 4)
	checkRaw(t, h.out.Events(), "split", 60)
}

// A long stream of mixed frames cut at random points (seeded) arrives intact.
func TestListenerRandomPieces(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	rc := dialRaw(t, "tcp", h.addr)
	var stream []byte
	const frames, per = 300, 5
	modes := []wire.Mode{wire.ModeMessage, wire.ModeForward, wire.ModePackedForward}
	for f := range frames {
		stream = append(stream, frameOf(modes[f%3], "pieces", "pieces", f*per, per, 40+f%200, nil)...)
		if f%17 == 0 {
			stream = append(stream, 0xc0) // keep-alive nil between frames
		}
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for len(stream) > 0 {
		n := min(len(stream), 1+rng.IntN(300))
		if err := rc.write(stream[:n]); err != nil {
			t.Fatal(err)
		}
		stream = stream[n:]
	}
	h.out.waitSrc(t, "pieces", frames*per)
	checkSeqs(t, h.out.Events(), "pieces", frames*per)
}

// Thousands of frames in one write are batched into few chunks.
func TestListenerManyFramesOneWrite(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	rc := dialRaw(t, "tcp", h.addr)
	const n = 5000
	if err := rc.write(frameOf(wire.ModeMessage, "burst", "burst", 0, n, 60, nil)); err != nil {
		t.Fatal(err)
	}
	h.out.waitSrc(t, "burst", n)
	evs := h.out.Events()
	checkSeqs(t, evs, "burst", n)
	checkRaw(t, evs, "burst", 60)
	if c := h.out.Chunks(); c > n/20 {
		t.Errorf("%d events in %d chunks: a burst should be batched", n, c)
	}
	if s := h.ln.Stats(); s.Frames != n {
		t.Errorf("frames = %d", s.Frames)
	}
}

// Keep-alive nils are ignored; an entry that is not a valid event is dropped and
// counted, and the frame is still acked (as fluentd does).
func TestListenerKeepAliveAndInvalidEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	rc := dialRaw(t, "tcp", h.addr)
	floatTime := wire.AppendEntry(nil, []byte{0xcb, 0x41, 0xd9, 0, 0, 0, 0, 0, 0}, record("x", 0, 30))
	good := entries("inv", 0, 2, 40)
	stream := []byte{0xc0, 0xc0}
	stream = append(stream, wire.AppendPackedForward(nil, "inv", append(append(slices.Clone(good[:len(good)/2]), floatTime...), good[len(good)/2:]...), 3, []byte("c1"))...)
	stream = append(stream, 0xc0)
	stream = append(stream, wire.AppendPackedForward(nil, "inv", floatTime, 1, []byte("c2"))...)
	if err := rc.write(stream); err != nil {
		t.Fatal(err)
	}
	// c2 (nothing valid) is acked at once, c1 when its chunk is done: any order.
	var acks []string
	for range 2 {
		id, err := rc.readAck()
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, string(id))
	}
	if slices.Sort(acks); !slices.Equal(acks, []string{"c1", "c2"}) {
		t.Fatalf("acks %q", acks)
	}
	h.out.waitSrc(t, "inv", 2)
	checkRaw(t, h.out.Events(), "inv", 40)
	s := h.ln.Stats()
	if s.InvalidEvents != 2 || s.Events != 2 || s.Frames != 2 || s.Errors["invalid_event"] != 2 {
		t.Errorf("stats = %+v", s)
	}
}

// ---- security and transports ----

// dialHandshake dials and runs the shared_key handshake as hostname "test-client".
func dialHandshake(t testing.TB, h *harness, key string) (*rawClient, error) {
	rc := dialRaw(t, "tcp", h.addr)
	_ = rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := wire.ClientHandshake(rc.dec, rc.c, wire.ClientAuth{Hostname: "test-client", SharedKey: key})
	_ = rc.c.SetDeadline(time.Time{})
	return rc, err
}

func TestListenerSharedKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{SharedKey: "s3cret", SelfHostname: "fwdmux-test"})
	rc, err := dialHandshake(t, h, "s3cret")
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := rc.sendAcked("hs", "hs", 0, 20, 50); err != nil {
		t.Fatal(err)
	}
	h.out.waitSrc(t, "hs", 20)
	checkRaw(t, h.out.Events(), "hs", 50)

	// With users, the password is checked too.
	hu := newHarness(t, ListenerConfig{SharedKey: "k", Users: map[string]string{"alice": "pw"}})
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{{"alice", "pw", true}, {"alice", "nope", false}, {"bob", "pw", false}} {
		c := dialRaw(t, "tcp", hu.addr)
		_, err := wire.ClientHandshake(c.dec, c.c, wire.ClientAuth{Hostname: "cl", SharedKey: "k", Username: tc.user, Password: tc.pass})
		if (err == nil) != tc.ok {
			t.Errorf("user %s/%s: handshake err = %v", tc.user, tc.pass, err)
		}
	}
	eventually(t, func() bool { return hu.errors()["handshake"] == 2 }, "2 handshake errors (have %v)", hu.errors())
}

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns their paths
// and a pool trusting the certificate.
func selfSigned(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fwdmux test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestListenerTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	h := newHarness(t, ListenerConfig{TLSCertFile: certFile, TLSKeyFile: keyFile, SharedKey: "k"})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", h.addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, dec: wire.NewDecoder(c, wire.Limits{})}
	// TLS wraps the whole connection, HELO included.
	if _, err := wire.ClientHandshake(rc.dec, c, wire.ClientAuth{Hostname: "tls-client", SharedKey: "k"}); err != nil {
		t.Fatalf("handshake over TLS: %v", err)
	}
	if err := rc.write(frameOf(wire.ModePackedForward, "tls", "tls", 0, 50, 100, []byte("t1"))); err != nil {
		t.Fatal(err)
	}
	if id, err := rc.readAck(); err != nil || string(id) != "t1" {
		t.Fatalf("ack %q, %v", id, err)
	}
	if err := rc.sendAcked("tls", "tls", 50, 10, 100); err != nil {
		t.Fatal(err)
	}
	h.out.waitSrc(t, "tls", 60)
	checkSeqs(t, h.out.Events(), "tls", 60)
	checkRaw(t, h.out.Events(), "tls", 100)

	// A plain-text client on the TLS port is refused, alone.
	plain := dialRaw(t, "tcp", h.addr)
	plain.write(frameOf(wire.ModeMessage, "tls", "plain", 0, 1, 10, nil))
	if err := plain.waitClosed(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.errors()["tls"] == 1 }, "a tls error (have %v)", h.errors())
}

func TestListenerUnixSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t.Run("addr", func(t *testing.T) {
		path := filepath.Join(dir, "fwd.sock")
		h := newHarness(t, ListenerConfig{Addr: "unix://" + path})
		if h.ln.Addr().Network() != "unix" {
			t.Fatalf("Addr = %v", h.ln.Addr())
		}
		f, err := fluent.New(fluent.Config{FluentNetwork: "unix", FluentSocketPath: path, RequestAck: true, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := postFluent(f, "unix", "unix", 50, 60); err != nil {
			t.Fatal(err)
		}
		h.out.waitSrc(t, "unix", 50)
		checkFluentEvents(t, h.out.Events(), "unix", "unix", 60, false)
	})
	t.Run("beside_tcp", func(t *testing.T) {
		path := filepath.Join(dir, "side.sock")
		// A stale socket file left by a killed process is replaced.
		stale, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		stale.(*net.UnixListener).SetUnlinkOnClose(false)
		stale.Close()
		h := newHarness(t, ListenerConfig{UnixPath: path})
		rc := dialRaw(t, "unix", path)
		if err := rc.sendAcked("side", "side", 0, 10, 60); err != nil {
			t.Fatal(err)
		}
		tc := dialRaw(t, "tcp", h.addr)
		if err := tc.sendAcked("side", "side-tcp", 0, 10, 60); err != nil {
			t.Fatal(err)
		}
		h.out.waitCount(t, 20)
		checkRaw(t, h.out.Events(), "side", 60)
		// A socket in use is not stolen.
		ln2, _ := NewListener(ListenerConfig{Addr: "127.0.0.1:0", UnixPath: path}, NewRing(RingConfig{}), nil)
		if err := ln2.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("second listener on a live socket: %v", err)
		}
	})
}

func TestListenerUDPHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", h.port()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 16)
	// UDP may drop a datagram even on loopback: a few tries.
	for try := 0; ; try++ {
		if _, err := c.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil {
			if n != 1 || buf[0] != 0 {
				t.Errorf("heartbeat reply % x", buf[:n])
			}
			break
		}
		if try == 3 {
			t.Fatalf("no heartbeat reply: %v", err)
		}
	}
	if h.ln.Stats().Heartbeats < 1 {
		t.Error("heartbeat not counted")
	}
	off := false
	h2 := newHarness(t, ListenerConfig{UDPHeartbeat: &off})
	if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", h2.port())); err != nil {
		t.Errorf("udp_heartbeat=false still binds the UDP port: %v", err)
	} else {
		pc.Close()
	}
}

func TestListenerMaxConnections(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{MaxConnections: 2})
	a := dialRaw(t, "tcp", h.addr)
	b := dialRaw(t, "tcp", h.addr)
	eventually(t, func() bool { return h.ln.Stats().ActiveConnections == 2 }, "2 active connections")
	extra := dialRaw(t, "tcp", h.addr)
	if err := extra.waitClosed(10 * time.Second); err != nil {
		t.Fatalf("third connection: %v", err)
	}
	if n := h.errors()["max_connections"]; n != 1 {
		t.Errorf("max_connections errors = %d", n)
	}
	if err := a.sendAcked("max", "a", 0, 5, 40); err != nil {
		t.Fatal(err)
	}
	if err := b.sendAcked("max", "b", 0, 5, 40); err != nil {
		t.Fatal(err)
	}
	// A slot frees when a client leaves.
	a.c.Close()
	eventually(t, func() bool { return h.ln.Stats().ActiveConnections == 1 }, "1 active connection")
	c := dialRaw(t, "tcp", h.addr)
	if err := c.sendAcked("max", "c", 0, 5, 40); err != nil {
		t.Fatal(err)
	}
}

func TestListenerIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	h := newHarness(t, ListenerConfig{IdleTimeout: conf.Duration(idle)})
	silent := dialRaw(t, "tcp", h.addr)
	busy := dialRaw(t, "tcp", h.addr)
	start := time.Now()
	// The busy client sends a frame every idle/3 and stays connected.
	for i := range 6 {
		if err := busy.sendAcked("idle", "busy", i, 1, 40); err != nil {
			t.Fatalf("busy client: %v", err)
		}
		time.Sleep(idle / 3)
	}
	if err := silent.waitClosed(10 * time.Second); err != nil {
		t.Fatalf("silent client: %v", err)
	}
	if d := time.Since(start); d < idle {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
	if err := busy.sendAcked("idle", "busy", 6, 1, 40); err != nil {
		t.Fatalf("busy client closed: %v", err)
	}
	if n := h.errors()["idle_timeout"]; n != 1 {
		t.Errorf("idle_timeout errors = %d, want 1", n)
	}
	if lines := h.logs.lines("closing idle connection", "peer="+silent.c.LocalAddr().String()); len(lines) != 1 {
		t.Errorf("log lines %q", lines)
	}
}

// A client silent because it waits for an ack the upstream has not given yet is not
// idle: closing it would only make it resend.
func TestListenerIdleWhileAckOwed(t *testing.T) {
	t.Parallel()
	const idle = 500 * time.Millisecond
	h := newHarness(t, ListenerConfig{IdleTimeout: conf.Duration(idle)})
	h.out.Hold()
	waiting := dialRaw(t, "tcp", h.addr)
	silent := dialRaw(t, "tcp", h.addr)
	if err := waiting.write(messageFrame("owed", "owed", 0, 40, []byte("owed-0"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.out.Held() == 1 }, "the chunk to reach the output")
	if err := silent.waitClosed(10 * time.Second); err != nil {
		t.Fatalf("silent client: %v", err)
	}
	time.Sleep(3 * idle) // several idle periods with the ack still owed
	h.out.Release()
	if id, err := waiting.readAck(); err != nil || string(id) != "owed-0" {
		t.Fatalf("the client waiting for its ack was closed: %q, %v", id, err)
	}
	// Idle counts from the ack, not from the frame before the long wait: the client
	// has a whole idle period to send its next frame.
	time.Sleep(idle / 2)
	if err := waiting.write(messageFrame("owed", "owed", 1, 40, []byte("owed-1"))); err != nil {
		t.Fatal(err)
	}
	if id, err := waiting.readAck(); err != nil || string(id) != "owed-1" {
		t.Fatalf("closed within an idle period after its ack: %q, %v", id, err)
	}
	if n := h.errors()["idle_timeout"]; n != 1 {
		t.Errorf("idle_timeout errors = %d, want 1 (the silent client only)", n)
	}
}

// A client that sends half a frame and stalls does not hold back the events it sent
// before: the age backstop flushes them.
func TestListenerAgeBackstop(t *testing.T) {
	t.Parallel()
	const age = 50 * time.Millisecond
	h := newHarness(t, ListenerConfig{BatchConfig: BatchConfig{ChunkAge: conf.Duration(age)}})
	rc := dialRaw(t, "tcp", h.addr)
	first := frameOf(wire.ModePackedForward, "age", "age", 0, 10, 50, nil)
	second := frameOf(wire.ModePackedForward, "age", "age", 10, 10, 50, nil)
	start := time.Now()
	if err := rc.write(append(slices.Clone(first), second[:len(second)/2]...)); err != nil {
		t.Fatal(err)
	}
	h.out.waitSrc(t, "age", 10)
	if d := time.Since(start); d < age {
		t.Errorf("flushed after %v, before the age limit: the drained-input flush fired on a partial frame", d)
	} else {
		t.Logf("held %v (ChunkAge %v)", d, age)
	}
	if err := rc.write(second[len(second)/2:]); err != nil {
		t.Fatal(err)
	}
	h.out.waitSrc(t, "age", 20)
	checkSeqs(t, h.out.Events(), "age", 20)
}

// With the ring full, connections stop reading (TCP pushes back) and nothing is lost.
func TestListenerBackpressure(t *testing.T) {
	t.Parallel()
	h := newHarnessRing(t, ListenerConfig{}, RingConfig{MaxChunks: 2, CoalesceBytes: -1}) // counts chunks: no merging
	h.out.Hold()
	const conns, frames, per, size = 4, 40, 50, 1000 // 2 MB per connection
	var wg sync.WaitGroup
	for c := range conns {
		rc := dialRaw(t, "tcp", h.addr)
		wg.Go(func() {
			src := fmt.Sprintf("bp%d", c)
			for i := range frames {
				if err := rc.write(frameOf(wire.ModeForward, "bp", src, i*per, per, size, nil)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	eventually(t, func() bool { return h.out.Held() == 2 }, "the output to hold 2 chunks")
	time.Sleep(200 * time.Millisecond) // let the connections run into the full ring
	if s := h.ring.Stats(); s.Chunks != 2 {
		t.Errorf("ring holds %d chunks, bound 2", s.Chunks)
	}
	if n := h.ln.Stats().Events; n >= conns*frames*per {
		t.Errorf("the listener decoded all %d events with the ring full: it did not stop reading", n)
	}
	h.out.Release()
	wg.Wait()
	h.out.waitCount(t, conns*frames*per)
	for c := range conns {
		checkSeqs(t, h.out.Events(), fmt.Sprintf("bp%d", c), frames*per)
	}
	if h.ring.Stats().BlockedSeconds == 0 {
		t.Error("no blocked time counted")
	}
}

// Cancelling the listener's context stops it: Run returns, every event decoded
// before the cancel is in the ring, connections are closed, no goroutine is left
// (TestMain checks leaks).
func TestListenerShutdown(t *testing.T) {
	t.Parallel()
	// A long age: only the shutdown can flush these partial chunks.
	h := newHarness(t, ListenerConfig{BatchConfig: BatchConfig{ChunkAge: conf.Duration(time.Hour)}})
	const conns, per = 5, 20
	var clients []*rawClient
	for c := range conns {
		rc := dialRaw(t, "tcp", h.addr)
		src := fmt.Sprintf("shut%d", c)
		first := frameOf(wire.ModePackedForward, "shut", src, 0, per, 50, nil)
		half := frameOf(wire.ModePackedForward, "shut", src, per, per, 50, nil)
		if err := rc.write(append(first, half[:len(half)/2]...)); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, rc)
	}
	idle := dialRaw(t, "tcp", h.addr) // a connected client with nothing pending
	eventually(t, func() bool { return h.ln.Stats().Events == conns*per }, "the listener to decode %d events", conns*per)
	if s := h.ring.Stats(); s.PutEvents != 0 {
		t.Fatalf("%d events in the ring before shutdown: the test needs them pending", s.PutEvents)
	}
	h.stop(t)
	if s := h.ring.Stats(); s.PutEvents != conns*per {
		t.Errorf("after Run returned, %d events in the ring, want %d", s.PutEvents, conns*per)
	}
	for _, rc := range append(clients, idle) {
		if err := rc.waitClosed(5 * time.Second); err != nil {
			t.Error(err)
		}
	}
	h.out.waitCount(t, conns*per)
	for c := range conns {
		checkSeqs(t, h.out.Events(), fmt.Sprintf("shut%d", c), per)
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Error("the listener still accepts after Run returned")
	}
}

// At shutdown a full ring gets FlushTimeout; what it does not take is counted, and
// the clients are not acked for it.
func TestListenerShutdownRingFull(t *testing.T) {
	t.Parallel()
	h := newHarnessRing(t, ListenerConfig{
		FlushTimeout: conf.Duration(100 * time.Millisecond),
		BatchConfig:  BatchConfig{ChunkAge: conf.Duration(time.Hour)},
	}, RingConfig{MaxChunks: 1})
	h.out.Hold()
	if err := h.ring.Put(t.Context(), NewChunk("filler", entry("filler", 0, 10), 1)); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, "tcp", h.addr)
	half := frameOf(wire.ModePackedForward, "x", "x", 5, 5, 50, nil)
	rc.write(append(frameOf(wire.ModePackedForward, "x", "x", 0, 5, 50, []byte("id")), half[:10]...))
	eventually(t, func() bool { return h.ln.Stats().Events == 5 }, "5 decoded events")
	h.stop(t)
	if n := h.errors()["shutdown_unflushed"]; n != 1 {
		t.Errorf("shutdown_unflushed = %d, want 1", n)
	}
	if lines := h.logs.lines("events not accepted at close", "events=5"); len(lines) != 1 {
		t.Errorf("log lines %q", lines)
	}
	if h.ln.Stats().Acks != 0 {
		t.Error("a client was acked for events the ring never took")
	}
}
