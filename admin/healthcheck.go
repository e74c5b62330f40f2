package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Healthcheck asks the admin API at addr ("host:port" or an http:// URL) whether the
// process is ready: nil on 200 from /ready, otherwise an error carrying the reason the
// server gave. A wildcard host (":24223", "0.0.0.0:24223") is asked on loopback. token,
// when not empty, is sent as a bearer token. Without a deadline in ctx it gives up
// after 5 seconds. Used by `fwdmux healthcheck`.
func Healthcheck(ctx context.Context, addr, token string) error {
	if addr == "" || addr == ListenOff {
		addr = DefaultListen
	}
	base := strings.TrimSuffix(addr, "/")
	if !strings.Contains(base, "://") {
		host, port, err := net.SplitHostPort(base)
		if err != nil {
			return fmt.Errorf("healthcheck: %q is not host:port: %w", addr, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, port)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ready", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// A transport of its own: no proxy from the environment, no idle connection left.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var p Problem
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return fmt.Errorf("healthcheck %s: not ready (%d): %s", base, resp.StatusCode, p.Detail)
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		return errors.New("healthcheck " + base + ": not ready (503)")
	}
	return fmt.Errorf("healthcheck %s: unexpected status %s", base, resp.Status)
}
