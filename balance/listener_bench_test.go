package balance

import (
	"context"
	"encoding/base64"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
	"github.com/fwdmux/fwdmux/wire"
)

// BenchmarkListenerToUpstream is the whole forwarder in one process: a client writes
// PackedForward frames of 1,000 ~200-byte entries with the chunk option, the proxy
// listener batches them into the ring, the pool sends them to an acking sink over
// loopback, the sink's ack finishes the chunk, and the client gets its own ack back.
// One op is one client frame. With -cpu 1 the client, fwdmux and the sink share one
// core, so events/s is a floor for fwdmux alone.
//
//	go test -run x -bench ListenerToUpstream -benchmem -cpu 1 ./balance/
func BenchmarkListenerToUpstream(b *testing.B) {
	const perFrame = 1000
	sink := newTestServer(b, withName("sink"), withLight())
	ring := proxy.NewRing(proxy.RingConfig{})
	ln, err := proxy.NewListener(proxy.ListenerConfig{Addr: "127.0.0.1:0", UDPHeartbeat: new(bool)}, ring, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPool(Config{}, ring, nil)
	if err != nil {
		b.Fatal(err)
	}
	mustAdd(b, p, upstreamFor(sink, func(u *UpstreamConfig) { u.HeartbeatInterval = 0 }))
	ctx, cancel := context.WithCancel(context.Background())
	lnDone, poolDone := make(chan error, 1), make(chan error, 1)
	go func() { lnDone <- ln.Run(ctx) }()
	go func() { poolDone <- p.Run(ctx) }()
	<-ln.Ready()
	eventually(b, 5*time.Second, allConnected(p, "sink"), "connected")

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	entries := makeEntries(0, perFrame, 200)
	// Frames are built before timing; each has its own chunk id, as a real client's.
	const distinct = 64
	frames := make([][]byte, distinct)
	for i := range frames {
		id := base64.StdEncoding.EncodeToString([]byte("bench-chunk-" + strconv.Itoa(i) + "xxxx"))
		frames[i] = wire.AppendPackedForward(nil, "bench", entries, perFrame, []byte(id))
	}
	acks := make(chan error, 1)
	b.SetBytes(int64(len(frames[0])))
	b.ReportAllocs()
	m := startCPU()
	b.ResetTimer()
	go func() {
		dec := wire.NewDecoder(conn, wire.Limits{})
		defer dec.Close()
		for i := 0; i < b.N; i++ {
			raw, err := dec.NextRaw()
			if err == nil {
				_, err = wire.ParseAck(raw)
			}
			if err != nil {
				acks <- err
				return
			}
		}
		acks <- nil
	}()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(frames[i%distinct]); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-acks; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	m.report(b, float64(b.N)*perFrame)
	conn.Close()
	cancel()
	<-lnDone
	<-poolDone
}
