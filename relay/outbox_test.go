package relay

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/batch"
	"github.com/nodebatch/nodebatch/shared/progress"
)

func msg(task string, typ progress.Type, state batch.State, attempt, current int) progress.Message {
	return progress.Message{TaskID: task, Type: typ, State: state, Attempt: attempt, Current: current, Total: 100, Progress: float64(current)}
}

func running(task string, current int) progress.Message {
	return msg(task, progress.TypeProgress, batch.StateRunning, 1, current)
}

func TestOutbox(t *testing.T) {
	t.Parallel()
	done := msg("a", progress.TypeComplete, batch.StateSucceeded, 1, 100)
	tests := []struct {
		name         string
		final        map[int]bool // indexes of in pushed with pushFinal
		in           []progress.Message
		max          int
		want         []progress.Message
		wantOverflow bool
	}{{
		name: "progress coalesced per batch, latest wins, oldest batch first",
		in:   []progress.Message{running("a", 1), running("b", 1), running("a", 2), running("a", 3), running("b", 5)},
		want: []progress.Message{running("a", 3), running("b", 5)},
	}, {
		name:  "final supersedes unsent progress and comes first",
		in:    []progress.Message{running("b", 1), running("a", 10), done},
		final: map[int]bool{2: true},
		want:  []progress.Message{done, running("b", 1)},
	}, {
		name: "current never goes backwards",
		in:   []progress.Message{running("a", 10), running("a", 7)},
		want: []progress.Message{running("a", 10)},
	}, {
		name: "a new attempt may start lower",
		in:   []progress.Message{running("a", 90), msg("a", progress.TypeProgress, batch.StateRunning, 2, 80)},
		want: []progress.Message{msg("a", progress.TypeProgress, batch.StateRunning, 2, 80)},
	}, {
		name:  "a final message is raised, not dropped",
		in:    []progress.Message{running("a", 60), msg("a", progress.TypeComplete, batch.StateCancelled, 1, 50)},
		final: map[int]bool{1: true},
		want:  []progress.Message{msg("a", progress.TypeComplete, batch.StateCancelled, 1, 60)},
	}, {
		name:         "final queue overflow is reported, never silently dropped",
		in:           []progress.Message{progress.Refusal("x", "not found", done.Timestamp), progress.Refusal("y", "not found", done.Timestamp), progress.Refusal("z", "not found", done.Timestamp)},
		final:        map[int]bool{0: true, 1: true, 2: true},
		max:          2,
		want:         []progress.Message{progress.Refusal("x", "not found", done.Timestamp), progress.Refusal("y", "not found", done.Timestamp)},
		wantOverflow: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			max := tt.max
			if max == 0 {
				max = 10
			}
			o := newOutbox(max)
			for i, m := range tt.in {
				if tt.final[i] {
					o.pushFinal(m)
				} else {
					o.push(m)
				}
			}
			select {
			case <-o.notify:
			default:
				t.Fatal("outbox did not signal")
			}
			got, overflow := o.take()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("take() mismatch (-want +got):\n%s", diff)
			}
			if overflow != tt.wantOverflow {
				t.Errorf("take() overflow = %v, want %v", overflow, tt.wantOverflow)
			}
			if again, _ := o.take(); len(again) != 0 {
				t.Errorf("second take() = %d messages, want 0", len(again))
			}
		})
	}
}
