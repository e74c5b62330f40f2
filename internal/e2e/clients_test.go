package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/tinylib/msgp/msgp"

	"github.com/fwdmux/fwdmux/internal/bench"
	"github.com/fwdmux/fwdmux/wire"
)

// TestThousandConnections: 1,000 acking clients at once, beside clients that connect
// and never send and clients that send half a frame and stall.
func TestThousandConnections(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, "")})
	ctx, cancel := context.WithTimeout(context.Background(), dur(120*time.Second))
	defer cancel()
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	half := wire.AppendPackedForward(nil, "stall", entries("stall", 100), 100, []byte("chunk-stall"))
	for i := range 200 {
		c, err := net.Dial("tcp", p.Listen)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			c.Write(half[:len(half)/2])
		}
		idle = append(idle, c)
	}
	l := newLoad(t)
	l.forward(ctx, p.Listen, "c", 1000, n(50), bench.Forward, 0, "")
	sent := l.wait()
	verify(t, "1000_connections_idle_and_stalled", tr, sent, p)
}

// entries builds count [EventTime, {src, seq}] entries.
func entries(src string, count int) []byte {
	var b []byte
	t := wire.AppendTime(nil, time.Now())
	for i := range count {
		b = wire.AppendEntry(b, t, bench.AppendRecord(nil, src, int64(i), "x"))
	}
	return b
}

// garbage is one bad client: it sends its bytes and holds the connection a moment.
func garbage(addr string, data []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write(data)
	buf := make([]byte, 512)
	c.Read(buf)
}

func garbageInputs() map[string][]byte {
	rnd := make([]byte, 64<<10)
	rand.Read(rnd)
	full := wire.AppendPackedForward(nil, "bad", entries("bad", 100), 100, []byte("c1"))
	huge := append([]byte{0x93, 0xa3, 'b', 'a', 'd', 0xdb}, 0xff, 0xff, 0xff, 0xff)
	huge = append(huge, bytes.Repeat([]byte("A"), 1024)...)
	// A gzip bomb: 512 concatenated members of 1 MiB of zeros each (512 MiB inflated,
	// about 0.5 MiB on the wire); receivers must read every member.
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	bomb := bytes.Repeat(member.Bytes(), 512)
	bombFrame := wire.AppendCompressedPackedForward(nil, "bomb", bomb, 1000, []byte("c2"))
	deep := []byte{0x93, 0xa3, 'b', 'a', 'd'}
	for range 10000 {
		deep = append(deep, 0x91)
	}
	arr32 := []byte{0x92, 0xa3, 'b', 'a', 'd', 0xdd, 0xff, 0xff, 0xff, 0xff}
	var notmap []byte
	notmap = msgp.AppendArrayHeader(notmap, 3)
	notmap = msgp.AppendString(notmap, "bad")
	notmap = msgp.AppendInt(notmap, 1)
	notmap = msgp.AppendString(notmap, "not a map")
	return map[string][]byte{
		"random":         rnd,
		"truncated":      full[:len(full)-7],
		"str32_ffffffff": huge,
		"gzip_bomb":      bombFrame,
		"deep":           deep,
		"array32":        arr32,
		"http":           []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"not_map":        notmap,
	}
}

// TestGarbageBesideHealthyClients: bad clients come and go while acking clients send;
// the healthy clients lose nothing.
func TestGarbageBesideHealthyClients(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, "")})
	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	l := newLoad(t)
	total := dur(4 * time.Second)
	for i, mode := range []bench.Mode{bench.Message, bench.Forward, bench.PackedForward, bench.CompressedPackedForward} {
		l.forward(ctx, p.Listen, fmt.Sprintf("m%d-", i), 2, n(3000), mode, float64(n(3000))/total.Seconds(), "")
	}
	inputs := garbageInputs()
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		rounds := 0
		defer func() { done <- rounds }()
		for {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-stop:
				return
			}
			rounds++
			for _, data := range inputs {
				go garbage(p.Listen, data)
			}
		}
	}()
	sent := l.wait()
	close(stop)
	t.Logf("garbage rounds=%d (x%d bad connections)", <-done, len(inputs))
	verify(t, "garbage_beside_healthy", tr, sent, p)
	// Bombs arrive faster than a busy machine inflates them: inflations wait for a
	// slot, and a refused bomb holds no more than the direct part (4 MiB).
	if kb := p.PeakRSS(); kb > 128<<10 {
		t.Errorf("peak RSS %d MiB with garbage clients, want under 128 MiB", kb>>10)
	}
	if p.Exited() {
		t.Fatal("fwdmux exited")
	}
}

// TestWrongSharedKey: with [listener] shared_key, clients with the right key lose
// nothing while clients with a wrong key (and garbage) are refused.
func TestWrongSharedKey(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	p := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()}, "[listener]\nshared_key = \"s3cret\"\n")})
	ctx, cancel := context.WithTimeout(context.Background(), dur(60*time.Second))
	defer cancel()
	l := newLoad(t)
	l.forward(ctx, p.Listen, "ok", 4, n(3000), bench.PackedForward, float64(n(3000))/dur(3*time.Second).Seconds(), "s3cret")
	stop := make(chan struct{})
	bad := make(chan int64, 1)
	go func() {
		var accepted int64
		for {
			select {
			case <-stop:
				bad <- accepted
				return
			case <-time.After(100 * time.Millisecond):
			}
			c := bench.NewForwardClient(bench.ForwardClientConfig{Addr: p.Listen, Src: "wrongkey", Ack: true, SharedKey: "wrong", RetryFor: 200 * time.Millisecond, AckTimeout: time.Second})
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			if c.Send(sctx, 10) == nil {
				accepted++
			}
			scancel()
			c.Close()
			go garbage(p.Listen, []byte("\x93\xa3bad\x01\x80"))
		}
	}()
	sent := l.wait()
	close(stop)
	if a := <-bad; a > 0 {
		t.Errorf("%d sends with a wrong shared key were accepted", a)
	}
	verify(t, "wrong_shared_key", tr, sent, p)
	if got := tr.Report(bench.Sent{"wrongkey": 1}); got.Missing == 0 {
		t.Error("events from a client with a wrong key arrived upstream")
	}
}
