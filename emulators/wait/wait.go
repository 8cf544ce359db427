// Package wait is the tests' one way to wait for a condition: instead of a
// sleep (which hides a race, or makes a test slow) or a hand-written
// polling loop, a test names what it waits for and checks it until it holds
// or the context ends, and a timeout says what was awaited and what was
// last seen.
package wait

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// DefaultTimeout bounds a wait whose context has no deadline.
const DefaultTimeout = time.Minute

// Polling intervals: the first check is immediate, then the interval
// doubles from minInterval up to maxInterval.
const (
	minInterval = 5 * time.Millisecond
	maxInterval = 200 * time.Millisecond
)

// errNotYet is what Until reports when cond never ran to completion.
var errNotYet = errors.New("not checked")

// Until checks cond until it returns nil or ctx ends (DefaultTimeout when
// ctx has no deadline). cond's error says why the condition does not hold
// yet, for example "state running, done 3 of 5"; the error Until returns
// names what and the last such reason. Until may run on any goroutine.
func Until(ctx context.Context, what string, cond func() error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	interval := minInterval
	last := errNotYet
	for {
		if last = cond(); last == nil {
			return nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-t.C:
		}
		interval = min(2*interval, maxInterval)
	}
}

// For is Until on the test goroutine: it fails the test (Fatal) when the
// wait ends before cond holds. cond may call t.Fatal itself for a state
// that can never turn good.
func For(ctx context.Context, t testing.TB, what string, cond func() error) {
	t.Helper()
	if err := Until(ctx, what, cond); err != nil {
		t.Fatal(err)
	}
}

// True adapts a boolean condition for Until and For; state describes what
// was seen when it is false.
func True(ok bool, state string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(state, args...)
}
