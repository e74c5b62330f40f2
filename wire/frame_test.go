package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Hand-built fixtures, hex. Times: 1700000000 = 0x6553f100.
const (
	tagHex = "a8 " + "746573742e746167" // "test.tag"
	// [EventTime(1700000000, 123) fixext8, {"k":"v"}] — 16 bytes
	e1 = "92 d700 6553f100 0000007b 81 a16b a176"
	// [1700000001 uint32, {"msg":"hi","n":1}] — 17 bytes
	e2 = "92 ce6553f101 82 a36d7367 a26869 a16e 01"
	// [EventTime(1700000002, 0) as ext8 (c7 08 00), {}] — 13 bytes
	e3 = "92 c70800 6553f102 00000000 80"
	// v1.5: [[EventTime(1700000003, 1), {"k":"v"}], {"msg":"hi"}] — 25 bytes
	e4 = "92 92 d700 6553f103 00000001 81a16ba176 81 a36d7367 a26869"
	// [-1 negative fixint, {}] and [uint64 1700000004, {}]: integer times of any width
	e5 = "92 ff 80"
	e6 = "92 cf 000000006553f104 80"

	// Well-formed but invalid entries.
	iFloat    = "92 cb 41d954fc40000000 81a16ba176"  // float time
	iNotMap   = "92 01 a178"                         // record is a string
	iThree    = "93 01 80 80"                        // 3-element entry
	iExt1     = "92 d701 6553f100 00000000 80"       // ext type 1, not EventTime
	iMeta     = "92 92 d700 6553f100 00000000 01 80" // v1.5 metadata not a map
	iScalar   = "01"                                 // not an array
	iNilTime  = "92 c0 80"
	iStrTime  = "92 a131 80"
	iOne      = "91 01"
	iExt8Len4 = "92 c70400 00000000 80"                 // ext8 type 0 but 4 bytes
	iMsgTime  = "92 d6ff 6553f100 80"                   // msgpack timestamp (ext -1), not EventTime
	iV15Three = "92 93 d700 6553f100 00000000 80 80 80" // v1.5 time of 3 elements

	// option fragments
	kSize       = "a4 73697a65"
	kChunk      = "a5 6368756e6b"
	kCompressed = "aa 636f6d70726573736564"
	vText       = "a4 74657874"
	vGzip       = "a4 677a6970"
	vZstd       = "a4 7a737464"
)

// fluentdChunk is what fluentd's out_forward sends as chunk: base64 of 16 bytes plus
// a trailing newline (Ruby's Base64.encode64).
const fluentdChunk = "YWJjZGVmZ2hpamtsbW5vcA==\n"

