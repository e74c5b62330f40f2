package balance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/conf"
	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/wire"
)

// newRing counts chunks one by one: these tests reason about chunks, so merging is off.
func newRing() *proxy.Ring { return proxy.NewRing(proxy.RingConfig{CoalesceBytes: -1}) }

// drain closes intake and waits for Run to return nil with everything acked.
func drain(t *testing.T, ring *proxy.Ring, r *running, pr *producer, chunks int) {
	t.Helper()
	ring.CloseIntake()
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !ring.Drained() {
		c, e := ring.Pending()
		t.Fatalf("ring not drained after Run returned: %d chunks / %d events pending", c, e)
	}
	if got := pr.acked.Load(); got != int64(chunks) || pr.dones.Load() != int64(chunks) {
		t.Fatalf("acked %d, done %d, want %d", got, pr.dones.Load(), chunks)
	}
}

func TestWeightedSpread(t *testing.T) {
	ring := newRing()
	a := newTestServer(t, withName("a"))
	b := newTestServer(t, withName("b"))
	c := newTestServer(t, withName("c"))
	cfg := fastConfig()
	cfg.MaxInFlight = 1024 // the spread, not the capacity, decides here
	p, err := NewPool(cfg, ring, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	weights := map[*testServer]int{a: 1, b: 2, c: 3}
	for s, w := range weights {
		mustAdd(t, p, upstreamFor(s, func(u *UpstreamConfig) { u.Weight = w }))
	}
	r := startPool(t, p)
	eventually(t, 5*time.Second, allConnected(p, "a", "b", "c"), "all connected")
	const chunks = 1200
	pr := &producer{ring: ring}
	pr.put(t, context.Background(), "spread", chunks, 5)
	drain(t, ring, r, pr, chunks)
	checkDelivered(t, pr.sent, a, b, c)
	for s, w := range weights {
		want := float64(chunks) * float64(w) / 6
		got := float64(s.frameCount())
		if math.Abs(got-want) > 0.05*want {
			t.Errorf("%s (weight %d): %v chunks, want %v ±5%%", s.name, w, got, want)
		}
	}
	tags := p.SentByTag()
	if tags["spread"].Chunks != chunks || tags["spread"].Events != chunks*5 {
		t.Errorf("SentByTag = %+v", tags)
	}
}

func TestUpstreamKilledMidStream(t *testing.T) {
	ring := newRing()
	a := newTestServer(t, withName("a"))
	b := newTestServer(t, withName("b"))
	p, _ := NewPool(fastConfig(), ring, testLogger(t))
	mustAdd(t, p, upstreamFor(a))
	mustAdd(t, p, upstreamFor(b))
	r := startPool(t, p)
	eventually(t, 5*time.Second, allConnected(p, "a", "b"), "connected")
	pr := &producer{ring: ring}
	const chunks = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		pr.put(t, context.Background(), "kill", chunks, 10)
	}()
	eventually(t, 5*time.Second, func() bool { return a.frameCount() > 100 }, "a receives")
	a.kill()
	<-done
	drain(t, ring, r, pr, chunks)
	checkDelivered(t, pr.sent, a, b)
	st, _ := p.Get("a")
	if st.LastError == "" {
		t.Errorf("a: no last error after being killed: %+v", st)
	}
}

func TestNeverAcks(t *testing.T) {
	ring := newRing()
	a := newTestServer(t, withName("a"))
	a.noAck.Store(true)
	b := newTestServer(t, withName("b"))
	cfg := fastConfig()
	cfg.AckTimeout = conf.Duration(300 * time.Millisecond)
	cfg.BreakerOpenTimeout = conf.Duration(10 * time.Second)
	p, _ := NewPool(cfg, ring, testLogger(t))
	mustAdd(t, p, upstreamFor(a))
	mustAdd(t, p, upstreamFor(b))
	r := startPool(t, p)
	eventually(t, 5*time.Second, allConnected(p, "a", "b"), "connected")
	pr := &producer{ring: ring}
	const chunks = 300
	pr.put(t, context.Background(), "noack", chunks, 10)
	eventually(t, 5*time.Second, func() bool {
		st, _ := p.Get("a")
		return st.Breaker == BreakerOpen
	}, "a's breaker opens")
	st, _ := p.Get("a")
	if !strings.Contains(st.LastError, "ack timeout") || st.Retries == 0 || st.Eligible {
		t.Errorf("a after ack timeouts: %+v", st)
	}
	drain(t, ring, r, pr, chunks)
	checkDelivered(t, pr.sent, b)
	if _, frames := a.received(); frames != 0 {
		t.Errorf("a recorded %d acked frames", frames)
	}
}

