package balance

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
)

// errNotSent marks a chunk that was routed to a connection but never written (the
// connection died first, or the pool is stopping): not the upstream's fault.
var errNotSent = errors.New("chunk not sent")

// breaker wraps one gobreaker TwoStepCircuitBreaker per upstream. A "request" is one
// chunk attempt (Allow before the write, done when the ack arrives or the attempt
// fails) or one failed connection attempt. Cancellation (shutdown, removal) and chunks
// that never reached the wire are excluded: they say nothing about the upstream.
type breaker struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

func newBreaker(name string, failures int, openTimeout time.Duration, onChange func(from, to gobreaker.State)) *breaker {
	st := gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // half-open: one probe chunk; its ack closes the breaker
		Timeout:     openTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(failures)
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, errNotSent)
		},
	}
	if onChange != nil {
		// Called under gobreaker's own mutex: onChange must not block or take locks.
		st.OnStateChange = func(_ string, from, to gobreaker.State) { onChange(from, to) }
	}
	return &breaker{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](st)}
}

// allow asks for one attempt; done must then be called exactly once.
func (b *breaker) allow() (done func(error), ok bool) {
	done, err := b.cb.Allow()
	return done, err == nil
}

// open reports whether the breaker refuses every attempt right now.
func (b *breaker) open() bool { return b.cb.State() == gobreaker.StateOpen }

// state is the breaker state as the status reports it.
func (b *breaker) state() string { return stateName(b.cb.State()) }

func stateName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateClosed:
		return BreakerClosed
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerOpen
}
