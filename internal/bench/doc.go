// Package bench holds the pieces the end-to-end tests (internal/e2e) and the benchmark
// runner (cmd/fwdbench) share: a real Forward sink with fault knobs, a black-hole TCP
// proxy, traffic generators (raw Forward clients in all four modes with and without
// acks, fluent-logger-golang clients, log-file writers with rotation) and a helper that
// builds, runs, samples and stops the real fwdmux binary.
//
// Every event a generator produces carries a stream name ("src") and a sequence number
// ("seq", 0..n-1 per stream), either as record fields or, for free-form log lines, as
// "src=NAME seq=N" inside a string value. The Sink's Tracker records which sequence
// numbers arrived, so a test can assert that nothing was lost and count duplicates:
//
//	sink, _ := bench.NewSink()
//	defer sink.Close()
//	p, _ := bench.StartProc(bench.ProcConfig{Args: []string{"-server", sink.Addr()}})
//	c := bench.NewForwardClient(bench.ForwardClientConfig{Addr: p.Listen, Src: "c1", Ack: true})
//	c.Send(ctx, 10000)
//	sent := bench.Sent{"c1": 10000}
//	sink.Tracker.Wait(ctx, sent)
//	rep := sink.Tracker.Report(sent) // rep.Missing == 0
//
// Everything here opens real sockets on 127.0.0.1 and real files; nothing is faked.
package bench