func gzipMembers(t testing.TB, members ...[]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, m := range members {
		zw := gzip.NewWriter(&out)
		if _, err := zw.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// str32Hex / bin8Hex frame a payload for the fixtures that embed computed bytes.
func str32(b []byte) []byte {
	return cat(hx("db"), []byte{byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b)
}

type parseCase struct {
	name  string
	frame []byte
	want  snap // Bytes defaults to len(frame)
}

func parseCases(t testing.TB) []parseCase {
	gz2 := gzipMembers(t, hx(e1), hx(e2)) // two concatenated gzip members
	zs := zstdBytes(t, hx(e1+e2+e3))
	return []parseCase{
		{
			name:  "message without option",
			frame: hx("93" + tagHex + "ce6553f100 81a16ba176"),
			want:  snap{Mode: ModeMessage, Tag: "test.tag", Entries: "92ce6553f10081a16ba176", Count: 1, Size: -1},
		},
		{
			name:  "message with chunk option, EventTime",
			frame: hx("94" + tagHex + "d700 6553f100 0000007b 81a16ba176 | 81" + kChunk + "a3616263"),
			want:  snap{Mode: ModeMessage, Tag: "test.tag", Entries: "92d7006553f1000000007b81a16ba176", Count: 1, Chunk: "abc", HasChunk: true, Size: -1},
		},
		{
			name:  "message with ext8 EventTime and nil option",
			frame: hx("94" + tagHex + "c70800 6553f100 0000007b 80 c0"),
			want:  snap{Mode: ModeMessage, Tag: "test.tag", Entries: h("92 c70800 6553f100 0000007b 80"), Count: 1, Size: -1},
		},
		{
			name:  "message with empty option map (fluent-logger-golang)",
			frame: hx("94" + tagHex + "d2 6553f100 81a16ba176 80"),
			want:  snap{Mode: ModeMessage, Tag: "test.tag", Entries: "92d26553f10081a16ba176", Count: 1, Size: -1},
		},
		{
			name:  "message with float time is dropped but still acked",
			frame: hx("94" + tagHex + "cb41d954fc40000000 81a16ba176 81" + kChunk + "a3616263"),
			want:  snap{Mode: ModeMessage, Tag: "test.tag", Invalid: 1, Chunk: "abc", HasChunk: true, Size: -1},
		},
		{
			name:  "message with non-map record",
			frame: hx("93" + tagHex + "01 a178"),
			want:  snap{Mode: ModeMessage, Tag: "test.tag", Invalid: 1, Size: -1},
		},
		{
			name:  "message with msgpack timestamp ext (-1) is an invalid event",
			frame: hx("93" + tagHex + "d6ff6553f100 80"),
			want:  snap{Mode: ModeMessage, Tag: "test.tag", Invalid: 1, Size: -1},
		},
		{
			// element [1] is an array: Forward mode, as fluentd reads it (v1.5 times
			// come in Forward and PackedForward entries, not in Message mode).
			name:  "message-like frame with a v1.5 time is forward mode",
			frame: hx("93" + tagHex + e4[3:]),
			want:  snap{Mode: ModeForward, Tag: "test.tag", Invalid: 2, Size: -1},
		},
		{
			name:  "forward without option",
			frame: hx("92" + tagHex + "92" + e1 + e2),
			want:  snap{Mode: ModeForward, Tag: "test.tag", Entries: h(e1 + e2), Count: 2, Size: -1},
		},
		{
			name:  "forward with option",
			frame: hx("93" + tagHex + "93" + e1 + e2 + e3 + "82" + kSize + "03" + kChunk + "a3616263"),
			want:  snap{Mode: ModeForward, Tag: "test.tag", Entries: h(e1 + e2 + e3), Count: 3, Chunk: "abc", HasChunk: true, Size: 3},
		},
		{
			name:  "forward with no entries",
			frame: hx("92" + tagHex + "90"),
			want:  snap{Mode: ModeForward, Tag: "test.tag", Size: -1},
		},
		{
			name:  "forward with invalid entries",
			frame: hx("92" + tagHex + "95" + iFloat + e1 + iNotMap + e2 + iThree),
			want:  snap{Mode: ModeForward, Tag: "test.tag", Entries: h(e1 + e2), Count: 2, Invalid: 3, Size: -1},
		},
		{
			name: "packed forward as fluentd out_forward sends it (str32, compressed text, chunk)",
			frame: cat(hx("93"+tagHex+"db00000021"+e1+e2+"83"+kSize+"02"+kCompressed+vText+kChunk+"b9"),
				[]byte(fluentdChunk)),
			want: snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e1 + e2), Count: 2, Chunk: fluentdChunk, HasChunk: true, Size: 2, Compression: "text"},
		},
		{
			name:  "packed forward with bin8 stream and no option",
			frame: hx("92" + tagHex + "c421" + e1 + e2),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e1 + e2), Count: 2, Size: -1},
		},
		{
			name:  "packed forward with fixstr stream",
			frame: hx("93" + tagHex + "ad" + e3 + "81" + kSize + "01"),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3), Count: 1, Size: 1},
		},
		{
			name:  "packed forward with empty stream",
			frame: hx("93" + tagHex + "a0 81" + kSize + "00"),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Size: 0},
		},
		{
			name:  "ext8 EventTime, v1.5 time, wide integers",
			frame: cat(hx("92"+tagHex), str32(hx(e3+e4+e5+e6))),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3 + e4 + e5 + e6), Count: 4, Size: -1},
		},
		{
			name: "invalid entries dropped, valid ones kept byte for byte",
			frame: cat(hx("92"+tagHex),
				str32(hx(iFloat+e1+iNotMap+iThree+e2+iExt1+iMeta+e3+iScalar+iNilTime+iStrTime+e4+iOne+iExt8Len4+iMsgTime+iV15Three+e5))),
			want: snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e1 + e2 + e3 + e4 + e5), Count: 5, Invalid: 12, Size: -1},
		},
		{
			name:  "all entries invalid",
			frame: cat(hx("92"+tagHex), str32(hx(iFloat+iNotMap))),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Invalid: 2, Size: -1},
		},
		{
			name:  "unknown option keys ignored, non-string keys too",
			frame: hx("93" + tagHex + "ad" + e3 + "85" + "a3666f6f 920102" + kSize + "01" + "0102" + "c403626172 c0" + kChunk + "a178"),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3), Count: 1, Chunk: "x", HasChunk: true, Size: 1},
		},
		{
			name:  "size of the wrong type is ignored",
			frame: hx("93" + tagHex + "ad" + e3 + "81" + kSize + "a3313030"),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3), Count: 1, Size: -1},
		},
		{
			name:  "empty chunk is still acked (fluentd acks \"\")",
			frame: hx("93" + tagHex + "ad" + e3 + "81" + kChunk + "a0"),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3), Count: 1, HasChunk: true, Size: -1},
		},
		{
			name:  "chunk as bin, nil chunk",
			frame: hx("93" + tagHex + "ad" + e3 + "82" + kChunk + "c0" + "c405 6368756e6b c40201ff"),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3), Count: 1, Chunk: "\x01\xff", HasChunk: true, Size: -1},
		},
		{
			name:  "compressed nil is text",
			frame: hx("93" + tagHex + "ad" + e3 + "81" + kCompressed + "c0"),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3), Count: 1, Size: -1},
		},
		{
			name:  "tag as bin",
			frame: hx("92 c408 746573742e746167 ad" + e3),
			want:  snap{Mode: ModePackedForward, Tag: "test.tag", Entries: h(e3), Count: 1, Size: -1},
		},
		{
			name: "compressed packed forward, two gzip members, str32 as fluentd sends",
			frame: cat(hx("93"+tagHex), str32(gz2),
				hx("83"+kSize+"02"+kCompressed+vGzip+kChunk+"b9"), []byte(fluentdChunk)),
			want: snap{Mode: ModeCompressedPackedForward, Tag: "test.tag", Entries: h(e1 + e2), Count: 2, Chunk: fluentdChunk, HasChunk: true, Size: 2, Compression: "gzip"},
		},
		{
			name:  "compressed packed forward as bin with an invalid entry",
			frame: cat(hx("93"+tagHex+"c5"), []byte{0, byte(len(gzipMembers(t, hx(e1+iFloat+e2))))}, gzipMembers(t, hx(e1+iFloat+e2)), hx("81"+kCompressed+vGzip)),
			want:  snap{Mode: ModeCompressedPackedForward, Tag: "test.tag", Entries: h(e1 + e2), Count: 2, Invalid: 1, Size: -1, Compression: "gzip"},
		},
		{
			name:  "zstd compressed packed forward",
			frame: cat(hx("93"+tagHex), str32(zs), hx("82"+kSize+"03"+kCompressed+vZstd)),
			want:  snap{Mode: ModeCompressedPackedForward, Tag: "test.tag", Entries: h(e1 + e2 + e3), Count: 3, Size: 3, Compression: "zstd"},
		},
		{
			name:  "keep-alive",
			frame: hx("c0"),
			want:  snap{Size: -1},
		},
	}
}

