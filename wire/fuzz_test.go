package wire

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// Small limits keep each fuzz execution cheap and make the limit paths reachable.
var fuzzLimits = Limits{MaxFrameBytes: 64 << 10, MaxDecompressedBytes: 256 << 10, MaxDepth: 20}

func addSeeds(f *testing.F) {
	for _, tc := range parseCases(f) {
		f.Add(tc.frame)
	}
	stream, _ := streamFixture(f)
	f.Add(stream)
	f.Add([]byte(`["test.tag",1700000000,{"k":"v"},{"chunk":"abc"}]` + "\n" + `["t",[[1,{"a":[1,2.5,null,true]}]]]`))
	f.Add(hx("93 a161 dbffffffff"))
	f.Add(hx("92 a448454c4f 83 a56e6f6e6365 c410 a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5 a461757468 a0 a96b656570616c697665 c3"))
}

// FuzzDecoder feeds a stream through a reader that cuts it into pseudo-random pieces
// derived from the data itself. It must never panic or grow its buffers beyond the
// limits, and the piecewise stream must decode exactly like the whole one.
func FuzzDecoder(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, wholeErr := decodeAll(bytes.NewReader(data), fuzzLimits)
		h := fnv.New64a()
		h.Write(data)
		seed := h.Sum64()

		d := NewDecoder(newPieceReader(data, seed, 1+int(seed%64)), fuzzLimits)
		defer d.Close()
		var pieces []snap
		var fr Frame
		var pieceErr error
		for {
			err := d.Next(&fr)
			if cap(d.buf) > max(initialBuf, fuzzLimits.MaxFrameBytes+readChunk+16) {
				t.Fatalf("decoder buffer grew to %d bytes", cap(d.buf))
			}
			if cap(d.p.inflate) > 2*fuzzLimits.MaxDecompressedBytes {
				t.Fatalf("inflate buffer grew to %d bytes", cap(d.p.inflate))
			}
			if err != nil {
				if err.Error() != "EOF" {
					pieceErr = err
				}
				break
			}
			if fr.Count > 0 && len(fr.Entries) == 0 || fr.Bytes > fuzzLimits.MaxFrameBytes {
				t.Fatalf("frame %+v", snapOf(&fr))
			}
			checkEntries(t, &fr)
			pieces = append(pieces, snapOf(&fr))
		}
		if len(whole) != len(pieces) {
			t.Fatalf("whole stream: %d frames (%v); in pieces: %d (%v)", len(whole), wholeErr, len(pieces), pieceErr)
		}
		for i := range whole {
			if whole[i] != pieces[i] {
				t.Fatalf("frame %d:\n whole %+v\npieces %+v", i, whole[i], pieces[i])
			}
		}
		if (wholeErr == nil) != (pieceErr == nil) {
			t.Fatalf("whole: %v, pieces: %v", wholeErr, pieceErr)
		}
		if wholeErr != nil {
			var a, b *DecodeError
			if errors.As(wholeErr, &a) != errors.As(pieceErr, &b) || a != nil && (a.Offset != b.Offset || Reason(a) != Reason(b)) {
				t.Fatalf("whole: %v, pieces: %v", wholeErr, pieceErr)
			}
		}
	})
}

// checkEntries re-walks a frame's entries: each one a valid [time, map].
func checkEntries(t *testing.T, f *Frame) {
	t.Helper()
	rest := f.Entries
	n := 0
	for len(rest) > 0 {
		ok, after, err := entry(rest)
		if err != nil || !ok {
			t.Fatalf("entry %d of a decoded frame is not valid: % x (%v)", n, rest, err)
		}
		sz, body, _ := msgp.ReadArrayHeaderBytes(rest)
		if sz != 2 {
			t.Fatalf("entry %d has %d elements", n, sz)
		}
		if _, _, ok := EventTimeOf(body); !ok {
			t.Fatalf("entry %d: no time in % x", n, body)
		}
		rest = after
		n++
	}
	if n != f.Count {
		t.Fatalf("Count %d, %d entries", f.Count, n)
	}
	if _, err := EntriesIntTime(nil, f.Entries); err != nil {
		t.Fatalf("EntriesIntTime on valid entries: %v", err)
	}
}

// FuzzParse runs Parser.Parse on raw bytes: no panic, a *DecodeError or a frame whose
// entries are all valid.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	p := NewParser(fuzzLimits)
	f.Cleanup(p.Close)
	f.Fuzz(func(t *testing.T, data []byte) {
		// skip agrees with msgp.Skip (which also gives up at 100,000 levels).
		n, err := skip(data)
		r, err2 := msgp.Skip(data)
		if (err == nil) != (err2 == nil) && !errors.Is(err2, msgp.ErrRecursion) || err == nil && err2 == nil && n != len(data)-len(r) {
			t.Fatalf("skip = %d, %v; msgp.Skip = %d, %v", n, err, len(data)-len(r), err2)
		}
		var fr Frame
		err = p.Parse(data, 7, &fr)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || Reason(err) == "io" {
				t.Fatalf("error %v (%T) is not a *DecodeError with a reason", err, err)
			}
			if de.Offset < 0 || de.Offset > int64(len(data))+7 && !errors.Is(err, ErrMalformed) {
				t.Fatalf("offset %d beyond the frame (%d bytes): %v", de.Offset, len(data), err)
			}
			return
		}
		checkEntries(t, &fr)
		if fr.Mode == ModePackedForward {
			// A valid PackedForward frame re-encodes to one that decodes the same.
			var g Frame
			chunk := fr.Chunk
			re := AppendPackedForward(nil, string(fr.Tag), fr.Entries, fr.Count, chunk)
			q := NewParser(fuzzLimits)
			defer q.Close()
			if err := q.Parse(re, 0, &g); err != nil || g.Count != fr.Count || !bytes.Equal(g.Entries, fr.Entries) ||
				len(chunk) > 0 && !bytes.Equal(g.Chunk, chunk) {
				t.Fatalf("re-encoded frame: %v %+v", err, snapOf(&g))
			}
		}
	})
}