func TestSlowUpstream(t *testing.T) {
	ring := newRing()
	slow := newTestServer(t, withName("slow"), withAckDelay(50*time.Millisecond))
	fast := newTestServer(t, withName("fast"))
	p, _ := NewPool(fastConfig(), ring, testLogger(t))
	mustAdd(t, p, upstreamFor(slow))
	mustAdd(t, p, upstreamFor(fast))
	r := startPool(t, p)
	eventually(t, 5*time.Second, allConnected(p, "slow", "fast"), "connected")
	pr := &producer{ring: ring}
	const chunks = 600
	pr.put(t, context.Background(), "slow", chunks, 10)
	drain(t, ring, r, pr, chunks)
	if dups := checkDelivered(t, pr.sent, slow, fast); dups != 0 {
		t.Errorf("a slow but timely upstream caused %d duplicates", dups)
	}
	if s, f := slow.frameCount(), fast.frameCount(); s >= f {
		t.Errorf("slow upstream got %d chunks, fast %d: max_in_flight should shift load", s, f)
	}
}

func TestAllDownThenBack(t *testing.T) {
	ring := newRing()
	a := newTestServer(t, withName("a"))
	b := newTestServer(t, withName("b"))
	p, _ := NewPool(fastConfig(), ring, testLogger(t))
	mustAdd(t, p, upstreamFor(a))
	mustAdd(t, p, upstreamFor(b))
	r := startPool(t, p)
	eventually(t, 5*time.Second, allConnected(p, "a", "b"), "connected")
	a.kill()
	b.kill()
	eventually(t, 5*time.Second, func() bool { return p.Eligible() == 0 }, "no eligible upstream")
	pr := &producer{ring: ring}
	const chunks = 100
	pr.put(t, context.Background(), "outage", chunks, 10)
	time.Sleep(300 * time.Millisecond) // an outage: nothing may be lost or finished meanwhile
	if n := pr.dones.Load(); n != 0 {
		t.Fatalf("%d chunks finished while every upstream was down", n)
	}
	if c, _ := ring.Pending(); c < chunks-1 {
		t.Fatalf("%d chunks pending during the outage, want >= %d (at most one held by the dispatcher)", c, chunks-1)
	}
	a.restart()
	b.restart()
	drain(t, ring, r, pr, chunks)
	checkDelivered(t, pr.sent, a, b)
}

func TestRemoveAndAdd(t *testing.T) {
	ring := newRing()
	stuck := newTestServer(t, withName("stuck"))
	stuck.noAck.Store(true)
	other := newTestServer(t, withName("other"))
	cfg := fastConfig()
	cfg.AckTimeout = conf.Duration(time.Minute) // only Remove can free stuck's chunks in time
	p, _ := NewPool(cfg, ring, testLogger(t))
	mustAdd(t, p, upstreamFor(stuck))
	r := startPool(t, p)
	eventually(t, 5*time.Second, allConnected(p, "stuck"), "connected")
	pr := &producer{ring: ring}
	pr.put(t, context.Background(), "rm", 20, 10)
	eventually(t, 5*time.Second, func() bool {
		st, _ := p.Get("stuck")
		return st.InFlightChunks == cfg.MaxInFlight
	}, "stuck holds max_in_flight chunks")
	mustAdd(t, p, upstreamFor(other))
	if err := p.Remove("stuck"); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Get("stuck"); ok {
		t.Fatal("removed upstream still listed")
	}
	if err := p.Remove("stuck"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v, want ErrNotFound", err)
	}
	if _, err := p.Add(upstreamFor(other)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate add: %v, want ErrDuplicate", err)
	}
	start := time.Now()
	eventually(t, 5*time.Second, func() bool { return pr.acked.Load() == 20 }, "everything acked by the added upstream")
	if time.Since(start) > 3*time.Second {
		t.Errorf("re-queued chunks took %v", time.Since(start))
	}
	third := newTestServer(t, withName("third"))
	mustAdd(t, p, upstreamFor(third))
	eventually(t, 5*time.Second, allConnected(p, "third"), "added upstream connects")
	pr.put(t, context.Background(), "rm", 200, 10)
	drain(t, ring, r, pr, 220)
	checkDelivered(t, pr.sent, other, third)
	if third.frameCount() == 0 {
		t.Error("added upstream got nothing")
	}
	if len(p.List()) != 2 {
		t.Errorf("List = %d upstreams, want 2", len(p.List()))
	}
}

