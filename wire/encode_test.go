package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAppendPackedForward(t *testing.T) {
	entries := hx(e1 + e2)
	cases := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"with chunk", AppendPackedForward(nil, "test.tag", entries, 2, []byte(fluentdChunk)),
			cat(hx("93"+tagHex+"db00000021"+e1+e2+"82"+kSize+"02"+kChunk+"b9"), []byte(fluentdChunk))},
		{"without chunk", AppendPackedForward(nil, "test.tag", entries, 2, nil),
			hx("93" + tagHex + "db00000021" + e1 + e2 + "81" + kSize + "02")},
		{"appends to dst", AppendPackedForward([]byte{0xc0}, "t", nil, 0, nil),
			hx("c0 93 a174 db00000000 81" + kSize + "00")},
		{"head and option (writev)", cat(AppendPackedForwardHead(nil, "test.tag", len(entries)), entries, AppendForwardOption(nil, 2, []byte("id"), "gzip")),
			hx("93" + tagHex + "db00000021" + e1 + e2 + "83" + kSize + "02" + kChunk + "a26964" + kCompressed + vGzip)},
		{"size beyond fixint", AppendForwardOption(nil, 1000, nil, ""), hx("81" + kSize + "d103e8")},
		{"forward", AppendForward(nil, "test.tag", entries, 2, []byte("id")),
			hx("93" + tagHex + "92" + e1 + e2 + "82" + kSize + "02" + kChunk + "a26964")},
		{"message", AppendMessage(nil, "test.tag", hx("ce6553f100"), hx("81a16ba176"), nil),
			hx("93" + tagHex + "ce6553f100 81a16ba176")},
		{"message with chunk", AppendMessage(nil, "test.tag", hx("ce6553f100"), hx("81a16ba176"), []byte("id")),
			hx("94" + tagHex + "ce6553f100 81a16ba176 81" + kChunk + "a26964")},
		{"entry", AppendEntry(nil, hx("d700 6553f100 0000007b"), hx("81a16ba176")), hx(e1)},
	}
	for _, tc := range cases {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, tc.got, tc.want)
		}
	}
}

// What we encode, we (and so fluentd's rules) decode back to the same entries.
func TestEncodeRoundTrip(t *testing.T) {
	entries := hx(e1 + e2 + e3 + e4)
	gz := gzipMembers(t, entries)
	p := NewParser(Limits{})
	defer p.Close()
	cases := []struct {
		frame []byte
		mode  Mode
		comp  string
	}{
		{AppendPackedForward(nil, "a.b", entries, 4, []byte("c")), ModePackedForward, ""},
		{AppendCompressedPackedForward(nil, "a.b", gz, 4, []byte("c")), ModeCompressedPackedForward, "gzip"},
		{AppendForward(nil, "a.b", entries, 4, []byte("c")), ModeForward, ""},
	}
	for _, tc := range cases {
		var f Frame
		if err := p.Parse(tc.frame, 0, &f); err != nil {
			t.Fatal(err)
		}
		if f.Mode != tc.mode || string(f.Tag) != "a.b" || !bytes.Equal(f.Entries, entries) || f.Count != 4 ||
			f.Size != 4 || string(f.Chunk) != "c" || f.Compression != tc.comp {
			t.Errorf("%v: %+v", tc.mode, snapOf(&f))
		}
	}
}

func TestAppendAck(t *testing.T) {
	hex32 := strings.Repeat("0123456789abcdef", 2)
	cases := []struct {
		chunk []byte
		want  []byte
	}{
		// fluentd's chunk: base64 of 16 bytes and a newline, echoed byte for byte
		{[]byte(fluentdChunk), cat(hx("81 a3 61636b b9"), []byte(fluentdChunk))},
		// fluent-bit's older chunk: 32 hex characters (str8 header)
		{[]byte(hex32), cat(hx("81 a3 61636b d9 20"), []byte(hex32))},
		{[]byte{}, hx("81 a3 61636b a0")},
		// binary ids go out as str all the same (fluent-bit rejects anything else)
		{[]byte{0xff, 0x00}, hx("81 a3 61636b a2 ff00")},
		{bytes.Repeat([]byte("x"), 300), cat(hx("81 a3 61636b da 012c"), bytes.Repeat([]byte("x"), 300))},
	}
	for _, tc := range cases {
		got := AppendAck(nil, tc.chunk)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("AppendAck(%q):\n got % x\nwant % x", tc.chunk, got, tc.want)
		}
		id, err := ParseAck(got)
		if err != nil || !bytes.Equal(id, tc.chunk) {
			t.Errorf("ParseAck(AppendAck(%q)) = %q, %v", tc.chunk, id, err)
		}
	}
	if got := AppendAck([]byte{1}, []byte("a")); !bytes.Equal(got, hx("01 81a361636b a161")) {
		t.Errorf("AppendAck does not append: % x", got)
	}
}

