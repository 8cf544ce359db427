package relay

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/relay/watch"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
)

func msg(task string, typ progress.Type, state model.State, attempt, current int) progress.Message {
	return progress.Message{TaskID: task, Type: typ, State: state, Attempt: attempt, Current: current, Total: 100, Progress: float64(current)}
}

func running(task string, current int) progress.Message {
	return msg(task, progress.TypeProgress, model.StateRunning, 1, current)
}

func TestOutbox(t *testing.T) {
	t.Parallel()
	// One shared frame stands for "encoded once by the watcher": the outbox
	// passes it on untouched unless it changes the message.
	shared, err := websocket.NewPreparedMessage(websocket.TextMessage, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	framed := func(m progress.Message) watch.Update { return watch.Update{Message: m, Frame: shared} }
	bare := func(m progress.Message) watch.Update { return watch.Update{Message: m} }
	done := msg("a", progress.TypeComplete, model.StateSucceeded, 1, 100)
	refusal := func(task string) watch.Update { return bare(progress.Refusal(task, "not found", done.Timestamp)) }
	tests := []struct {
		name         string
		final        map[int]bool // indexes of in pushed with pushFinal
		in           []watch.Update
		max          int
		want         []watch.Update
		wantOverflow bool
	}{{
		name: "progress coalesced per batch, latest wins, oldest batch first",
		in:   []watch.Update{framed(running("a", 1)), framed(running("b", 1)), framed(running("a", 2)), framed(running("a", 3)), framed(running("b", 5))},
		want: []watch.Update{framed(running("a", 3)), framed(running("b", 5))},
	}, {
		name:  "final supersedes unsent progress and comes first",
		in:    []watch.Update{framed(running("b", 1)), framed(running("a", 10)), framed(done)},
		final: map[int]bool{2: true},
		want:  []watch.Update{framed(done), framed(running("b", 1))},
	}, {
		name: "current never goes backwards",
		in:   []watch.Update{framed(running("a", 10)), framed(running("a", 7))},
		want: []watch.Update{framed(running("a", 10))},
	}, {
		name: "a new attempt may start lower",
		in:   []watch.Update{framed(running("a", 90)), framed(msg("a", progress.TypeProgress, model.StateRunning, 2, 80))},
		want: []watch.Update{framed(msg("a", progress.TypeProgress, model.StateRunning, 2, 80))},
	}, {
		name:  "a final message is raised, not dropped, and loses the shared frame",
		in:    []watch.Update{framed(running("a", 60)), framed(msg("a", progress.TypeComplete, model.StateCancelled, 1, 50))},
		final: map[int]bool{1: true},
		want:  []watch.Update{bare(msg("a", progress.TypeComplete, model.StateCancelled, 1, 60))},
	}, {
		name:  "a final message already at the client's count keeps the shared frame",
		in:    []watch.Update{framed(running("a", 60)), framed(msg("a", progress.TypeComplete, model.StateCancelled, 1, 60))},
		final: map[int]bool{1: true},
		want:  []watch.Update{framed(msg("a", progress.TypeComplete, model.StateCancelled, 1, 60))},
	}, {
		name:         "final queue overflow is reported, never silently dropped",
		in:           []watch.Update{refusal("x"), refusal("y"), refusal("z")},
		final:        map[int]bool{0: true, 1: true, 2: true},
		max:          2,
		want:         []watch.Update{refusal("x"), refusal("y")},
		wantOverflow: true,
	}}
	samePointer := cmp.Comparer(func(a, b *websocket.PreparedMessage) bool { return a == b })
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
			got, overflow := o.take(nil)
			if diff := cmp.Diff(tt.want, got, samePointer); diff != "" {
				t.Errorf("take() mismatch (-want +got):\n%s", diff)
			}
			if overflow != tt.wantOverflow {
				t.Errorf("take() overflow = %v, want %v", overflow, tt.wantOverflow)
			}
			if again, _ := o.take(got); len(again) != 0 {
				t.Errorf("second take() = %d messages, want 0", len(again))
			}
		})
	}
}
