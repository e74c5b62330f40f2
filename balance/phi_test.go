package balance

import (
	"math"
	"testing"
	"time"
)

func secs(s ...float64) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out
}

func TestPhiFormula(t *testing.T) {
	const k = 1 / math.Ln10
	tests := []struct {
		name      string
		gaps      []time.Duration
		interval  time.Duration
		sinceLast time.Duration
		want      float64
	}{
		{"no history", nil, time.Second, time.Hour, 0},
		{"just arrived", secs(1, 1, 1), time.Second, 0, 0},
		{"one interval of silence", secs(1, 1, 1), time.Second, time.Second, k},
		{"10s silence, steady 1s", secs(1, 1, 1, 1), time.Second, 10 * time.Second, 10 * k},
		{"threshold 16 crossed near 36.84s", secs(1), time.Second, 36840 * time.Millisecond, 16.0},
		// weighted mean of [1, 3] with weights 1, 2 = 7/3s -> mean 7/3
		{"weighted mean favours recent gaps", secs(1, 3), time.Second, 7 * time.Second, 7 / (7.0 / 3) * k},
		// 5s interval: mean = 5 - 5 + 1 = 1, t = 12 - 5 + 1 = 8
		{"5s interval normalised", secs(5, 5), 5 * time.Second, 12 * time.Second, 8 * k},
		{"silence shorter than interval-1s", secs(5), 5 * time.Second, 3 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := phi(tt.gaps, tt.interval, tt.sinceLast)
			if math.Abs(got-tt.want) > 0.01 {
				t.Errorf("phi = %.4f, want %.4f", got, tt.want)
			}
		})
	}
}

func TestDetectorDownAndRecover(t *testing.T) {
	t0 := time.Unix(1000, 0)
	now := t0
	d := newDetector(time.Second, 16, 10*time.Second, false, now)
	for range 20 {
		now = now.Add(time.Second)
		d.heartbeat(now, false)
	}
	if p, down := d.check(now.Add(30 * time.Second)); down || p > 16 {
		t.Fatalf("30s of silence: phi %.2f down %v; want up (fluentd crosses 16 after ~37s)", p, down)
	}
	p, down := d.check(now.Add(38 * time.Second))
	if !down || p <= 16 {
		t.Fatalf("38s of silence: phi %.2f down %v; want down", p, down)
	}
	if !d.isDown() {
		t.Fatal("isDown false after going down")
	}
	now = now.Add(38 * time.Second)
	// Recovery needs more than recover_wait/interval = 10 heartbeats.
	for i := 1; i <= 10; i++ {
		now = now.Add(time.Second)
		if d.heartbeat(now, false) {
			t.Fatalf("recovered after %d heartbeats, want > 10", i)
		}
	}
	now = now.Add(time.Second)
	if !d.heartbeat(now, false) || d.isDown() {
		t.Fatal("not recovered after 11 heartbeats")
	}
}

func TestDetectorFrequentSendsDoNotRaiseSuspicion(t *testing.T) {
	now := time.Unix(1000, 0)
	d := newDetector(time.Second, 16, 10*time.Second, false, now)
	for range 5000 { // an ack every millisecond for 5s
		now = now.Add(time.Millisecond)
		d.heartbeat(now, true)
	}
	// 2s after the burst: still about 2 * 0.434, not the 870 a 1ms mean would give.
	if p := d.phi(now.Add(2 * time.Second)); p > 1 {
		t.Fatalf("phi = %.2f after a burst of acks and 2s idle, want < 1", p)
	}
}

func TestDetectorDisabled(t *testing.T) {
	now := time.Unix(1000, 0)
	d := newDetector(time.Second, 16, 0, true, now)
	if p, down := d.check(now.Add(time.Hour)); down || p != 0 {
		t.Fatalf("disabled detector: phi %v down %v", p, down)
	}
}
