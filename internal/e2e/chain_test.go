package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/internal/bench"
)

// TestFwdmuxChain: fwdmux is a valid upstream of fwdmux. Clients → edge fwdmux →
// aggregator fwdmux (shared_key) → sink. Acks are end to end: the aggregator acks the
// edge only once the sink acked, and the edge acks its clients only then. The
// aggregator is killed with SIGKILL mid-stream and restarted; nothing is lost.
func TestFwdmuxChain(t *testing.T) {
	t.Parallel()
	tr := bench.NewTracker()
	s := newSink(t, tr)
	// Both run on this host: each needs its own self_hostname, or the handshake refuses
	// the connection as a forwarding loop (as fluentd does).
	agg := start(t, bench.ProcConfig{Config: baseConfig([]string{s.Addr()},
		"[listener]\nshared_key = \"chain-key\"\nself_hostname = \"aggregator\"\n")})
	edge := start(t, bench.ProcConfig{Config: baseConfig(nil, fmt.Sprintf(
		"[[servers]]\naddress = %q\nshared_key = \"chain-key\"\nself_hostname = \"edge\"\nheartbeat_interval = \"200ms\"\n", agg.Listen))})

	ctx, cancel := context.WithTimeout(context.Background(), dur(90*time.Second))
	defer cancel()
	l := newLoad(t)
	total := n(20000)
	l.forward(ctx, edge.Listen, "chain", 4, total/4, bench.PackedForward, float64(total)/dur(4*time.Second).Seconds(), "")
	l.forward(ctx, edge.Listen, "chainmsg", 2, n(2000)/2, bench.Message, float64(n(2000))/dur(4*time.Second).Seconds(), "")

	// Mid-stream, the aggregator dies without a chance to drain, then comes back on the
	// same address: the edge re-sends what it never got an ack for.
	time.Sleep(dur(1500 * time.Millisecond))
	agg.Kill()
	time.Sleep(dur(500 * time.Millisecond))
	agg2, err := agg.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agg2.Cleanup)
	sent := l.wait()
	verify(t, "fwdmux_chain_aggregator_killed", tr, sent, edge, agg2)
	if code, err := edge.Stop(20 * time.Second); err != nil || code != 0 {
		t.Errorf("edge exit %d, %v", code, err)
	}
}
