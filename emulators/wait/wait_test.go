package wait

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestUntilHolds: Until returns once cond holds, after checking it as
// many times as it took.
func TestUntilHolds(t *testing.T) {
	n := 0
	err := Until(context.Background(), "three checks", func() error {
		n++
		return True(n >= 3, "checked %d times", n)
	})
	if err != nil || n != 3 {
		t.Errorf("Until() = %v after %d checks, want nil after 3", err, n)
	}
}

// TestUntilReportsWhatItWaitedFor: when the context ends first, the error
// names the wait, the context's reason and the last state seen.
func TestUntilReportsWhatItWaitedFor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := Until(ctx, "the batch to end", func() error {
		n++
		if n == 2 {
			cancel()
		}
		return fmt.Errorf("state running, check %d", n)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Until() = %v, want context.Canceled", err)
	}
	for _, want := range []string{"the batch to end", "state running, check 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Until() = %q, want it to name %q", err, want)
		}
	}
}

// TestTrue: a true condition is nil, a false one the formatted state.
func TestTrue(t *testing.T) {
	if err := True(true, "x"); err != nil {
		t.Errorf("True(true) = %v, want nil", err)
	}
	if err := True(false, "%d of %d", 1, 2); err == nil || err.Error() != "1 of 2" {
		t.Errorf("True(false) = %v, want 1 of 2", err)
	}
}
