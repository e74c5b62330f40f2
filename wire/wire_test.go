package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// wire starts no goroutines; the zstd decoder and the test listeners must not
	// leave any behind either.
	goleak.VerifyTestMain(m)
}

// hx decodes hex written for people: spaces, newlines and '|' separate fields.
func hx(s string) []byte {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\t' || r == '|' {
			return -1
		}
		return r
	}, s)
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("bad hex fixture %q: %v", s, err))
	}
	return b
}

// strHex is the hex of a string's bytes, for composing fixtures.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// snap is a comparable copy of a Frame (a Frame's slices die at the next call).
type snap struct {
	Mode        Mode
	Tag         string
	Entries     string // hex
	Count       int
	Invalid     int
	Chunk       string
	HasChunk    bool
	Size        int
	Compression string
	JSON        bool
	Bytes       int
}

func snapOf(f *Frame) snap {
	return snap{
		Mode:        f.Mode,
		Tag:         string(f.Tag),
		Entries:     hex.EncodeToString(f.Entries),
		Count:       f.Count,
		Invalid:     f.Invalid,
		Chunk:       string(f.Chunk),
		HasChunk:    f.Chunk != nil,
		Size:        f.Size,
		Compression: f.Compression,
		JSON:        f.JSON,
		Bytes:       f.Bytes,
	}
}

// decodeAll decodes a whole stream; err is the error that ended it (nil at io.EOF).
func decodeAll(r io.Reader, lim Limits) ([]snap, error) {
	d := NewDecoder(r, lim)
	defer d.Close()
	var out []snap
	var f Frame
	for {
		err := d.Next(&f)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, snapOf(&f))
	}
}

// pieceReader returns data in pseudo-random pieces of 1..max bytes, sometimes with
// (0, nil) reads in between, as a TCP socket may.
type pieceReader struct {
	data []byte
	rnd  *rand.Rand
	max  int
}

func newPieceReader(data []byte, seed uint64, maxPiece int) *pieceReader {
	return &pieceReader{data: data, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), max: maxPiece}
}

func (r *pieceReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.rnd.IntN(16) == 0 {
		return 0, nil
	}
	n := min(1+r.rnd.IntN(r.max), len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// thenErr is a reader that yields data and then err: the stream does not end, and
// a decoder that waits for more bytes gets err instead of blocking the test.
type thenErr struct {
	data []byte
	err  error
}

func (r *thenErr) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

var errWaited = errors.New("decoder waited for more bytes")

// wantDecodeError checks err is a *DecodeError wrapping sentinel at offset off
// (off < 0: any offset).
func wantDecodeError(t *testing.T, err error, sentinel error, off int64) *DecodeError {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v (%T), want a *DecodeError wrapping %v", err, err, sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want it to wrap %v", err, sentinel)
	}
	if off >= 0 && de.Offset != off {
		t.Fatalf("err = %v: offset %d, want %d", err, de.Offset, off)
	}
	if de.Detail == "" {
		t.Errorf("err = %v: no detail", err)
	}
	return de
}

// Go fuzzing corpus files ("go test fuzz v1" + one []byte value).

func writeCorpus(t *testing.T, fuzzName, name string, data []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzzName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readCorpus(t *testing.T, fuzzName, name string) []byte {
	t.Helper()
	b, err := readCorpusFile(filepath.Join(fuzzName, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readCorpusFile reads testdata/fuzz/<path>, a corpus file of one []byte value.
func readCorpusFile(path string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", path))
	if err != nil {
		return nil, err
	}
	s, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
	if !ok {
		return nil, fmt.Errorf("%s: not a corpus file", path)
	}
	s = strings.TrimSuffix(strings.TrimSpace(s), ")")
	v, err := strconv.Unquote(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return []byte(v), nil
}

func TestHelpers(t *testing.T) {
	if got := hx("92 | 01\n02"); !bytes.Equal(got, []byte{0x92, 1, 2}) {
		t.Fatalf("hx = %x", got)
	}
}
