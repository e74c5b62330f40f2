package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

var update = flag.Bool("update", false, "rewrite the fluent-logger-golang captures in testdata/fuzz/FuzzDecoder")

// What every capture sends: two events at 1700000000.123456789.
var (
	flgTime    = time.Unix(1700000000, 123456789)
	flgRecords = []any{map[string]string{"msg": "hello"}, map[string]any{"n": 42}}
	// the records as msgpack, byte for byte
	flgRecordHex = []string{"81 a36d7367 a568656c6c6f", "81 a16e 2a"}
)

var flgVariants = []struct {
	name string
	cfg  fluent.Config
}{
	{"msgpack", fluent.Config{}},
	{"subsecond", fluent.Config{SubSecondPrecision: true}},
	{"ack", fluent.Config{RequestAck: true}},
	{"subsecond-ack", fluent.Config{SubSecondPrecision: true, RequestAck: true}},
	{"json", fluent.Config{MarshalAsJSON: true}},
	{"json-ack", fluent.Config{MarshalAsJSON: true, RequestAck: true}},
}

// captureFluent runs a real fluent.Fluent against a 127.0.0.1 listener that decodes
// with wire and acks with AppendAck / AppendAckJSON, and returns the bytes it sent.
func captureFluent(t *testing.T, cfg fluent.Config) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var captured bytes.Buffer
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		d := NewDecoder(io.TeeReader(c, &captured), Limits{})
		defer d.Close()
		var f Frame
		for {
			if err := d.Next(&f); err != nil {
				if err == io.EOF {
					err = nil
				}
				done <- err
				return
			}
			if f.Chunk != nil {
				ack := AppendAck(nil, f.Chunk)
				if f.JSON {
					ack = AppendAckJSON(nil, f.Chunk)
				}
				if _, err := c.Write(ack); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	cfg.FluentHost = "127.0.0.1"
	cfg.FluentPort = ln.Addr().(*net.TCPAddr).Port
	cfg.Timeout = 5 * time.Second
	cfg.ReadTimeout = 5 * time.Second
	cfg.WriteTimeout = 5 * time.Second
	cfg.MaxRetry = 1
	cfg.RetryWait = 1
	fl, err := fluent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range flgRecords {
		// With RequestAck this returns only after our ack matched.
		if err := fl.PostWithTime("app.access", flgTime, rec); err != nil {
			t.Fatalf("PostWithTime: %v", err)
		}
	}
	if err := fl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
	return captured.Bytes()
}

// checkFluentCapture decodes a capture and checks tag, time, record and chunk exactly.
func checkFluentCapture(t *testing.T, cfg fluent.Config, stream []byte) {
	t.Helper()
	for _, r := range []io.Reader{bytes.NewReader(stream), newPieceReader(stream, uint64(len(stream)), 3)} {
		got, err := decodeAll(r, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(flgRecords) {
			t.Fatalf("%d frames, want %d", len(got), len(flgRecords))
		}
		for i, f := range got {
			timeHex := "d2 6553f100" // int64 1700000000 as msgp writes it
			if cfg.SubSecondPrecision && !cfg.MarshalAsJSON {
				timeHex = "d700 6553f100 075bcd15" // EventTime(1700000000, 123456789)
			}
			want := snap{Mode: ModeMessage, Tag: "app.access", Count: 1, Size: -1, JSON: cfg.MarshalAsJSON,
				Entries: h("92" + timeHex + flgRecordHex[i]), Bytes: f.Bytes, Chunk: f.Chunk, HasChunk: cfg.RequestAck}
			if f != want {
				t.Errorf("frame %d\n got %+v\nwant %+v", i, f, want)
			}
			if cfg.RequestAck {
				// base64 of the event's unix time (little endian) and 8 random bytes
				id, err := base64.StdEncoding.DecodeString(f.Chunk)
				if err != nil || len(id) != 16 || binary.LittleEndian.Uint64(id) != 1700000000 {
					t.Errorf("frame %d: chunk %q is not fluent-logger-golang's id", i, f.Chunk)
				}
			}
		}
	}
}

// Live: a real fluent-logger-golang client against a wire-based server, acks included.
func TestFluentLoggerGolangLive(t *testing.T) {
	for _, v := range flgVariants {
		t.Run(v.name, func(t *testing.T) {
			stream := captureFluent(t, v.cfg)
			checkFluentCapture(t, v.cfg, stream)
			if *update {
				writeCorpus(t, "FuzzDecoder", "fluent-logger-golang-"+v.name, stream)
			}
		})
	}
}

// The checked-in captures (also seeds of FuzzDecoder) decode exactly.
func TestFluentLoggerGolangCaptured(t *testing.T) {
	for _, v := range flgVariants {
		t.Run(v.name, func(t *testing.T) {
			checkFluentCapture(t, v.cfg, readCorpus(t, "FuzzDecoder", "fluent-logger-golang-"+v.name))
		})
	}
}

// fluent-logger-golang's own encoders (proto.go), byte for byte.
func TestFluentLoggerGolangProto(t *testing.T) {
	rec := map[string]any{"msg": "hello"}
	msg, err := (&fluent.Message{Tag: "app", Time: 1700000000, Record: rec, Option: map[string]string{"chunk": "abc"}}).MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := (&fluent.MessageExt{Tag: "app", Time: fluent.EventTime(flgTime), Record: rec}).MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := (&fluent.Forward{Tag: "app", Entries: []fluent.Entry{{Time: 1700000000, Record: rec}, {Time: 1700000001, Record: map[string]any{"n": 42}}},
		Option: map[string]string{"size": "2"}}).MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	recHex := flgRecordHex[0]
	cases := []struct {
		name  string
		frame []byte
		exact string // the frame as fluent-logger-golang encodes it
		want  snap
	}{
		{"Message", msg, "94 a3617070 d26553f100" + recHex + "81" + kChunk + "a3616263",
			snap{Mode: ModeMessage, Tag: "app", Count: 1, Size: -1, Chunk: "abc", HasChunk: true, Entries: h("92 d26553f100" + recHex)}},
		{"MessageExt", ext, "94 a3617070 d700 6553f100 075bcd15" + recHex + "80",
			snap{Mode: ModeMessage, Tag: "app", Count: 1, Size: -1, Entries: h("92 d700 6553f100 075bcd15" + recHex)}},
		// size as a string ("2") is not an integer: ignored
		{"Forward", fwd, "93 a3617070 92 92d26553f100" + recHex + "92d26553f101 81a16e2a 81" + kSize + "a132",
			snap{Mode: ModeForward, Tag: "app", Count: 2, Size: -1, Entries: h("92d26553f100" + recHex + "92d26553f101 81a16e2a")}},
	}
	p := NewParser(Limits{})
	defer p.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Equal(tc.frame, hx(tc.exact)) {
				t.Fatalf("fluent-logger-golang encodes % x, fixture says % x", tc.frame, hx(tc.exact))
			}
			var f Frame
			if err := p.Parse(tc.frame, 0, &f); err != nil {
				t.Fatal(err)
			}
			tc.want.Bytes = len(tc.frame)
			if got := snapOf(&f); got != tc.want {
				t.Errorf("\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// fluent-logger-golang reads our ack with its own decoder.
	var resp fluent.AckResp
	if _, err := resp.UnmarshalMsg(AppendAck(nil, []byte("abc"))); err != nil || resp.Ack != "abc" {
		t.Fatalf("AckResp from AppendAck: %+v, %v", resp, err)
	}
}