func TestAppendAckJSON(t *testing.T) {
	got := AppendAckJSON([]byte("x"), []byte(fluentdChunk))
	if want := `x{"ack":"YWJjZGVmZ2hpamtsbW5vcA==\n"}`; string(got) != want {
		t.Fatalf("AppendAckJSON = %s, want %s", got, want)
	}
	var resp struct{ Ack string }
	if err := json.Unmarshal(got[1:], &resp); err != nil || resp.Ack != fluentdChunk {
		t.Fatalf("round trip: %q %v", resp.Ack, err)
	}
	if got := AppendAckJSON(nil, []byte(`a"b\`)); string(got) != `{"ack":"a\"b\\"}` {
		t.Fatalf("escaping: %s", got)
	}
}

func TestParseAck(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want string
		err  bool
	}{
		{"str", hx("81 a361636b a3616263"), "abc", false},
		{"bin", hx("81 a361636b c403616263"), "abc", false},
		{"other keys around", hx("83 a178 01 a361636b a3616263 a179 920102"), "abc", false},
		{"empty id", hx("81 a361636b a0"), "", false},
		{"not a map", hx("91 a3616263"), "", true},
		{"empty map", hx("80"), "", true},
		{"no ack key", hx("81 a3616263 a3616263"), "", true},
		{"ack is an integer", hx("81 a361636b 01"), "", true},
		{"ack is nil", hx("81 a361636b c0"), "", true},
		{"truncated", hx("81 a361636b a5616263"), "", true},
		{"key not a string", hx("81 01 a3616263"), "", true},
		{"short map", hx("82 a361636b a3616263"), "", true},
		{"nothing", nil, "", true},
	}
	for _, tc := range cases {
		id, err := ParseAck(tc.in)
		if tc.err {
			if !errors.Is(err, ErrNotAck) {
				t.Errorf("%s: ParseAck = %q, %v; want ErrNotAck", tc.name, id, err)
			}
			continue
		}
		if err != nil || string(id) != tc.want || id == nil {
			t.Errorf("%s: ParseAck = %q, %v; want %q", tc.name, id, err, tc.want)
		}
	}
}

func TestEntriesIntTime(t *testing.T) {
	in := hx(e1 + e2 + e3 + e4 + e5 + e6)
	want := hx("92 ce6553f100 81a16ba176" + // EventTime → integer
		"92 ce6553f101 82a36d7367a26869a16e01" + // integers stay
		"92 ce6553f102 80" + // ext8 EventTime
		"92 ce6553f103 81a36d7367a26869" + // v1.5 [EventTime, metadata] → the integer
		"92 ff 80" +
		"92 ce6553f104 80") // uint64 → shortest
	got, err := EntriesIntTime([]byte{0xc0}, in)
	if err != nil || !bytes.Equal(got, cat(hx("c0"), want)) {
		t.Fatalf("EntriesIntTime:\n got % x (%v)\nwant c0 % x", got, err, want)
	}
	for _, bad := range []string{"92 cb41d954fc40000000 80", "92 ce6553f1", "01", "92 01", "92 d701 6553f100 00000000 80"} {
		if _, err := EntriesIntTime(nil, hx(bad)); err == nil {
			t.Errorf("EntriesIntTime(%s): no error", bad)
		}
	}
	if got, err := EntriesIntTime(nil, nil); err != nil || len(got) != 0 {
		t.Errorf("empty: % x %v", got, err)
	}
}

func TestTimeEncoding(t *testing.T) {
	if got := AppendEventTime(nil, 1700000000, 123); !bytes.Equal(got, hx("d700 6553f100 0000007b")) {
		t.Errorf("AppendEventTime = % x", got)
	}
	if got := AppendTime([]byte{1}, time.Unix(1700000000, 123456789).In(time.FixedZone("x", 3600))); !bytes.Equal(got, hx("01 d700 6553f100 075bcd15")) {
		t.Errorf("AppendTime = % x", got)
	}
	ints := []struct {
		in   int64
		want string
	}{
		{0, "00"}, {127, "7f"}, {128, "ce00000080"}, {1700000000, "ce6553f100"}, {0xffffffff, "ceffffffff"},
		{1 << 32, "d3 0000000100000000"}, {-1, "ff"}, {-32, "e0"}, {-33, "d3 ffffffffffffffdf"},
	}
	for _, tc := range ints {
		got := AppendIntTime(nil, tc.in)
		if !bytes.Equal(got, hx(tc.want)) {
			t.Errorf("AppendIntTime(%d) = % x, want %s", tc.in, got, tc.want)
		}
		if sec, nsec, ok := EventTimeOf(got); !ok || sec != tc.in || nsec != 0 {
			t.Errorf("EventTimeOf(AppendIntTime(%d)) = %d %d %v", tc.in, sec, nsec, ok)
		}
	}
}

func TestEventTimeOf(t *testing.T) {
	cases := []struct {
		in   string
		sec  int64
		nsec uint32
		ok   bool
	}{
		{"d700 6553f100 0000007b", 1700000000, 123, true},
		{"c70800 6553f100 0000007b", 1700000000, 123, true},
		{"d700 ffffffff 3b9ac9ff", 0xffffffff, 999999999, true}, // seconds are unsigned
		{"92 d700 6553f100 0000007b 80", 1700000000, 123, true}, // v1.5
		{"92 ce6553f100 80", 1700000000, 0, true},
		{"cfffffffffffffffff", -1, 0, true}, // uint64 beyond int64 wraps
		{"d0 80", -128, 0, true},
		{"d701 6553f100 0000007b", 0, 0, false},
		{"c70400 6553f100", 0, 0, false},
		{"d700 6553", 0, 0, false},
		{"cb41d954fc40000000", 0, 0, false},
		{"a131", 0, 0, false},
		{"92 92 d700 6553f100 0000007b 80 80", 0, 0, false}, // one level of v1.5 only
		{"93 ce6553f100 80 80", 0, 0, false},
		{"dc00", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range cases {
		sec, nsec, ok := EventTimeOf(hx(tc.in))
		if sec != tc.sec || nsec != tc.nsec || ok != tc.ok {
			t.Errorf("EventTimeOf(%s) = %d, %d, %v; want %d, %d, %v", tc.in, sec, nsec, ok, tc.sec, tc.nsec, tc.ok)
		}
	}
	// A hostile nesting does not recurse without bound.
	deep := append(bytes.Repeat([]byte{0x92}, 1<<20), 0x01)
	if _, _, ok := EventTimeOf(deep); ok {
		t.Error("deeply nested array accepted as a time")
	}
}

func TestErrors(t *testing.T) {
	e := derr(42, ErrMalformed, "x %d", 1)
	if e.Error() != "at byte 42: malformed msgpack: x 1" {
		t.Errorf("Error() = %q", e.Error())
	}
	if (&DecodeError{Offset: 1, Err: ErrTruncated}).Error() != "at byte 1: connection ended inside a frame" {
		t.Error("Error() without detail")
	}
	reasons := map[error]string{
		ErrFrameTooLarge: "frame_too_large", ErrDecompressedTooLarge: "decompressed_too_large", ErrTooDeep: "too_deep",
		ErrMalformed: "malformed", ErrTruncated: "truncated", ErrBadFrame: "bad_frame", ErrBadJSON: "bad_json",
		ErrCompression: "compression", ErrHandshake: "handshake", errBoom: "io",
	}
	for err, want := range reasons {
		if got := Reason(&DecodeError{Err: err}); got != want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, want)
		}
	}
	if Reason(nil) != "io" {
		t.Error("Reason(nil)")
	}
}
