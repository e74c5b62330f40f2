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
	m := startCPU()
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
	m.report(b, float64(b.N)*perChunk)
	cancel()
	<-done
}

// cpuMeter measures a benchmark's wall time and the process's CPU time (every
// goroutine: client, pool and sink) to report events/s and CPU per event.
type cpuMeter struct {
	start time.Time
	ru    syscall.Rusage
}

func startCPU() cpuMeter {
	m := cpuMeter{start: time.Now()}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &m.ru)
	return m
}

func (m cpuMeter) report(b *testing.B, events float64) {
	el := time.Since(m.start)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano()-m.ru.Utime.Nano()) + time.Duration(ru.Stime.Nano()-m.ru.Stime.Nano())
	b.ReportMetric(events/el.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
}