// h normalises a hex fixture for comparison with snap.Entries.
func h(s string) string { return hex.EncodeToString(hx(s)) }

func TestParse(t *testing.T) {
	p := NewParser(Limits{})
	defer p.Close()
	for _, tc := range parseCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			var f Frame
			if err := p.Parse(tc.frame, 0, &f); err != nil {
				t.Fatalf("Parse(% x): %v", tc.frame, err)
			}
			want := tc.want
			if want.Bytes == 0 {
				want.Bytes = len(tc.frame)
			}
			if got := snapOf(&f); got != want {
				t.Errorf("Parse(% x)\n got %+v\nwant %+v", tc.frame, got, want)
			}
			// The entries are all valid and decode back to the same count.
			if f.Count > 0 {
				ints, err := EntriesIntTime(nil, f.Entries)
				if err != nil {
					t.Fatalf("EntriesIntTime on decoded entries: %v", err)
				}
				var g Frame
				if err := p.Parse(AppendPackedForward(nil, "x", ints, f.Count, nil), 0, &g); err != nil || g.Count != f.Count || g.Invalid != 0 {
					t.Fatalf("re-encoded entries: count %d invalid %d err %v", g.Count, g.Invalid, err)
				}
			}
		})
	}
}

// A PackedForward stream with only valid entries is handed out without a copy.
func TestParsePackedZeroCopy(t *testing.T) {
	frame := hx("92" + tagHex + "c421" + e1 + e2)
	var f Frame
	p := NewParser(Limits{})
	if err := p.Parse(frame, 0, &f); err != nil {
		t.Fatal(err)
	}
	if &f.Entries[0] != &frame[len(frame)-0x21] {
		t.Error("entries were copied")
	}
	if &f.Tag[0] != &frame[2] {
		t.Error("tag was copied")
	}
}

