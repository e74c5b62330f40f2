// Package balance is the upstream pool: it takes chunks from the ring and delivers
// each, as one PackedForward message with a chunk id, to one of a set of Fluentd /
// Fluent Bit servers, and finishes the chunk (Done(proxy.Acked)) when that server
// acks it.
//
// Selection is smooth weighted round-robin (nginx's) over eligible, connected primary
// upstreams that have a free in-flight slot; standby upstreams are used only while no
// primary is eligible. Eligible means: the upstream's gobreaker circuit breaker is not
// open (it trips after BreakerFailures consecutive connect, write or ack failures and
// lets one probe chunk through after BreakerOpenTimeout) and its phi accrual failure
// detector (fluentd's formula, fed by heartbeats and by every ack) is under
// PhiThreshold. The breaker is the fast path; phi is fluentd's slow backstop.
//
// Guarantees:
//   - Nothing is dropped. A chunk is Done exactly once, only after an upstream acked
//     it (or, with require_ack = false, after it was fully written). A chunk whose
//     write, connection or ack fails goes back to the head of the source (Requeue),
//     and the next attempt avoids the upstream that failed it while another one is
//     eligible. With no eligible upstream chunks wait in the ring: backpressure.
//   - Duplicates are possible (an ack lost after the upstream stored the chunk).
//   - A connection is discarded on any ack timeout, unexpected ack or read/write
//     error; everything in flight on it is re-queued. Up to MaxInFlight chunks are
//     in flight per connection. Connections are kept alive and re-dialled with
//     jittered exponential backoff; host names are resolved again on every dial.
//   - The chunk option is base64 of the chunk's 16-byte id, the same on every attempt
//     (the upstream echoes it; re-sends are easy to correlate).
//   - Only Run starts goroutines and it waits for all of them. When the source is
//     closed and drained and nothing is in flight Run returns nil; when its ctx ends
//     (the drain deadline) in-flight chunks are re-queued, not Done, connections are
//     closed, and Run returns nil: ring.Pending() tells what was left.
//
// Usage:
//
//	ring := proxy.NewRing(proxy.RingConfig{})
//	pool, err := balance.NewPool(balance.Config{}, ring, logger)
//	if err != nil { ... }
//	if _, err := pool.Add(balance.UpstreamConfig{Address: "fluentd:24224"}); err != nil { ... }
//	go pool.Run(outputCtx) // cancel outputCtx at the drain deadline
//	...
//	ring.CloseIntake()     // on SIGTERM, after stopping producers; Run drains and returns
package balance
