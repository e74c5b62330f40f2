package balance

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestBreakerTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker("x", 3, 5*time.Second, nil)
		fail := func(err error) {
			t.Helper()
			done, ok := b.allow()
			if !ok {
				t.Fatal("allow refused")
			}
			done(err)
		}
		boom := errors.New("ack timeout")
		// Cancellation and unsent chunks are not failures.
		for range 5 {
			fail(context.Canceled)
			fail(errNotSent)
		}
		if s := b.state(); s != BreakerClosed {
			t.Fatalf("after excluded errors: %s, want closed", s)
		}
		fail(boom)
		fail(boom)
		fail(nil) // a success resets the consecutive count
		fail(boom)
		fail(boom)
		if s := b.state(); s != BreakerClosed {
			t.Fatalf("after 2 consecutive failures: %s", s)
		}
		fail(boom)
		if s := b.state(); s != BreakerOpen || !b.open() {
			t.Fatalf("after 3 consecutive failures: %s, want open", s)
		}
		if _, ok := b.allow(); ok {
			t.Fatal("open breaker allowed a request")
		}
		time.Sleep(5*time.Second - time.Millisecond)
		if s := b.state(); s != BreakerOpen {
			t.Fatalf("before the open timeout: %s", s)
		}
		time.Sleep(2 * time.Millisecond)
		if s := b.state(); s != BreakerHalfOpen {
			t.Fatalf("after the open timeout: %s, want half-open", s)
		}
		probe, ok := b.allow()
		if !ok {
			t.Fatal("half-open refused the probe")
		}
		if _, ok := b.allow(); ok {
			t.Fatal("half-open allowed a second concurrent probe")
		}
		probe(boom)
		if s := b.state(); s != BreakerOpen {
			t.Fatalf("failed probe: %s, want open", s)
		}
		time.Sleep(5*time.Second + time.Millisecond)
		probe, ok = b.allow()
		if !ok {
			t.Fatal("half-open refused the second probe")
		}
		probe(nil)
		if s := b.state(); s != BreakerClosed {
			t.Fatalf("successful probe: %s, want closed", s)
		}
	})
}
