package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// streamFixture is every Parse fixture back to back, with keep-alives between some.
func streamFixture(t testing.TB) ([]byte, []snap) {
	var stream []byte
	var want []snap
	p := NewParser(Limits{})
	defer p.Close()
	for i, tc := range parseCases(t) {
		stream = append(stream, tc.frame...)
		if i%3 == 0 {
			stream = append(stream, 0xc0) // keep-alive between frames
		}
		if len(tc.frame) == 1 && tc.frame[0] == 0xc0 {
			continue
		}
		var f Frame
		if err := p.Parse(tc.frame, 0, &f); err != nil {
			t.Fatal(err)
		}
		want = append(want, snapOf(&f))
	}
	return stream, want
}

// Many frames per read, one byte per read, random pieces: the same frames.
func TestDecoderSplitReads(t *testing.T) {
	stream, want := streamFixture(t)
	readers := map[string]func() io.Reader{
		"whole":      func() io.Reader { return bytes.NewReader(stream) },
		"one byte":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":       func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"data + EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
	}
	for seed := range uint64(20) {
		readers[fmt.Sprintf("pieces seed %d", seed)] = func() io.Reader {
			return newPieceReader(stream, seed, 1+int(seed)*7)
		}
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := decodeAll(mk(), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d frames, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("frame %d\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestDecoderOffsetAndBuffered(t *testing.T) {
	f1 := hx("93" + tagHex + "ce6553f100 81a16ba176")
	f2 := hx("92" + tagHex + "92" + e1 + e2)
	stream := cat(f1, hx("c0"), f2)
	d := NewDecoder(bytes.NewReader(stream), Limits{})
	defer d.Close()
	var f Frame
	if err := d.Next(&f); err != nil {
		t.Fatal(err)
	}
	// The keep-alive behind frame 1 is consumed with it.
	if d.Offset() != int64(len(f1))+1 || d.Buffered() != len(stream)-len(f1)-1 {
		t.Fatalf("after frame 1: offset %d buffered %d", d.Offset(), d.Buffered())
	}
	if err := d.Next(&f); err != nil {
		t.Fatal(err)
	}
	if d.Offset() != int64(len(stream)) || d.Buffered() != 0 || f.Mode != ModeForward {
		t.Fatalf("after frame 2: offset %d buffered %d mode %v", d.Offset(), d.Buffered(), f.Mode)
	}
	if err := d.Next(&f); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	if err := d.Next(&f); err != io.EOF {
		t.Fatalf("after the end: %v, want io.EOF", err)
	}
	if d.JSON() {
		t.Error("msgpack stream reported as JSON")
	}
}

func TestDecoderEmptyAndKeepAliveOnly(t *testing.T) {
	for _, in := range [][]byte{nil, hx("c0"), hx("c0c0c0")} {
		got, err := decodeAll(iotest.OneByteReader(bytes.NewReader(in)), Limits{})
		if err != nil || len(got) != 0 {
			t.Errorf("% x: %d frames, err %v", in, len(got), err)
		}
	}
}

func TestDecoderNextRaw(t *testing.T) {
	objs := [][]byte{hx("92 a448454c4f 80"), hx("c3"), hx("db00000003 616263"), hx("c70800 0000000000000000"), hx("dc0002 01 02")}
	d := NewDecoder(iotest.OneByteReader(bytes.NewReader(cat(objs...))), Limits{})
	for i, want := range objs {
		got, err := d.NextRaw()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("object %d: % x, %v; want % x", i, got, err, want)
		}
	}
	if _, err := d.NextRaw(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

// Declared lengths beyond the limit fail as soon as the header is read: the decoder
// never waits for (or allocates) the bytes it announces.
func TestDecoderDeclaredTooLarge(t *testing.T) {
	good := hx("93" + tagHex + "ce6553f100 81a16ba176") // 20 bytes
	cases := []struct {
		name  string
		in    []byte
		lim   Limits
		off   int64
		fatal error
	}{
		{"str32 of 4 GiB", hx("93 a161 dbffffffff"), Limits{}, 3, ErrFrameTooLarge},
		{"str32 of 4 GiB after a good frame", cat(good, hx("93 a161 dbffffffff")), Limits{}, 20 + 3, ErrFrameTooLarge},
		{"bin32 of 4 GiB", hx("92 a161 c6ffffffff"), Limits{}, 3, ErrFrameTooLarge},
		{"ext32 of 4 GiB", hx("93 a161 c9ffffffff00"), Limits{}, 3, ErrFrameTooLarge},
		{"array32 of 4G elements", hx("ddffffffff"), Limits{}, 0, ErrFrameTooLarge},
		{"map32 of 4G pairs", hx("92 a161 dfffffffff"), Limits{}, 3, ErrFrameTooLarge},
		{"nested array beyond the limit", hx("92 a161 dd00100000"), Limits{MaxFrameBytes: 1 << 20}, 3, ErrFrameTooLarge},
		{"str16 beyond a small limit", hx("92 a161 da0100"), Limits{MaxFrameBytes: 200}, 3, ErrFrameTooLarge},
		{"frame one byte over a small limit", hx("92 a161 d9" + "fb"), Limits{MaxFrameBytes: 255}, 3, ErrFrameTooLarge},
		{"too deep", hx(strings.Repeat("91", 101) + "01"), Limits{}, 100, ErrTooDeep},
		{"too deep, small limit", hx("92 a161 91 91 91 01"), Limits{MaxDepth: 3}, 5, ErrTooDeep},
		{"invalid prefix", hx("92 a161 c1"), Limits{}, 3, ErrMalformed},
		{"invalid prefix after a good frame", cat(good, hx("c1")), Limits{}, 20, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// thenErr makes any wait for more bytes visible as errWaited.
			_, err := decodeAll(&thenErr{data: tc.in, err: errWaited}, tc.lim)
			wantDecodeError(t, err, tc.fatal, tc.off)
			if Reason(err) == "io" {
				t.Errorf("Reason(%v) = io", err)
			}
		})
	}
}

// A frame exactly at the limit passes; the depth limit counts containers.
func TestDecoderAtTheLimits(t *testing.T) {
	frame := cat(hx("92 a161"), str32(hx(e1+e2)))
	got, err := decodeAll(bytes.NewReader(frame), Limits{MaxFrameBytes: len(frame)})
	if err != nil || len(got) != 1 || got[0].Count != 2 {
		t.Fatalf("frame at the limit: %v %+v", err, got)
	}
	_, err = decodeAll(bytes.NewReader(frame), Limits{MaxFrameBytes: len(frame) - 1})
	wantDecodeError(t, err, ErrFrameTooLarge, 3)

	deep := hx("92 a161 91 91 01") // 3 containers
	if _, err := decodeAll(bytes.NewReader(deep), Limits{MaxDepth: 3}); errors.Is(err, ErrTooDeep) {
		t.Fatalf("3 containers with MaxDepth 3: %v", err)
	}
	_, err = decodeAll(bytes.NewReader(deep), Limits{MaxDepth: 2})
	wantDecodeError(t, err, ErrTooDeep, 4)
}

func TestDecoderTruncated(t *testing.T) {
	good := hx("93" + tagHex + "ce6553f100 81a16ba176")
	for cut := 1; cut < len(good); cut++ {
		in := cat(good, good[:cut])
		got, err := decodeAll(iotest.OneByteReader(bytes.NewReader(in)), Limits{})
		if len(got) != 1 {
			t.Fatalf("cut %d: %d frames before the error, want 1", cut, len(got))
		}
		wantDecodeError(t, err, ErrTruncated, int64(len(good)))
	}
	// A str32 payload still to come at EOF.
	_, err := decodeAll(bytes.NewReader(hx("93 a161 db00001000 61")), Limits{})
	wantDecodeError(t, err, ErrTruncated, 0)
}

var errBoom = errors.New("boom")

func TestDecoderReadErrors(t *testing.T) {
	good := hx("93" + tagHex + "ce6553f100 81a16ba176")
	// A read error is returned as is, after the frames that arrived before it.
	got, err := decodeAll(&thenErr{data: cat(good, good[:5]), err: errBoom}, Limits{})
	if len(got) != 1 || err != errBoom || Reason(err) != "io" {
		t.Fatalf("got %d frames, err %v", len(got), err)
	}
	// iotest.TimeoutReader: data, then a timeout error.
	got, err = decodeAll(iotest.TimeoutReader(bytes.NewReader(good)), Limits{})
	if err != iotest.ErrTimeout {
		t.Fatalf("got %d frames, err %v", len(got), err)
	}
	// A reader that makes no progress does not hang the decoder.
	_, err = decodeAll(&thenErr{data: good[:3], err: nil}, Limits{})
	if err != io.ErrNoProgress {
		t.Fatalf("zero-progress reader: %v", err)
	}
}

// Bad frames reported by the parser carry stream offsets.
func TestDecoderParseErrorOffset(t *testing.T) {
	good := hx("93" + tagHex + "ce6553f100 81a16ba176")
	bad := hx("93 a161 a0 01") // option is not a map, at frame offset 4
	_, err := decodeAll(iotest.OneByteReader(bytes.NewReader(cat(good, hx("c0"), bad))), Limits{})
	wantDecodeError(t, err, ErrBadFrame, int64(len(good)+1+4))
}

// After a huge frame the decoder does not keep its buffer.
func TestDecoderReleasesLargeBuffer(t *testing.T) {
	big := cat(hx("92 a161"), str32(bytes.Repeat(hx(e1), 100000))) // 1.6 MB
	d := NewDecoder(bytes.NewReader(cat(big, hx("92 a161 90"))), Limits{})
	var f Frame
	if err := d.Next(&f); err != nil || f.Count != 100000 {
		t.Fatalf("big frame: %v, count %d", err, f.Count)
	}
	if err := d.Next(&f); err != nil || f.Mode != ModeForward {
		t.Fatalf("small frame: %v", err)
	}
	if err := d.Next(&f); err != io.EOF {
		t.Fatal(err)
	}
	if cap(d.buf) > 4*initialBuf {
		t.Errorf("buffer of %d bytes kept after the big frame", cap(d.buf))
	}
}

// A frame split anywhere: every split point of a compressed frame.
func TestDecoderEverySplitPoint(t *testing.T) {
	frame := cat(hx("93"+tagHex), str32(gzipMembers(t, hx(e1), hx(e2))), hx("82"+kSize+"02"+kCompressed+vGzip))
	stream := cat(frame, frame)
	for i := 1; i < len(stream); i++ {
		r := io.MultiReader(bytes.NewReader(stream[:i]), bytes.NewReader(stream[i:]))
		got, err := decodeAll(r, Limits{})
		if err != nil || len(got) != 2 || got[1].Entries != h(e1+e2) {
			t.Fatalf("split at %d: %v %+v", i, err, got)
		}
	}
}

func TestSkip(t *testing.T) {
	objs := []string{"00", "ff", "c0", "a3616263", "d90161", "92 01 81 a161 c3", "dc0002 01 02", "de0001 a161 91 00",
		"c70800 0000000000000000", "d8 01 00000000000000000000000000000000", "cb 0000000000000000", e1, e2, e3, e4, e6}
	for _, o := range objs {
		b := hx(o)
		n, err := skip(append(b, 0x01, 0x02))
		if err != nil || n != len(b) {
			t.Errorf("skip(%s) = %d, %v; want %d", o, n, err, len(b))
		}
		for cut := range len(b) {
			if _, err := skip(b[:cut]); err == nil {
				t.Errorf("skip(%s cut at %d): no error", o, cut)
			}
		}
	}
	if _, err := skip(hx("92 c1 01")); err != errPrefix {
		t.Errorf("invalid prefix: %v", err)
	}
	// Nesting costs no stack.
	deep := append(bytes.Repeat([]byte{0x91}, 1<<20), 0x01)
	if n, err := skip(deep); err != nil || n != len(deep) {
		t.Errorf("deep: %d %v", n, err)
	}
}

// A keep-alive right behind a frame must not make the stream look busy: a caller that
// flushes when Buffered() is 0 would otherwise hold the frame's events until its timer.
func TestKeepAliveAfterFrameLeavesNothingBuffered(t *testing.T) {
	entry := AppendEntry(nil, AppendEventTime(nil, 1, 2), []byte{0x81, 0xa1, 'k', 0xa1, 'v'})
	stream := AppendPackedForward(nil, "t", entry, 1, nil)
	stream = append(stream, 0xc0, 0xc0)
	dec := NewDecoder(bytes.NewReader(stream), Limits{})
	defer dec.Close()
	var f Frame
	if err := dec.Next(&f); err != nil {
		t.Fatal(err)
	}
	if f.Count != 1 || dec.Buffered() != 0 {
		t.Fatalf("count %d buffered %d, want 1 and 0", f.Count, dec.Buffered())
	}
	if err := dec.Next(&f); err != io.EOF {
		t.Fatalf("next: %v, want io.EOF", err)
	}
}