var jsonSeeds = []string{
	`["test.tag",1700000000,{"k":"v"},{"chunk":"abc"}]`,
	`["t",1700000000.123,{"k":[1,{"x":null}]}]`,
	`["t",[[1700000000,{"a":1}],[1,{}]],{"size":2}]` + "\n" + `["u",2,{}]`,
	`["a]",1,{"b\"]":"\u00e9"}]`,
	`[`, `["a", }`, `[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]`,
}

func handshakeSeeds() [][]byte {
	return [][]byte{
		AppendHelo(nil, Helo{Nonce: testNonce, Auth: testSalt, Keepalive: true}),
		AppendPing(nil, Ping{Hostname: []byte("h"), SharedKeySalt: testSalt, SharedKeyHex: []byte("ab"), Username: []byte("u"), PasswordDigest: []byte("p")}),
		AppendPong(nil, Pong{OK: true, Reason: "", Hostname: []byte("s"), Digest: []byte("ab")}),
		AppendAck(nil, []byte(fluentdChunk)),
		hx("81 a361636b c403616263"),
	}
}

// FuzzJSONFrame decodes JSON-framed streams.
func FuzzJSONFrame(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Add(readCorpusF(f, "fluent-logger-golang-json-ack"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != '[' {
			data = append([]byte{'['}, data...)
		}
		got, err := decodeAll(bytes.NewReader(data), fuzzLimits)
		for _, s := range got {
			if !s.JSON {
				t.Fatalf("frame from a JSON stream not marked JSON: %+v", s)
			}
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
			}
		}
	})
}

func readCorpusF(f *testing.F, name string) []byte {
	b, err := readCorpusFile("FuzzDecoder/" + name)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzHandshakeMessages: the handshake and ack parsers never panic, return precise
// errors, and what they accept re-encodes to something they accept the same way.
func FuzzHandshakeMessages(f *testing.F) {
	for _, b := range handshakeSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, err error) {
			if err == nil {
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrHandshake) || de.Offset < 0 || de.Offset > int64(len(data)) {
				t.Fatalf("%s: error %v (%T) is not a precise handshake error", what, err, err)
			}
		}
		if h, err := ParseHelo(data); err == nil {
			h2, err := ParseHelo(AppendHelo(nil, h))
			if err != nil || !bytes.Equal(h.Nonce, h2.Nonce) || !bytes.Equal(h.Auth, h2.Auth) || h.Keepalive != h2.Keepalive {
				t.Fatalf("HELO round trip: %+v %+v %v", h, h2, err)
			}
		} else {
			check("HELO", err)
		}
		if p, err := ParsePing(data); err == nil {
			p2, err := ParsePing(AppendPing(nil, p))
			if err != nil || !bytes.Equal(p.Hostname, p2.Hostname) || !bytes.Equal(p.SharedKeySalt, p2.SharedKeySalt) ||
				!bytes.Equal(p.SharedKeyHex, p2.SharedKeyHex) || !bytes.Equal(p.Username, p2.Username) || !bytes.Equal(p.PasswordDigest, p2.PasswordDigest) {
				t.Fatalf("PING round trip: %+v %+v %v", p, p2, err)
			}
		} else {
			check("PING", err)
		}
		if p, err := ParsePong(data); err == nil {
			p2, err := ParsePong(AppendPong(nil, p))
			if err != nil || p.OK != p2.OK || p.Reason != p2.Reason || !bytes.Equal(p.Hostname, p2.Hostname) || !bytes.Equal(p.Digest, p2.Digest) {
				t.Fatalf("PONG round trip: %+v %+v %v", p, p2, err)
			}
		} else {
			check("PONG", err)
		}
		if id, err := ParseAck(data); err == nil {
			id2, err := ParseAck(AppendAck(nil, id))
			if err != nil || !bytes.Equal(id, id2) {
				t.Fatalf("ack round trip: %q %q %v", id, id2, err)
			}
		} else if !errors.Is(err, ErrNotAck) {
			t.Fatalf("ParseAck error %v", err)
		}
	})
}

// TestWriteSeedCorpus (with -update) writes the in-code seeds of every fuzz target to
// testdata/fuzz/<target>/, so they are checked in and visible to tools.
func TestWriteSeedCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -args -update to rewrite the seed corpus")
	}
	for i, tc := range parseCases(t) {
		name := fmt.Sprintf("seed-%02d", i)
		writeCorpus(t, "FuzzDecoder", name, tc.frame)
		writeCorpus(t, "FuzzParse", name, tc.frame)
	}
	stream, _ := streamFixture(t)
	writeCorpus(t, "FuzzDecoder", "seed-stream", stream)
	writeCorpus(t, "FuzzDecoder", "seed-str32-4GiB", hx("93 a161 dbffffffff"))
	for i, s := range jsonSeeds {
		writeCorpus(t, "FuzzJSONFrame", fmt.Sprintf("seed-%02d", i), []byte(s))
	}
	for i, b := range handshakeSeeds() {
		writeCorpus(t, "FuzzHandshakeMessages", fmt.Sprintf("seed-%02d", i), b)
	}
}