func TestStandby(t *testing.T) {
	ring := newRing()
	prim := newTestServer(t, withName("primary"))
	stby := newTestServer(t, withName("standby"))
	p, _ := NewPool(fastConfig(), ring, testLogger(t))
	mustAdd(t, p, upstreamFor(prim))
	mustAdd(t, p, upstreamFor(stby, func(u *UpstreamConfig) { u.Standby = true }))
	r := startPool(t, p)
	eventually(t, 5*time.Second, allConnected(p, "primary", "standby"), "connected")
	pr := &producer{ring: ring}
	pr.put(t, context.Background(), "sb", 100, 10)
	eventually(t, 5*time.Second, func() bool { return pr.acked.Load() == 100 }, "acked")
	if n := stby.frameCount(); n != 0 {
		t.Fatalf("standby got %d chunks while the primary was up", n)
	}
	prim.kill()
	eventually(t, 5*time.Second, func() bool {
		st, _ := p.Get("primary")
		return !st.Eligible
	}, "primary out")
	pr.put(t, context.Background(), "sb", 100, 10)
	eventually(t, 5*time.Second, func() bool { return pr.acked.Load() == 200 }, "acked by standby")
	if stby.frameCount() == 0 {
		t.Fatal("standby unused while the primary was out")
	}
	prim.restart()
	eventually(t, 5*time.Second, func() bool {
		st, _ := p.Get("primary")
		return st.Eligible && st.Connected
	}, "primary back")
	before := stby.frameCount()
	pr.put(t, context.Background(), "sb", 100, 10)
	drain(t, ring, r, pr, 300)
	checkDelivered(t, pr.sent, prim, stby)
	// The half-open probe decides when the primary is back; at most one chunk may
	// still reach the standby in between.
	if n := stby.frameCount() - before; n > 1 {
		t.Errorf("standby got %d chunks after the primary came back", n)
	}
}

