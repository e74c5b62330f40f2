// Package proxy is the heart of fwdmux: the in_forward listener, the bounded ring of
// chunks between producers and the output, per-producer batching of entries into
// per-tag chunks, and the stdout output used when no upstream is configured.
//
// Guarantees:
//   - The Ring is bounded by chunks and bytes, counted from Put until the chunk is Done,
//     so in-flight chunks count too. A full ring blocks producers (backpressure: a
//     connection stops reading its socket and TCP pushes back on the application) unless
//     an explicit drop policy is configured; every dropped event is counted.
//   - A Chunk's done callbacks run once, when the output finished it. A forward client
//     that asked for an ack gets it when the chunk holding its events was acked upstream
//     (ack = "upstream") or put in the ring (ack = "received"); never before.
//   - A connection flushes its partial chunk the moment it has no more buffered input, so
//     a lone synchronous client waits one upstream round trip, not a timer.
//   - Bad input closes only the connection that sent it, after the events it sent before
//     were handed on; it is logged once with the peer and counted by reason.
//
// Usage:
//
//	ring := proxy.NewRing(proxy.RingConfig{})
//	ln, _ := proxy.NewListener(proxy.ListenerConfig{Addr: "127.0.0.1:24224"}, ring, logger)
//	go ln.Run(intakeCtx)       // producers
//	go proxy.NewStdout(ring, os.Stdout).Run(outputCtx) // or a balance.Pool
package proxy
