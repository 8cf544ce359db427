package relay

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/model"
)

func TestDecodeClientMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    clientMessage
		wantErr string
	}{
		{name: "subscribe", in: `{"type":"subscribe","task_id":"b-1_x"}`, want: clientMessage{Type: msgSubscribe, TaskID: "b-1_x"}},
		{name: "unsubscribe", in: `{"type":"unsubscribe","task_id":"abc"}`, want: clientMessage{Type: msgUnsubscribe, TaskID: "abc"}},
		{name: "subscribe_all", in: `{"type":"subscribe_all"}`, want: clientMessage{Type: msgSubscribeAll}},
		{name: "subscribe_all all users", in: ` {"type":"subscribe_all","all_users":true} `, want: clientMessage{Type: msgSubscribeAll, AllUsers: true}},
		{name: "not JSON", in: `hello`, wantErr: "invalid JSON"},
		{name: "empty", in: ``, wantErr: "incomplete JSON"},
		{name: "truncated", in: `{"type":"subscr`, wantErr: "incomplete JSON"},
		{name: "array", in: `[1,2]`, wantErr: "wrong type"},
		{name: "two objects", in: `{"type":"subscribe_all"}{"type":"subscribe_all"}`, wantErr: "one JSON object"},
		{name: "unknown field", in: `{"type":"subscribe","task_id":"a","x":1}`, wantErr: "known fields"},
		{name: "wrong field type", in: `{"type":1}`, wantErr: `field "type" has the wrong type`},
		{name: "no type", in: `{}`, wantErr: "type is required"},
		{name: "unknown type", in: `{"type":"cancel"}`, wantErr: "unknown type"},
		{name: "subscribe without id", in: `{"type":"subscribe"}`, wantErr: "task_id is required"},
		{name: "id with slash", in: `{"type":"subscribe","task_id":"a/lanes/x"}`, wantErr: "only letters"},
		{name: "id too long", in: `{"type":"subscribe","task_id":"` + strings.Repeat("a", 129) + `"}`, wantErr: "longer than 128"},
		{name: "type in the wrong case", in: `{"TYPE":"subscribe_all"}`, wantErr: "names are case-sensitive"},
		{name: "all_users in the wrong case", in: `{"type":"subscribe_all","All_Users":true}`, wantErr: "names are case-sensitive"},
		{name: "duplicate type", in: `{"type":"subscribe","task_id":"a","type":"subscribe_all"}`, wantErr: `field "type" given twice`},
		{name: "duplicate task id", in: `{"type":"subscribe","task_id":"a","task_id":"b"}`, wantErr: `field "task_id" given twice`},
		{name: "all_users on subscribe", in: `{"type":"subscribe","task_id":"a","all_users":true}`, wantErr: "all_users only goes with"},
		{name: "task_id on subscribe_all", in: `{"type":"subscribe_all","task_id":"a"}`, wantErr: "takes no task_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeClientMessage([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeClientMessage(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeClientMessage(%q) error = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decodeClientMessage(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// FuzzDecodeClientMessage: no panic on any input, errors never quote the
// input, and what is accepted is a well-formed message.
func FuzzDecodeClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","task_id":"abc"}`, `{"type":"subscribe_all","all_users":true}`,
		`{"type":"unsubscribe","task_id":"x"}`, `{}`, `[]`, `null`, `{"type":"subscribe","task_id":"\u0000"}`,
		`{"type":"subscribe","task_id":"` + strings.Repeat("z", 200) + `"}`,
		`{"TYPE":"subscribe_all"}`, `{"type":"subscribe","task_id":"a","type":"subscribe_all"}`, `{"type":"subscribe","task_id":"a/b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeClientMessage(data)
		if err != nil {
			if len(data) > 8 && strings.Contains(err.Error(), string(data)) {
				t.Errorf("error %q quotes the input", err)
			}
			return
		}
		switch m.Type {
		case msgSubscribe, msgUnsubscribe:
			if model.ValidateID(m.TaskID) != nil {
				t.Errorf("accepted bad task id %q", m.TaskID)
			}
		case msgSubscribeAll:
			if m.TaskID != "" {
				t.Errorf("accepted subscribe_all with task id %q", m.TaskID)
			}
		default:
			t.Errorf("accepted unknown type %q", m.Type)
		}
	})
}