// Frame fields from a previous parse never leak into the next.
func TestParseResetsFrame(t *testing.T) {
	p := NewParser(Limits{})
	var f Frame
	if err := p.Parse(hx("93"+tagHex+"ad"+e3+"82"+kChunk+"a178"+kSize+"01"), 0, &f); err != nil {
		t.Fatal(err)
	}
	if err := p.Parse(hx("92"+tagHex+"90"), 0, &f); err != nil {
		t.Fatal(err)
	}
	if f.Chunk != nil || f.Size != -1 || f.Count != 0 || f.Mode != ModeForward {
		t.Fatalf("frame not reset: %+v", snapOf(&f))
	}
}

func TestParseErrors(t *testing.T) {
	bomb := gzipMembers(t, make([]byte, 2<<20))
	var manyMembers [][]byte
	for range 5 {
		manyMembers = append(manyMembers, make([]byte, 300<<10))
	}
	bomb2 := gzipMembers(t, manyMembers...) // every member under the limit, the sum over it
	zbomb := zstdBytes(t, make([]byte, 2<<20))
	cases := []struct {
		name     string
		frame    []byte
		sentinel error
		off      int64
		inflated bool // the offset is inside the inflated stream
	}{
		{"empty", nil, ErrBadFrame, 0, false},
		{"integer", hx("01"), ErrBadFrame, 0, false},
		{"map", hx("80"), ErrBadFrame, 0, false},
		{"array of 1", hx("91 a161"), ErrBadFrame, 0, false},
		{"array of 5", hx("95 a161 01 80 80 80"), ErrBadFrame, 0, false},
		{"short array header", hx("dc00"), ErrBadFrame, 0, false},
		{"tag is an integer", hx("92 01 90"), ErrBadFrame, 1, false},
		{"tag is truncated", hx("92 a561"), ErrMalformed, 1, false},
		{"second element nil", hx("92 a161 c0"), ErrBadFrame, 3, false},
		{"second element a map", hx("92 a161 80"), ErrBadFrame, 3, false},
		{"second element a bool", hx("92 a161 c3"), ErrBadFrame, 3, false},
		{"message with 2 elements", hx("92 a161 01"), ErrBadFrame, 3, false},
		{"message time truncated", hx("93 a161 cd00"), ErrMalformed, 3, false},
		{"message record truncated", hx("93 a161 01 81a1"), ErrMalformed, 4, false},
		{"forward with 4 elements", hx("94 a161 90 80 80"), ErrBadFrame, 3, false},
		{"packed with 4 elements", hx("94 a161 a0 80 80"), ErrBadFrame, 3, false},
		{"forward entries missing", hx("92 a161 92" + e1), ErrMalformed, 20, false},
		{"forward entry truncated", hx("92 a161 91 92 01 81"), ErrMalformed, 4, false},
		{"option not a map", hx("93 a161 a0 01"), ErrBadFrame, 4, false},
		{"message option not a map", hx("94 a161 01 80 a0"), ErrBadFrame, 5, false},
		{"chunk is an integer", hx("93 a161 a0 81" + kChunk + "01"), ErrBadFrame, 11, false},
		{"compressed is an integer", hx("93 a161 a0 81" + kCompressed + "01"), ErrBadFrame, 16, false},
		{"option value truncated", hx("93 a161 a0 81" + kChunk + "a5"), ErrMalformed, 11, false},
		{"option map short", hx("93 a161 a0 82" + kChunk + "a0"), ErrMalformed, -1, false},
		{"unsupported compression", hx("93 a161 a0 81" + kCompressed + "a7 6465666c617465"), ErrCompression, 4, false},
		{"gzip garbage", hx("93 a161 a3787878 81" + kCompressed + vGzip), ErrCompression, 4, false},
		{"gzip truncated", cat(hx("93 a161"), str32(gzipMembers(t, hx(e1))[:20]), hx("81"+kCompressed+vGzip)), ErrCompression, 8, false},
		{"zstd garbage", hx("93 a161 a3787878 81" + kCompressed + vZstd), ErrCompression, 4, false},
		{"gzip bomb", cat(hx("93 a161"), str32(bomb), hx("81"+kCompressed+vGzip)), ErrDecompressedTooLarge, 8, false},
		{"multi-member gzip bomb", cat(hx("93 a161"), str32(bomb2), hx("81"+kCompressed+vGzip)), ErrDecompressedTooLarge, 8, false},
		{"zstd bomb", cat(hx("93 a161"), str32(zbomb), hx("81"+kCompressed+vZstd)), ErrDecompressedTooLarge, 8, false},
		{"trailing bytes", hx("92 a161 90 00"), ErrMalformed, 4, false},
		{"packed entry truncated", hx("92 a161 a3 920181"), ErrMalformed, 4, false},
		{"packed entry invalid prefix", hx("92 a161 a2" + "01 c1"), ErrMalformed, 5, false},
		{"gzip stream entry truncated", cat(hx("93 a161"), str32(gzipMembers(t, hx(e1+"9201"))), hx("81"+kCompressed+vGzip)), ErrMalformed, 16, true},
	}
	p := NewParser(Limits{MaxDecompressedBytes: 1 << 20})
	defer p.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f Frame
			err := p.Parse(tc.frame, 0, &f)
			wantDecodeError(t, err, tc.sentinel, tc.off)
			// base shifts stream offsets (not those inside an inflated stream)
			off := tc.off
			if off >= 0 && !tc.inflated {
				off += 1000
			}
			wantDecodeError(t, p.Parse(tc.frame, 1000, &f), tc.sentinel, off)
		})
	}
}

