package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fwdmux/fwdmux/wire"
)

// benchListener measures listener → ring throughput over one loopback TCP connection:
// the benchmark goroutine writes batch (perBatch events) until b.N events are sent, an
// output goroutine takes chunks and finishes them. One op is one event.
//
//	go test -run x -bench Listener -benchmem -cpu 1 ./proxy/
func benchListener(b *testing.B, batch []byte, perBatch int) {
	ring := NewRing(RingConfig{})
	off := false
	ln, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0", UDPHeartbeat: &off}, ring, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { ln.Run(ctx) })
	<-ln.Ready()

	var got, target atomic.Int64
	target.Store(-1)
	reached := make(chan struct{}, 1)
	wg.Go(func() {
		for {
			c, err := ring.Get(ctx)
			if err != nil {
				return
			}
			n := got.Add(int64(c.Count))
			c.Done(Acked)
			if t := target.Load(); t >= 0 && n >= t {
				select {
				case reached <- struct{}{}:
				default:
				}
			}
		}
	})
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	// send writes batches and waits until the output has finished their events.
	send := func(batches int) {
		target.Store(got.Load() + int64(batches*perBatch))
		for range batches {
			if _, err := conn.Write(batch); err != nil {
				b.Fatal(err)
			}
		}
		for got.Load() < target.Load() {
			<-reached // a token may be stale (from an earlier target): re-check
		}
	}
	send(4) // warm up: connection, buffers, pools

	batches := (b.N + perBatch - 1) / perBatch
	b.SetBytes(int64(len(batch) / perBatch))
	b.ReportAllocs()
	b.ResetTimer()
	send(batches)
	b.StopTimer()
	b.ReportMetric(float64(batches*perBatch)/b.Elapsed().Seconds(), "events/s")
}

// PackedForward frames of 1,000 entries of ~200-byte records, as fluentd and
// fluent-bit send them.
func BenchmarkListenerPackedForward(b *testing.B) {
	const per = 1000
	benchListener(b, wire.AppendPackedForward(nil, "bench.packed", entries("bench", 0, per, 200), per, nil), per)
}

// Message-mode frames of one ~200-byte event each (fluent-logger-golang without
// batching), 1,000 per write.
func BenchmarkListenerMessage(b *testing.B) {
	const per = 1000
	benchListener(b, frameOf(wire.ModeMessage, "bench.msg", "bench", 0, per, 200, nil), per)
}
