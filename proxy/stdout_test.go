package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/wire"
	"github.com/tinylib/msgp/msgp"
)

// rec2 is {"msg": msg, "n": n} in that order.
func rec2(msg string, n int) []byte {
	b := msgp.AppendMapHeader(nil, 2)
	b = msgp.AppendString(b, "msg")
	b = msgp.AppendString(b, msg)
	b = msgp.AppendString(b, "n")
	return msgp.AppendInt(b, n)
}

// v15Time is fluent-bit's [EventTime, {metadata}] time.
func v15Time(sec, nsec uint32) []byte {
	b := msgp.AppendArrayHeader(nil, 2)
	b = wire.AppendEventTime(b, sec, nsec)
	b = msgp.AppendMapHeader(b, 1)
	b = msgp.AppendString(b, "k")
	return msgp.AppendString(b, "v")
}

func TestWriteJSONLines(t *testing.T) {
	nested := msgp.AppendMapHeader(nil, 3)
	nested = msgp.AppendString(nested, "list")
	nested = msgp.AppendArrayHeader(nested, 3)
	nested = msgp.AppendInt(nested, -1)
	nested = msgp.AppendFloat64(nested, 1.5)
	nested = msgp.AppendNil(nested)
	nested = msgp.AppendString(nested, "esc")
	nested = msgp.AppendString(nested, "a\"b\\c\n<&>")
	nested = msgp.AppendString(nested, "ok")
	nested = msgp.AppendBool(nested, true)

	boolKey := msgp.AppendMapHeader(nil, 1)
	boolKey = msgp.AppendBool(boolKey, true)
	boolKey = msgp.AppendInt(boolKey, 1)

	for _, tc := range []struct {
		name    string
		tag     string
		entries []byte
		want    string
	}{
		{"event_time", "app.web", wire.AppendEntry(nil, wire.AppendEventTime(nil, 1700000000, 123456789), rec2("hello", 1)),
			`{"tag":"app.web","time":"2023-11-14T22:13:20.123456789Z","record":{"msg":"hello","n":1}}` + "\n"},
		{"int_time", "app", wire.AppendEntry(nil, wire.AppendIntTime(nil, 1700000001), rec2("x", 2)),
			`{"tag":"app","time":"2023-11-14T22:13:21Z","record":{"msg":"x","n":2}}` + "\n"},
		{"v1.5_time", "fb", wire.AppendEntry(nil, v15Time(1700000002, 500000000), rec2("y", 3)),
			`{"tag":"fb","time":"2023-11-14T22:13:22.5Z","record":{"msg":"y","n":3}}` + "\n"},
		{"nested_and_escapes", "weird\"tag\x00\x7f", wire.AppendEntry(nil, wire.AppendIntTime(nil, 0), nested),
			`{"tag":"weird\"tag\u0000` + "\x7f" + `","time":"1970-01-01T00:00:00Z","record":{"list":[-1,1.5,null],"esc":"a\"b\\c\n\u003c\u0026\u003e","ok":true}}` + "\n"},
		{"several", "multi", append(append(
			wire.AppendEntry(nil, wire.AppendEventTime(nil, 1700000000, 1), rec2("a", 1)),
			wire.AppendEntry(nil, wire.AppendIntTime(nil, 1700000000), rec2("b", 2))...),
			wire.AppendEntry(nil, wire.AppendEventTime(nil, 1700000000, 100), rec2("c", 3))...),
			`{"tag":"multi","time":"2023-11-14T22:13:20.000000001Z","record":{"msg":"a","n":1}}` + "\n" +
				`{"tag":"multi","time":"2023-11-14T22:13:20Z","record":{"msg":"b","n":2}}` + "\n" +
				`{"tag":"multi","time":"2023-11-14T22:13:20.0000001Z","record":{"msg":"c","n":3}}` + "\n"},
		// A record without a JSON form keeps its line, and the next event is written.
		{"no_json_form", "t", append(
			wire.AppendEntry(nil, wire.AppendIntTime(nil, 1700000000), boolKey),
			wire.AppendEntry(nil, wire.AppendIntTime(nil, 1700000000), rec2("after", 4))...),
			`{"tag":"t","time":"2023-11-14T22:13:20Z","record":null,"error":"record has no JSON form: msgp: attempted to decode type \"bool\" with method for \"str\""}` + "\n" +
				`{"tag":"t","time":"2023-11-14T22:13:20Z","record":{"msg":"after","n":4}}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			if err := WriteJSONLines(w, tc.tag, tc.entries); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if out.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", out.String(), tc.want)
			}
			for line := range strings.Lines(out.String()) {
				if !json.Valid([]byte(line)) {
					t.Errorf("not JSON: %s", line)
				}
			}
		})
	}
	var out bytes.Buffer
	if err := WriteJSONLines(bufio.NewWriter(&out), "t", []byte{0x93, 0x01}); err == nil {
		t.Error("no error for an entry that is not [time, record]")
	}
}

// Tags are escaped exactly as encoding/json escapes strings.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "app.web", "a\"b\\c", "\x00\x01\x1f\x7f", "\t\r\n", "<script>&", "héllo wörld ✓",
		"\u2028\u2029", "bad\xffutf8\xc3", "emoji 🚀"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

// Stdout behind the listener: the exact lines for Message, Forward (several entries)
// and PackedForward frames, each chunk acked once written.
func TestStdoutEndToEnd(t *testing.T) {
	ring := NewRing(RingConfig{})
	ln, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0"}, ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { ln.Run(ctx) })
	<-ln.Ready()
	var out syncBuffer
	st := NewStdout(ring, &out)
	outDone := make(chan error, 1)
	go func() { outDone <- st.Run(context.Background()) }()

	rc := dialRaw(t, "tcp", ln.Addr().String())
	var fwd []byte
	fwd = append(fwd, wire.AppendEntry(nil, wire.AppendEventTime(nil, 1700000000, 5), rec2("f1", 1))...)
	fwd = append(fwd, wire.AppendEntry(nil, wire.AppendIntTime(nil, 1700000001), rec2("f2", 2))...)
	fwd = append(fwd, wire.AppendEntry(nil, v15Time(1700000002, 0), rec2("f3", 3))...)
	frames := [][]byte{
		wire.AppendMessage(nil, "msg", wire.AppendEventTime(nil, 1700000000, 250000000), rec2("m", 0), []byte("a1")),
		wire.AppendForward(nil, "fwd", fwd, 3, []byte("a2")),
		wire.AppendPackedForward(nil, "packed", wire.AppendEntry(nil, wire.AppendIntTime(nil, 1700000003), rec2("p", 4)), 1, []byte("a3")),
	}
	for _, f := range frames { // one at a time: the order of the lines is fixed
		if err := rc.write(f); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.readAck(); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"tag":"msg","time":"2023-11-14T22:13:20.25Z","record":{"msg":"m","n":0}}
{"tag":"fwd","time":"2023-11-14T22:13:20.000000005Z","record":{"msg":"f1","n":1}}
{"tag":"fwd","time":"2023-11-14T22:13:21Z","record":{"msg":"f2","n":2}}
{"tag":"fwd","time":"2023-11-14T22:13:22Z","record":{"msg":"f3","n":3}}
{"tag":"packed","time":"2023-11-14T22:13:23Z","record":{"msg":"p","n":4}}
`
	if got := out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	if st.Events() != 5 {
		t.Errorf("Events = %d", st.Events())
	}
	if by := st.SentByTag(); by["fwd"].Events != 3 || by["fwd"].Chunks != 1 || by["msg"].Events != 1 {
		t.Errorf("SentByTag = %+v", by)
	}
	cancel()
	wg.Wait()
	ring.CloseIntake()
	select {
	case err := <-outDone:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stdout.Run did not return on a closed, empty ring")
	}
	if !ring.Drained() {
		t.Error("chunks left unfinished")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
