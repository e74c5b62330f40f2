package tail

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
)

// benchLines measures line splitting and record building into a chunk, the tailer's hot
// path, on a 64 KiB buffer of lines as one read returns them.
func benchLines(b *testing.B, cfg TargetConfig, line string) {
	cfg.Path, cfg.Tag = "/var/log/app.log", "app"
	cfg = cfg.WithDefaults()
	m := &Manager{cfg: Config{}.WithDefaults(), sink: discardSink{}, log: slog.New(slog.DiscardHandler)}
	tg, err := newTarget(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	tl := &tailer{t: tg, tag: "app"}
	p := "/var/log/app.log"
	tl.path.Store(&p)
	var buf []byte
	n := 0
	for len(buf)+len(line)+1 <= readBufSize {
		buf = append(buf, line...)
		buf = append(buf, '\n')
		n++
	}
	tl.chunk = proxy.NewPooledChunk("app")
	tl.chunk.Data = make([]byte, 0, 4<<20)
	now := time.Now()
	ctx := context.Background()
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tl.chunk.Data, tl.chunkN = tl.chunk.Data[:0], 0
		if _, err := tl.lines(ctx, buf, now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(0, "ns/op")
}

type discardSink struct{}

func (discardSink) Put(ctx context.Context, c *proxy.Chunk) error { c.Done(proxy.Acked); return nil }

func BenchmarkLineToChunk(b *testing.B) {
	none := strings.Repeat("x", 60) + " 2024-03-12T06:25:24Z GET /index.html 200 5"
	none = none[:100]
	b.Run("none-100B", func(b *testing.B) { benchLines(b, TargetConfig{}, none) })
	b.Run("ltsv", func(b *testing.B) {
		benchLines(b, TargetConfig{Format: "ltsv"}, "host:10.0.0.1\tuser:-\tmethod:GET\tpath:/index.html\tstatus:200\tsize:5120\tua:curl/8.4.0")
	})
	b.Run("json", func(b *testing.B) {
		benchLines(b, TargetConfig{Format: "json"}, `{"level":"info","msg":"request done","path":"/index.html","status":200,"dur":0.0123}`)
	})
	b.Run("nginx", func(b *testing.B) {
		benchLines(b, TargetConfig{Format: "nginx"}, `93.184.216.34 - - [12/Mar/2024:06:25:24 +0000] "GET /index.html HTTP/1.1" 200 512 "-" "curl/8.4.0"`)
	})
}

// BenchmarkIdleFiles follows 10,000 idle files and reports the CPU the manager uses
// per second of wall time (cpu%: 100 = one core): all in one directory, and spread over
// 100 directories that a pattern in the directory part matches (logs/*/*.log, as
// Kubernetes lays pods out). One op is a minute: the safety nets (full rescans, stat
// polls) run every 10 to 60 s at this size, and a shorter window would catch them or not
// by chance.
func BenchmarkIdleFiles(b *testing.B) {
	b.Run("one-dir", func(b *testing.B) { benchIdle(b, 1) })
	b.Run("100-dirs-pattern", func(b *testing.B) { benchIdle(b, 100) })
}

func benchIdle(b *testing.B, dirs int) {
	const files = 10000
	dir := b.TempDir()
	logs := filepath.Join(dir, "logs")
	pattern := filepath.Join(logs, "*.log")
	if dirs > 1 {
		pattern = filepath.Join(logs, "*", "*.log")
	}
	for i := 0; i < files; i++ {
		d := logs
		if dirs > 1 {
			d = filepath.Join(logs, fmt.Sprintf("pod%03d", i%dirs))
		}
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d.log", i)), []byte("x\n"), 0o644)
	}
	m, err := NewManager(Config{PositionFile: filepath.Join(dir, "pos.json")}, discardSink{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	m.Add(TargetConfig{Path: pattern, Tag: "idle"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	eventually(b, 60*time.Second, func() bool { return len(m.Stats()) == files }, "all followed")
	settle := time.NewTimer(2 * time.Second) // first position save, GC
	<-settle.C
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var r0, r1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
		t0 := time.Now()
		w := time.NewTimer(time.Minute)
		<-w.C
		syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		b.ReportMetric(100*cpu.Seconds()/time.Since(t0).Seconds(), "cpu%")
	}
	b.StopTimer()
	cancel()
	<-done
}

// Lines as apache (combined) and nginx write them: the benchmarks cycle through them so
// the figure is not one line's.
var (
	benchApacheLines = []string{
		`127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`,
		`192.168.1.20 - - [12/Mar/2024:06:25:24 +0100] "POST /api/v1/orders?id=42 HTTP/1.1" 201 512 "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36"`,
		`2001:db8::1 - - [12/Mar/2024:06:25:25 +0100] "GET /static/app.js HTTP/2.0" 304 - "https://example.com/" "curl/8.4.0"`,
		`10.0.0.7 - alice [12/Mar/2024:06:25:26 +0100] "GET /index.html HTTP/1.1" 200 5120`,
	}
	benchNginxLines = []string{
		`93.184.216.34 - - [12/Mar/2024:06:25:24 +0000] "GET /index.html HTTP/1.1" 200 512 "-" "curl/8.4.0"`,
		`10.1.2.3 - bob [12/Mar/2024:06:25:24 +0100] "POST /api/v1/orders?id=42 HTTP/1.1" 201 87 "https://example.com/cart" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36" "203.0.113.9, 10.0.0.1"`,
		`2001:db8::1 - - [12/Mar/2024:06:25:25 +0100] "GET /static/app.js HTTP/2.0" 304 0 "https://example.com/" "Mozilla/5.0" "-"`,
		`10.0.0.7 - - [12/Mar/2024:06:25:26 +0100] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"`,
	}
)

// benchParse measures one line into a reused buffer: the parser alone, without the
// tailer's line splitting.
func benchParse(b *testing.B, format string, lines []string) {
	cfg := TargetConfig{Path: "/var/log/access.log", Tag: "access", Format: format}.WithDefaults()
	p, err := newParser(cfg)
	if err != nil {
		b.Fatal(err)
	}
	bl := make([][]byte, len(lines))
	var size int64
	for i, l := range lines {
		bl[i] = []byte(l)
		size += int64(len(l))
	}
	now := time.Now()
	dst := make([]byte, 0, 4096)
	b.SetBytes(size / int64(len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var perr bool
		dst, perr = p.appendEntry(dst[:0], bl[i%len(bl)], now, "/var/log/access.log")
		if perr {
			b.Fatalf("parse error: %s", bl[i%len(bl)])
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkParseApache(b *testing.B) { benchParse(b, FormatApache, benchApacheLines) }
func BenchmarkParseNginx(b *testing.B)  { benchParse(b, FormatNginx, benchNginxLines) }