// A small decompression limit, including one under zstd's 1 KiB minimum window,
// must not break ordinary compressed frames.
func TestParseSmallDecompressionLimit(t *testing.T) {
	entries := hx(e1 + e2 + e3)
	for _, lim := range []int{len(entries), 100, 1000, 4096} {
		p := NewParser(Limits{MaxDecompressedBytes: lim})
		for _, tc := range []struct {
			comp string
			data []byte
		}{{"gzip", gzipMembers(t, entries)}, {"zstd", zstdBytes(t, entries)}} {
			var f Frame
			frame := cat(hx("93 a161"), str32(tc.data), hx("81"+kCompressed), []byte{0xa4}, []byte(tc.comp))
			if err := p.Parse(frame, 0, &f); err != nil {
				t.Errorf("limit %d, %s: %v", lim, tc.comp, err)
			} else if f.Count != 3 || !bytes.Equal(f.Entries, entries) {
				t.Errorf("limit %d, %s: count %d entries % x", lim, tc.comp, f.Count, f.Entries)
			}
		}
		// One byte over the limit fails.
		var f Frame
		over := cat(entries, hx("92 01 80"))
		if lim < len(over) {
			err := p.Parse(cat(hx("93 a161"), str32(gzipMembers(t, over)), hx("81"+kCompressed+vGzip)), 0, &f)
			wantDecodeError(t, err, ErrDecompressedTooLarge, 8)
		}
		p.Close()
		p.Close() // idempotent
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{0: "unknown", ModeMessage: "message", ModeForward: "forward",
		ModePackedForward: "packed_forward", ModeCompressedPackedForward: "compressed_packed_forward", 9: "unknown"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d) = %q, want %q", m, got, want)
		}
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	got := Limits{}.WithDefaults()
	if got != (Limits{MaxFrameBytes: 32 << 20, MaxDecompressedBytes: 64 << 20, MaxDepth: 100}) {
		t.Errorf("defaults = %+v", got)
	}
	set := Limits{MaxFrameBytes: 1, MaxDecompressedBytes: 2, MaxDepth: 3}
	if set.WithDefaults() != set {
		t.Errorf("WithDefaults changed set fields: %+v", set.WithDefaults())
	}
}