func TestSharedKey(t *testing.T) {
	for _, tt := range []struct {
		name, key string
		ok        bool
	}{{"good key", "s3cret", true}, {"bad key", "wrong", false}} {
		t.Run(tt.name, func(t *testing.T) {
			ring := newRing()
			s := newTestServer(t, withName("secure"), withSharedKey("s3cret"))
			p, _ := NewPool(fastConfig(), ring, testLogger(t))
			mustAdd(t, p, upstreamFor(s, func(u *UpstreamConfig) {
				u.SharedKey = tt.key
				u.SelfHostname = "fwdmux-test"
			}))
			r := startPool(t, p)
			pr := &producer{ring: ring}
			pr.put(t, context.Background(), "auth", 10, 10)
			if tt.ok {
				drain(t, ring, r, pr, 10)
				checkDelivered(t, pr.sent, s)
				return
			}
			eventually(t, 5*time.Second, func() bool {
				st, _ := p.Get("secure")
				return strings.Contains(st.LastError, "authentication failed")
			}, "auth failure reported")
			st, _ := p.Get("secure")
			if st.Connected || pr.dones.Load() != 0 || !st.SharedKeySet {
				t.Fatalf("bad key: %+v, dones %d", st, pr.dones.Load())
			}
			eventually(t, 5*time.Second, func() bool { return p.Eligible() == 0 }, "breaker opens on auth failures")
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if c, _ := ring.Pending(); c != 10 {
				t.Fatalf("pending %d, want all 10 back in the ring", c)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ring := newRing()
	s := newTestServer(t, withName("tls"), withTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	p, _ := NewPool(fastConfig(), ring, testLogger(t))
	mustAdd(t, p, upstreamFor(s, func(u *UpstreamConfig) {
		u.Address = "tls://" + s.addr
		u.TLSCAFile = ca
		u.TLSServerName = "fwdmux.test"
	}))
	r := startPool(t, p)
	pr := &producer{ring: ring}
	pr.put(t, context.Background(), "tls", 50, 10)
	drain(t, ring, r, pr, 50)
	checkDelivered(t, pr.sent, s)
}

func TestTLSUnknownCA(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	s := newTestServer(t, withName("tls"), withTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	p, _ := NewPool(fastConfig(), newRing(), testLogger(t))
	mustAdd(t, p, upstreamFor(s, func(u *UpstreamConfig) { u.Address = "tls://" + s.addr }))
	startPool(t, p)
	eventually(t, 5*time.Second, func() bool {
		st, _ := p.Get("tls")
		return strings.Contains(st.LastError, "certificate")
	}, "certificate error reported")
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fwdmux.test"},
		DNSNames:              []string{"fwdmux.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestDrainDeadline(t *testing.T) {
	ring := newRing()
	s := newTestServer(t, withName("stuck"))
	s.noAck.Store(true)
	cfg := fastConfig()
	cfg.AckTimeout = conf.Duration(time.Minute)
	p, _ := NewPool(cfg, ring, testLogger(t))
	mustAdd(t, p, upstreamFor(s))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	eventually(t, 5*time.Second, allConnected(p, "stuck"), "connected")
	pr := &producer{ring: ring}
	pr.put(t, context.Background(), "deadline", 30, 10)
	eventually(t, 5*time.Second, func() bool {
		st, _ := p.Get("stuck")
		return st.InFlightChunks == cfg.MaxInFlight
	}, "chunks in flight")
	ring.CloseIntake()
	time.Sleep(50 * time.Millisecond)
	cancel() // the drain deadline
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return at the drain deadline")
	}
	if n := pr.dones.Load(); n != 0 {
		t.Fatalf("%d chunks finished without an ack", n)
	}
	if c, e := ring.Pending(); c != 30 || e != 300 {
		t.Fatalf("pending %d chunks / %d events, want 30 / 300", c, e)
	}
}

func TestRequireAckFalseAndTimeAsInteger(t *testing.T) {
	ring := newRing()
	s := newTestServer(t, withName("old"))
	no := false
	p, _ := NewPool(fastConfig(), ring, testLogger(t))
	mustAdd(t, p, upstreamFor(s, func(u *UpstreamConfig) {
		u.RequireAck = &no
		u.TimeAsInteger = true
		u.Heartbeat = HeartbeatNone
	}))
	r := startPool(t, p)
	pr := &producer{ring: ring}
	pr.put(t, context.Background(), "old", 40, 10)
	drain(t, ring, r, pr, 40)
	eventually(t, 5*time.Second, func() bool { return s.frameCount() == 40 }, "all frames read")
	checkDelivered(t, pr.sent, s)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, withChunk := range s.chunkOp {
		if withChunk {
			t.Fatalf("frame %d carried a chunk option with require_ack=false", i)
		}
	}
	if !s.intTime {
		t.Fatal("time_as_integer: an entry kept its EventTime")
	}
}

func TestUDPHeartbeatFeedsPhi(t *testing.T) {
	s := newTestServer(t, withName("udp"))
	pc, err := net.ListenPacket("udp", s.addr)
	if err != nil {
		t.Skipf("udp on %s: %v", s.addr, err)
	}
	pongs := make(chan struct{}, 1000)
	go func() {
		buf := make([]byte, 16)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte{0}, from)
			pongs <- struct{}{}
		}
	}()
	defer pc.Close()
	p, _ := NewPool(fastConfig(), newRing(), testLogger(t))
	mustAdd(t, p, upstreamFor(s, func(u *UpstreamConfig) { u.Heartbeat = HeartbeatUDP }))
	startPool(t, p)
	eventually(t, 5*time.Second, func() bool { return len(pongs) >= 3 }, "udp heartbeats answered")
	st, _ := p.Get("udp")
	if !st.Eligible || st.Phi > 16 {
		t.Fatalf("status %+v", st)
	}
}

func TestRunWithoutUpstreamsWaits(t *testing.T) {
	ring := newRing()
	p, _ := NewPool(fastConfig(), ring, testLogger(t))
	r := startPool(t, p)
	pr := &producer{ring: ring}
	pr.put(t, context.Background(), "none", 5, 1)
	if p.Eligible() != 0 {
		t.Fatal("eligible with no upstream")
	}
	s := newTestServer(t, withName("late"))
	mustAdd(t, p, upstreamFor(s))
	drain(t, ring, r, pr, 5)
	checkDelivered(t, pr.sent, s)
}

var _ = wire.AppendAck

func TestMisbehavingConnections(t *testing.T) {
	for _, tt := range []struct {
		name    string
		setup   func(*testServer)
		wantErr string
	}{
		{"wrong ack id", func(s *testServer) { s.wrongAck.Store(true) }, "not in flight"},
		{"closes after 3 frames", func(s *testServer) { s.closeAfter.Store(3) }, "EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ring := newRing()
			bad := newTestServer(t, withName("bad"))
			tt.setup(bad)
			good := newTestServer(t, withName("good"))
			p, _ := NewPool(fastConfig(), ring, testLogger(t))
			mustAdd(t, p, upstreamFor(bad))
			mustAdd(t, p, upstreamFor(good))
			r := startPool(t, p)
			eventually(t, 5*time.Second, allConnected(p, "bad", "good"), "connected")
			pr := &producer{ring: ring}
			pr.put(t, context.Background(), "bad", 300, 10)
			drain(t, ring, r, pr, 300)
			checkDelivered(t, pr.sent, good, bad)
			st, _ := p.Get("bad")
			// A peer that closes with our writes unread may surface as a reset, not EOF.
			closed := tt.wantErr == "EOF" && strings.Contains(st.LastError, "connection reset by peer")
			if !(strings.Contains(st.LastError, tt.wantErr) || closed) || st.Retries == 0 {
				t.Errorf("bad upstream: last error %q, retries %d; want %q", st.LastError, st.Retries, tt.wantErr)
			}
		})
	}
}
