package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

// FluentLoggerConfig configures one fluent-logger-golang client.
type FluentLoggerConfig struct {
	Addr string
	Tag  string // default "bench.<src>"
	Src  string
	// RequestAck makes every Post wait for the server's ack.
	RequestAck bool
	// RecordBytes pads the record to about this size (default 100).
	RecordBytes int
	// Rate in events/s (0: as fast as Post returns).
	Rate float64
}

// RunFluentLogger posts n sequence-numbered events with a real fluent-logger-golang
// client (synchronous mode, Message frames) and returns how many Post calls succeeded:
// those events are the ones the client considers delivered.
func RunFluentLogger(ctx context.Context, cfg FluentLoggerConfig, n int64) (int64, error) {
	host, portS, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return 0, err
	}
	port, _ := strconv.Atoi(portS)
	if cfg.Tag == "" {
		cfg.Tag = "bench." + cfg.Src
	}
	if cfg.RecordBytes <= 0 {
		cfg.RecordBytes = 100
	}
	pad := make([]byte, max(cfg.RecordBytes-len(cfg.Src)-30, 0))
	for i := range pad {
		pad[i] = 'x'
	}
	padS := string(pad)
	f, err := fluent.New(fluent.Config{
		FluentHost: host, FluentPort: port,
		RequestAck: cfg.RequestAck, SubSecondPrecision: true,
		Timeout: 5 * time.Second, WriteTimeout: 30 * time.Second, ReadTimeout: 30 * time.Second,
		MaxRetry: 20, RetryWait: 50, MaxRetryWait: 1000,
	})
	if err != nil {
		return 0, fmt.Errorf("fluent.New: %w", err)
	}
	defer f.Close()
	start := time.Now()
	for i := int64(0); i < n; i++ {
		if ctx.Err() != nil {
			return i, ctx.Err()
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		rec := map[string]any{"src": cfg.Src, "seq": i, "msg": padS}
		if err := f.Post(cfg.Tag, rec); err != nil {
			return i, fmt.Errorf("post seq %d: %w", i, err)
		}
	}
	return n, nil
}
