package balance

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
)

// BenchmarkPipeline measures ring -> pool -> loopback -> acking sink -> ack -> Done,
// with 1,000-entry chunks of ~200-byte records. One op is one chunk. The sink runs in
// this process (light mode: it frames with wire's scanner and acks from the option
// without walking entries), so CPU per event covers both ends of the socket.
//
//	go test -run x -bench Pipeline -benchmem -cpu 1 ./balance/
func BenchmarkPipeline(b *testing.B) {
	for _, light := range []bool{true, false} {
		name := "sink=light"
		if !light {
			name = "sink=full-decode"
		}
		b.Run(name, func(b *testing.B) { benchPipeline(b, light) })
	}
}

func benchPipeline(b *testing.B, light bool) {
	const perChunk = 1000
	opts := []serverOpt{withName("sink")}
	if light {
		opts = append(opts, withLight())
	}
	s := newTestServer(b, opts...)
	ring := proxy.NewRing(proxy.RingConfig{})
	p, err := NewPool(Config{}, ring, nil)
	if err != nil {
		b.Fatal(err)
	}
	mustAdd(b, p, upstreamFor(s, func(u *UpstreamConfig) { u.HeartbeatInterval = 0 }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	eventually(b, 5*time.Second, allConnected(p, "sink"), "connected")

	data := makeEntries(0, perChunk, 200)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		if err := ring.Put(ctx, proxy.NewChunk("bench", data, perChunk)); err != nil {
			b.Fatal(err)
		}
	}
	if err := ring.WaitDrained(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	el := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	events := float64(b.N) * perChunk
	b.ReportMetric(events/el.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
	cancel()
	<-done
}
