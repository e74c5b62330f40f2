package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CleanupBinary()
	os.Exit(code)
}

// TestSinkDirect drives the sink with every client mode, no fwdmux in between.
func TestSinkDirect(t *testing.T) {
	sink, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent := Sent{}
	for i, mode := range []Mode{Message, Forward, PackedForward, CompressedPackedForward} {
		for _, ack := range []bool{false, true} {
			src := mode.String() + map[bool]string{true: "-ack", false: ""}[ack]
			c := NewForwardClient(ForwardClientConfig{Addr: sink.Addr(), Src: src, Mode: mode, Ack: ack, EventsPerFrame: 10 + i})
			if err := c.Send(ctx, 1000); err != nil {
				t.Fatal(err)
			}
			c.Close()
			sent[src] = 1000
		}
	}
	n, err := RunFluentLogger(ctx, FluentLoggerConfig{Addr: sink.Addr(), Src: "flg", RequestAck: true}, 200)
	if err != nil {
		t.Fatal(err)
	}
	sent["flg"] = n
	if err := sink.Tracker.Wait(ctx, sent); err != nil {
		t.Fatalf("%v: %v", err, sink.Tracker.Report(sent))
	}
	r := sink.Tracker.Report(sent)
	if r.Missing != 0 || r.Dup != 0 {
		t.Fatal(r)
	}
}

// TestAckClientResends: a sink that closes every connection after 3 frames still gets
// everything from an acking client.
func TestAckClientResends(t *testing.T) {
	sink, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sink.SetCloseAfter(3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := NewForwardClient(ForwardClientConfig{Addr: sink.Addr(), Src: "a", Ack: true, Window: 2, EventsPerFrame: 10})
	if err := c.Send(ctx, 500); err != nil {
		t.Fatal(err)
	}
	c.Close()
	r := sink.Tracker.Report(Sent{"a": 500})
	if r.Missing != 0 {
		t.Fatal(r)
	}
	t.Logf("%v reconnects=%d", r, c.Reconnects.Load())
}

func TestProxyBlackhole(t *testing.T) {
	sink, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	px, err := NewProxy(sink.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := NewForwardClient(ForwardClientConfig{Addr: px.Addr(), Src: "p", Ack: true, AckTimeout: 300 * time.Millisecond})
	if err := c.Send(ctx, 100); err != nil {
		t.Fatal(err)
	}
	px.Stop()
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	err = c.Send(short, 100)
	cancel2()
	if err == nil {
		t.Fatal("send through a black hole succeeded")
	}
	px.Resume()
	if err := c.Send(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if r := sink.Tracker.Report(Sent{"p": 200}); r.Missing != 0 {
		t.Fatal(r)
	}
}

func TestProcTailAndForward(t *testing.T) {
	sink, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	fw, err := NewFileWriter(FileWriterConfig{Path: logPath, Src: "file", Format: FormatNone})
	if err != nil {
		t.Fatal(err)
	}
	// read_from_head: without it, lines written right after /ready may be skipped (the
	// first tail scan runs after readiness; see internal/e2e TestBugReadyBeforeTailScan).
	p, err := StartProc(ProcConfig{Args: []string{"-server", sink.Addr()},
		Config: "[[logs]]\ntag = \"app\"\npath = \"" + logPath + "\"\nread_from_head = true\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(ctx, 5000); err != nil {
		t.Fatal(err)
	}
	fw.Close()
	c := NewForwardClient(ForwardClientConfig{Addr: p.Listen, Src: "fwd", Ack: true})
	if err := c.Send(ctx, 5000); err != nil {
		t.Fatal(err)
	}
	c.Close()
	sent := Sent{"file": 5000, "fwd": 5000}
	if err := sink.Tracker.Wait(ctx, sent); err != nil {
		t.Fatalf("%v: %v\n%s", err, sink.Tracker.Report(sent), p.Log())
	}
	code, err := p.Stop(10 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("stop: code %d err %v\n%s", code, err, p.Log())
	}
	t.Logf("%v peak_rss_kb=%d cpu=%v", sink.Tracker.Report(sent), p.PeakRSS(), p.CPU())
}
