package wire

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// JSON-framed streams, as fluent-logger-golang sends them with MarshalAsJSON: the
// records are converted to msgpack once, at the edge.
func TestDecoderJSON(t *testing.T) {
	frames := []struct {
		json string
		want snap
	}{
		{
			`["test.tag",1700000000,{"k":"v"},{"chunk":"abc"}]`,
			snap{Mode: ModeMessage, Tag: "test.tag", Entries: h("92 d26553f100 81a16ba176"), Count: 1, Chunk: "abc", HasChunk: true, Size: -1},
		},
		{
			"\n \t[\"test.tag\", 1700000000.5, {\"k\": \"v\"}]",
			snap{Mode: ModeMessage, Tag: "test.tag", Entries: h("92 d700 6553f100 1dcd6500 81a16ba176"), Count: 1, Size: -1},
		},
		{
			`["test.tag",[[1700000000,{"a":1}],[1700000001,{"b":true,"c":null,"d":[1.5,-2,"x"]}]],{"size":2}]`,
			snap{Mode: ModeForward, Tag: "test.tag", Count: 2, Size: 2, Entries: h(
				"92 d26553f100 81 a161 01" +
					"92 d26553f101 83 a162 c3 a163 c0 a164 93 cb3ff8000000000000 fe a178")},
		},
		{
			// brackets and escapes inside strings do not end the frame
			`["test.tag",1700000000,{"m":"a]b[\"}{\\","u":"\u00e9"}]`,
			snap{Mode: ModeMessage, Tag: "test.tag", Count: 1, Size: -1,
				Entries: h("92 d26553f100 82 a16d a8 615d625b227d7b5c a175 a2c3a9")},
		},
		{
			// a float time outside Message mode stays a float: invalid, as in fluentd
			`["test.tag",[[1.5,{}],[-1,{}]]]`,
			snap{Mode: ModeForward, Tag: "test.tag", Count: 1, Invalid: 1, Size: -1, Entries: h("92 ff 80")},
		},
		{
			// integers beyond int64
			`["test.tag",18446744073709551615,{"big":18446744073709551615}]`,
			snap{Mode: ModeMessage, Tag: "test.tag", Count: 1, Size: -1,
				Entries: h("92 cfffffffffffffffff 81 a3626967 cfffffffffffffffff")},
		},
	}
	var stream string
	var want []snap
	for _, fr := range frames {
		stream += fr.json + "\n"
		w := fr.want
		w.JSON = true
		w.Bytes = len(strings.TrimLeft(fr.json, " \t\r\n"))
		want = append(want, w)
	}
	for name, r := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(stream)) },
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decodeAll(r(), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d frames, want %d: %+v", len(got), len(want), got)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("frame %d\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})
	}
	for seed := range uint64(10) {
		got, err := decodeAll(newPieceReader([]byte(stream), seed, 9), Limits{})
		if err != nil || len(got) != len(want) || got[2] != want[2] {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

func TestDecoderJSONDetect(t *testing.T) {
	d := NewDecoder(strings.NewReader(" [\"a\",1,{}]"), Limits{})
	var f Frame
	if err := d.Next(&f); err != nil || !f.JSON || !d.JSON() {
		t.Fatalf("err %v, frame JSON %v, decoder JSON %v", err, f.JSON, d.JSON())
	}
}

func TestDecoderJSONErrors(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		lim      Limits
		sentinel error
		off      int64
	}{
		{"truncated", `["a",1,{}]["a",1`, Limits{}, ErrTruncated, 10},
		{"garbage between frames", `["a",1,{}] x`, Limits{}, ErrBadJSON, 11},
		{"bad JSON inside brackets", `["a", }`, Limits{}, ErrBadJSON, 0},
		{"object key not closed", `["a",1,{"k"]}]`, Limits{}, ErrBadJSON, 0},
		{"empty array", `[]`, Limits{}, ErrBadFrame, 0},
		{"not a forward frame", `[1,2]`, Limits{}, ErrBadFrame, 1},
		{"larger than the limit", `["a",1,{"k":"` + strings.Repeat("x", 100), Limits{MaxFrameBytes: 64}, ErrFrameTooLarge, 64},
		{"deeper than the limit", `["a",1,{"k":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}]`, Limits{MaxDepth: 10}, ErrBadJSON, 0},
		{"deep Forward entries", `["a",[` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `]]`, Limits{}, ErrBadJSON, 0},
		{"deep Forward entries, small limit", `["a",[[1,{"k":[[[[[[[[[[[[1]]]]]]]]]]]]}]]]`, Limits{MaxDepth: 10}, ErrBadJSON, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAll(&thenErr{data: []byte(tc.in), err: errWaited}, tc.lim)
			if tc.sentinel == ErrTruncated {
				_, err = decodeAll(strings.NewReader(tc.in), tc.lim)
			}
			wantDecodeError(t, err, tc.sentinel, tc.off)
		})
	}
}
