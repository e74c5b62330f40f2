package balance

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// phiSampleSize is the heartbeat history kept, as fluentd's SAMPLE_SIZE.
const phiSampleSize = 1000

// phi is fluentd's phi accrual formula (out_forward/failure_detector.rb), a pure
// function of the gap history and the silence since the last arrival:
//
//	mean = weighted mean of gaps (the i-th oldest of n weighs i) - interval + 1s
//	t    = sinceLast - interval + 1s
//	phi  = t / mean / ln(10)
//
// in seconds. It is not Hayashibara's normal-distribution phi: it assumes exponential
// inter-arrival times, so phi grows linearly with silence. With steady 1s heartbeats
// mean = 1 and phi = 0.434 * silence: the default threshold 16 is crossed after about
// 37s without a heartbeat. The "- interval + 1" normalises any heartbeat interval to
// that same scale. A negative t (an arrival just happened) yields 0.
func phi(gaps []time.Duration, interval, sinceLast time.Duration) float64 {
	if len(gaps) == 0 {
		return 0
	}
	var sum, fact float64
	for i, g := range gaps {
		w := float64(i + 1)
		sum += g.Seconds() * w
		fact += w
	}
	mean := sum/fact - interval.Seconds() + 1
	if mean < 1e-3 {
		mean = 1e-3 // only reachable with gaps far below the interval, which detector never records
	}
	t := sinceLast.Seconds() - interval.Seconds() + 1
	if t <= 0 {
		return 0
	}
	return t / mean / math.Ln10
}

// detector is a phi accrual failure detector fed by heartbeats and successful sends.
// Methods take the current time so tests drive it with a fake clock.
//
// Gaps shorter than the heartbeat interval (an ack between two heartbeats) are
// recorded as one interval: arrivals more frequent than expected never make the
// detector more suspicious, and fluentd's formula, whose mean subtracts the interval,
// cannot degenerate.
//
// Like fluentd's Node: when phi exceeds the threshold the upstream goes down and the
// history is cleared; it comes back once more than recoverSamples heartbeats arrived.
type detector struct {
	interval       time.Duration
	threshold      float64
	recoverSamples int
	disabled       bool // heartbeat "none": never down

	down atomic.Bool // read on the hot path

	mu    sync.Mutex
	gaps  []time.Duration // ring of up to phiSampleSize, oldest at start
	start int
	last  time.Time
}

func newDetector(interval time.Duration, threshold float64, recoverWait time.Duration, disabled bool, now time.Time) *detector {
	d := &detector{
		interval:       interval,
		threshold:      threshold,
		recoverSamples: int(recoverWait / interval),
		disabled:       disabled,
		gaps:           make([]time.Duration, 0, 16),
	}
	// As fluentd: the history starts with one interval, as if a heartbeat just came.
	d.gaps = append(d.gaps, interval)
	d.last = now
	return d
}

func (d *detector) push(g time.Duration) {
	if len(d.gaps) < phiSampleSize {
		d.gaps = append(d.gaps, g)
		return
	}
	d.gaps[d.start] = g
	d.start = (d.start + 1) % phiSampleSize
}

// ordered returns the gaps oldest first (a copy when the ring wrapped).
func (d *detector) ordered() []time.Duration {
	if d.start == 0 {
		return d.gaps
	}
	out := make([]time.Duration, 0, len(d.gaps))
	out = append(out, d.gaps[d.start:]...)
	return append(out, d.gaps[:d.start]...)
}

// heartbeat records an arrival (a heartbeat reply, or a successful send when
// fromSend). It reports whether the upstream just came back up.
func (d *detector) heartbeat(now time.Time, fromSend bool) (recovered bool) {
	if d.disabled {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.gaps) == 0 {
		d.gaps = append(d.gaps, d.interval)
		d.start = 0
		d.last = now
		return false
	}
	gap := now.Sub(d.last)
	if fromSend && gap < d.interval {
		// Frequent acks: refresh the silence clock without a sample.
		if now.After(d.last) {
			d.last = now
		}
		return false
	}
	d.push(max(gap, d.interval))
	d.last = now
	if d.down.Load() && len(d.gaps) > d.recoverSamples {
		d.down.Store(false)
		return true
	}
	return false
}

// phi returns the current phi.
func (d *detector) phi(now time.Time) float64 {
	if d.disabled {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return phi(d.ordered(), d.interval, now.Sub(d.last))
}

// check evaluates phi (once per heartbeat tick) and takes the upstream down when it
// exceeds the threshold. It reports phi and whether the upstream just went down.
func (d *detector) check(now time.Time) (float64, bool) {
	if d.disabled {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p := phi(d.ordered(), d.interval, now.Sub(d.last))
	if d.down.Load() || p <= d.threshold {
		return p, false
	}
	d.down.Store(true)
	d.gaps = d.gaps[:0]
	d.start = 0
	return p, true
}

// isDown reports whether phi took the upstream down.
func (d *detector) isDown() bool { return d.down.Load() }
