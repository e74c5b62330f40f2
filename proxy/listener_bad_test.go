package proxy

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/wire"
	"github.com/klauspost/compress/gzip"
	"github.com/tinylib/msgp/msgp"
)

// gzipBomb is a CompressedPackedForward stream that inflates to 100 MiB of zeros: 100
// gzip members of 1 MiB each (senders may concatenate members), about 100 KiB on the
// wire.
var gzipBomb = sync.OnceValue(func() []byte {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	return bytes.Repeat(member.Bytes(), 100)
})

// Bad input closes only the connection that sent it, once logged and counted by
// reason; the events it sent in valid frames before are delivered, and a healthy
// client on another connection at the same time loses nothing.
func TestListenerBadInput(t *testing.T) {
	tooDeep := bytes.Repeat([]byte{0x91}, 200)
	tooDeep = append(tooDeep, 0x01)
	for _, tc := range []struct {
		name   string
		cfg    ListenerConfig
		key    string // shared_key the bad client uses (when cfg.SharedKey is set)
		bad    []byte // written after the valid frames, in the same write
		close  bool   // half-close after writing (the server sees EOF)
		reason string // "" = any one reason
	}{
		{name: "random_bytes", bad: randomBytes(4096), close: true},
		{name: "truncated", bad: frameOf(wire.ModePackedForward, "bad", "x", 0, 5, 50, nil)[:100], close: true, reason: "truncated"},
		// Declares 4 GiB: refused from the header, without waiting for those bytes.
		{name: "str32_4GiB", bad: []byte{0x93, 0xa3, 'b', 'a', 'd', 0xdb, 0xff, 0xff, 0xff, 0xff, 0x92}, reason: "frame_too_large"},
		{name: "array32_huge", bad: []byte{0x93, 0xa3, 'b', 'a', 'd', 0xdd, 0x7f, 0xff, 0xff, 0xff}, reason: "frame_too_large"},
		{name: "gzip_bomb", bad: wire.AppendCompressedPackedForward(nil, "bad", gzipBomb(), 1, nil), reason: "decompressed_too_large"},
		{name: "map_at_top", bad: msgp.AppendInt(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "a"), 1), reason: "bad_frame"},
		{name: "nil_second_element", bad: []byte{0x92, 0xa3, 'b', 'a', 'd', 0xc0}, reason: "bad_frame"},
		{name: "invalid_prefix", bad: []byte{0x93, 0xc1}, reason: "malformed"},
		{name: "too_deep", bad: append([]byte{0x92, 0xa3, 'b', 'a', 'd'}, tooDeep...), reason: "too_deep"},
		{name: "bad_compression", bad: wire.AppendCompressedPackedForward(nil, "bad", []byte("not gzip at all"), 1, nil), reason: "compression"},
		{name: "wrong_shared_key", cfg: ListenerConfig{SharedKey: "right"}, key: "wrong", reason: "handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.cfg)
			dial := func() (*rawClient, error) {
				if tc.cfg.SharedKey != "" {
					return dialHandshake(t, h, tc.cfg.SharedKey)
				}
				return dialRaw(t, "tcp", h.addr), nil
			}

			// The healthy client: acked events, one at a time, during the whole test.
			const healthyN = 200
			healthy := make(chan error, 1)
			go func() {
				rc, err := dial()
				if err != nil {
					healthy <- err
					return
				}
				healthy <- rc.sendAcked("good", "healthy", 0, healthyN, 80)
			}()

			// The bad client: valid frames of every mode, then the bad bytes.
			bad := dialRaw(t, "tcp", h.addr)
			const preN = 30
			pre := 0
			if tc.cfg.SharedKey != "" {
				if _, err := wire.ClientHandshake(bad.dec, bad.c, wire.ClientAuth{Hostname: "bad-client", SharedKey: tc.key}); err == nil {
					t.Fatal("handshake with a wrong key succeeded")
				}
			} else {
				var b []byte
				b = append(b, frameOf(wire.ModeMessage, "pre", "pre", 0, 10, 60, nil)...)
				b = append(b, frameOf(wire.ModeForward, "pre", "pre", 10, 10, 60, nil)...)
				b = append(b, frameOf(wire.ModePackedForward, "pre", "pre", 20, 10, 60, nil)...)
				pre = preN
				if err := bad.write(append(b, tc.bad...)); err != nil {
					t.Fatal(err)
				}
				if tc.close {
					bad.c.(*net.TCPConn).CloseWrite()
				}
			}
			// The server closes the bad connection at once: the idle timeout is an hour.
			if err := bad.waitClosed(10 * time.Second); err != nil {
				t.Fatalf("bad connection: %v", err)
			}

			if err := <-healthy; err != nil {
				t.Fatalf("healthy client: %v", err)
			}
			h.out.waitSrc(t, "healthy", healthyN)
			h.out.waitSrc(t, "pre", pre)
			evs := h.out.Events()
			if dups := checkSeqs(t, evs, "healthy", healthyN); dups > 0 {
				t.Errorf("healthy: %d duplicates", dups)
			}
			checkRaw(t, evs, "healthy", 80)
			if pre > 0 {
				checkSeqs(t, evs, "pre", pre)
				checkRaw(t, evs, "pre", 60)
			}

			eventually(t, func() bool {
				var n int64
				for _, v := range h.errors() {
					n += v
				}
				return n >= 1
			}, "the error to be counted")
			errs := h.errors()
			var total int64
			for _, v := range errs {
				total += v
			}
			if total != 1 || (tc.reason != "" && errs[tc.reason] != 1) {
				t.Errorf("errors = %v, want one %q", errs, tc.reason)
			}
			// Logged once, with the peer's address and the reason.
			peer := bad.c.LocalAddr().String()
			lines := h.logs.lines("peer=" + peer)
			if len(lines) != 1 {
				t.Errorf("%d log lines for the bad peer, want 1: %q", len(lines), lines)
			} else if r := tc.reason; r != "" && !strings.Contains(lines[0], "reason="+r) {
				t.Errorf("log line %q lacks reason=%s", lines[0], r)
			}
			t.Logf("errors %v; log: %s", errs, strings.TrimSpace(strings.Join(lines, "")))
			if s := h.ln.Stats(); s.ActiveConnections > 1 {
				// The healthy client may still be connected; the bad one is gone.
				t.Errorf("%d active connections", s.ActiveConnections)
			}
		})
	}
}

// randomBytes is seeded: the same bytes every run.
func randomBytes(n int) []byte {
	rng := mrand.New(mrand.NewPCG(42, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// A JSON-framed stream (fluent-logger-golang's MarshalAsJSON) that turns bad.
func TestListenerBadJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ListenerConfig{})
	rc := dialRaw(t, "tcp", h.addr)
	var b []byte
	for i := range 5 {
		sec, _ := eventTime(i)
		b = fmt.Appendf(b, `["json",%d,{"src":"json","seq":%d,"msg":"m%d"},{}]`, sec, i, i)
	}
	b = append(b, `["json",1,{"a":1]}]`...)
	if err := rc.write(b); err != nil {
		t.Fatal(err)
	}
	if err := rc.waitClosed(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.out.waitSrc(t, "json", 5)
	checkSeqs(t, h.out.Events(), "json", 5)
	eventually(t, func() bool { return h.errors()["bad_json"] == 1 }, "a bad_json error (have %v)", h.errors())
}