// A stream longer than inflateDirect is measured, then inflated into a buffer of its
// exact size: it decodes the same, and a bomb is refused without holding its size in
// memory (before, it allocated a doubling series up to the limit: twice the limit).
func TestParseLargeCompressedStream(t *testing.T) {
	one := hx(e2)
	const limit = 4 * inflateDirect
	big := bytes.Repeat(one, (3*inflateDirect)/len(one)) // under the limit
	half := len(big) / 2 / len(one) * len(one)
	bomb := make([]byte, limit+1)
	allocated := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	for _, tc := range []struct {
		comp       string
		data, boom []byte
	}{
		{"gzip", gzipMembers(t, big[:half], big[half:]), gzipMembers(t, bomb)},
		{"zstd", zstdBytes(t, big), zstdBytes(t, bomb)},
	} {
		t.Run(tc.comp, func(t *testing.T) {
			p := NewParser(Limits{MaxDecompressedBytes: limit})
			defer p.Close()
			opt := cat(hx("81"+kCompressed), []byte{0xa4}, []byte(tc.comp))
			var f Frame
			if err := p.Parse(cat(hx("93 a161"), str32(tc.data), opt), 0, &f); err != nil {
				t.Fatal(err)
			}
			if f.Count != len(big)/len(one) || !bytes.Equal(f.Entries, big) {
				t.Fatalf("count %d, %d bytes of entries; want %d, %d", f.Count, len(f.Entries), len(big)/len(one), len(big))
			}
			frame := cat(hx("93 a161"), str32(tc.boom), opt)
			var err error
			n := allocated(func() { err = p.Parse(frame, 0, &f) })
			wantDecodeError(t, err, ErrDecompressedTooLarge, 8)
			if limit := uint64(2*inflateDirect + 4<<20); n > limit {
				t.Errorf("a bomb allocated %d bytes, want at most %d", n, limit)
			}
		})
	}
}

// Parsers sharing an InflateGate inflate one stream per slot; frames that need no
// inflation never wait for it.
func TestInflateGate(t *testing.T) {
	g := NewInflateGate(1)
	p := NewParser(Limits{})
	p.SetInflateGate(g)
	defer p.Close()
	compressed := cat(hx("93 a161"), str32(gzipMembers(t, hx(e1))), hx("81"+kCompressed+vGzip))
	var f Frame
	g <- struct{}{} // another parser is inflating
	if err := p.Parse(hx("92 a161 a0"), 0, &f); err != nil {
		t.Fatalf("plain packed frame: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		var f Frame
		done <- p.Parse(compressed, 0, &f)
	}()
	select {
	case err := <-done:
		t.Fatalf("inflated while the only slot was taken (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	<-g
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(g) != 0 {
		t.Fatalf("slot not released: %d taken", len(g))
	}
}
