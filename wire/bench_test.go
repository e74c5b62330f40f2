package wire

import (
	"fmt"
	"io"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// benchRecord is a ~200-byte msgpack record shaped like a parsed access/syslog line.
func benchRecord(i int) []byte {
	r := msgp.AppendMapHeader(nil, 6)
	r = msgp.AppendString(r, "host")
	r = msgp.AppendString(r, "web-7f9c5d6b8-x2k4p")
	r = msgp.AppendString(r, "ident")
	r = msgp.AppendString(r, "nginx")
	r = msgp.AppendString(r, "pid")
	r = msgp.AppendInt(r, 4000+i%1000)
	r = msgp.AppendString(r, "level")
	r = msgp.AppendString(r, "info")
	r = msgp.AppendString(r, "status")
	r = msgp.AppendInt(r, 200)
	r = msgp.AppendString(r, "message")
	return msgp.AppendString(r, fmt.Sprintf("10.0.0.%d - - GET /api/v1/items/%06d HTTP/1.1 200 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0\" rt=0.004", i%255, i))
}

func benchEntries(n int) []byte {
	var out []byte
	for i := range n {
		out = AppendEntry(out, AppendEventTime(nil, 1700000000+uint32(i), uint32(i)), benchRecord(i))
	}
	return out
}

// loopReader serves the same bytes forever, like a busy connection.
type loopReader struct {
	data []byte
	pos  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.pos:])
	r.pos = (r.pos + n) % len(r.data)
	return n, nil
}

func benchDecode(b *testing.B, frame []byte, events, bytesPerOp int) {
	d := NewDecoder(&loopReader{data: frame}, Limits{})
	defer d.Close()
	var f Frame
	if err := d.Next(&f); err != nil || f.Count != events {
		b.Fatalf("setup: %v, count %d", err, f.Count)
	}
	b.SetBytes(int64(bytesPerOp))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := d.Next(&f); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*float64(events)/b.Elapsed().Seconds(), "events/s")
}

// 1,000 entries of ~200-byte records in one PackedForward chunk, through the Decoder
// (read, framing, validation of every entry).
func BenchmarkDecodePackedForward(b *testing.B) {
	entries := benchEntries(1000)
	frame := AppendPackedForward(nil, "app.access", entries, 1000, []byte(fluentdChunk))
	b.Logf("frame %d bytes, %d bytes/entry", len(frame), len(entries)/1000)
	benchDecode(b, frame, 1000, len(frame))
}

// The same frame through Parser.Parse alone (no reads).
func BenchmarkParsePackedForward(b *testing.B) {
	entries := benchEntries(1000)
	frame := AppendPackedForward(nil, "app.access", entries, 1000, []byte(fluentdChunk))
	p := NewParser(Limits{})
	defer p.Close()
	var f Frame
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := p.Parse(frame, 0, &f); err != nil || f.Count != 1000 {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeForward(b *testing.B) {
	entries := benchEntries(1000)
	frame := AppendForward(nil, "app.access", entries, 1000, []byte(fluentdChunk))
	benchDecode(b, frame, 1000, len(frame))
}

// One event per frame, as fluent-logger-golang sends: many frames per read.
func BenchmarkDecodeMessage(b *testing.B) {
	var stream []byte
	const n = 1000
	for i := range n {
		stream = AppendMessage(stream, "app.access", AppendEventTime(nil, 1700000000, uint32(i)), benchRecord(i), nil)
	}
	d := NewDecoder(&loopReader{data: stream}, Limits{})
	defer d.Close()
	var f Frame
	b.SetBytes(int64(len(stream) / n))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := d.Next(&f); err != nil || f.Count != 1 {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// gzip CompressedPackedForward; bytes are the inflated entries.
func BenchmarkDecodeCompressed(b *testing.B) {
	entries := benchEntries(1000)
	frame := AppendCompressedPackedForward(nil, "app.access", gzipMembers(b, entries), 1000, []byte(fluentdChunk))
	b.Logf("frame %d bytes for %d bytes of entries", len(frame), len(entries))
	benchDecode(b, frame, 1000, len(entries))
}

func BenchmarkDecodeZstd(b *testing.B) {
	entries := benchEntries(1000)
	zs := zstdBytes(b, entries)
	frame := AppendPackedForwardHead(nil, "app.access", len(zs))
	frame = append(frame, zs...)
	frame = AppendForwardOption(frame, 1000, []byte(fluentdChunk), "zstd")
	benchDecode(b, frame, 1000, len(entries))
}

func BenchmarkEncodePackedForward(b *testing.B) {
	entries := benchEntries(1000)
	chunk := []byte(fluentdChunk)
	buf := AppendPackedForward(nil, "app.access", entries, 1000, chunk)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf = AppendPackedForward(buf[:0], "app.access", entries, 1000, chunk)
	}
}

// The writev path: header and option only, the entries are not copied.
func BenchmarkEncodePackedForwardHead(b *testing.B) {
	chunk := []byte(fluentdChunk)
	var buf []byte
	b.ReportAllocs()
	for range b.N {
		buf = AppendPackedForwardHead(buf[:0], "app.access", 200000)
		buf = AppendForwardOption(buf, 1000, chunk, "")
	}
}

func BenchmarkAppendAck(b *testing.B) {
	chunk := []byte(fluentdChunk)
	var buf []byte
	b.ReportAllocs()
	for range b.N {
		buf = AppendAck(buf[:0], chunk)
	}
}

func BenchmarkEntriesIntTime(b *testing.B) {
	entries := benchEntries(1000)
	buf, _ := EntriesIntTime(nil, entries)
	b.SetBytes(int64(len(entries)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf, _ = EntriesIntTime(buf[:0], entries)
	}
}

var _ io.Reader = (*loopReader)(nil)
