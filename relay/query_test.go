package relay

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/model"
)

func TestParseUpgradeQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		want    upgradeQuery
		wantErr *queryError
	}{
		{name: "none", raw: ""},
		{name: "task id", raw: "task_id=b-1_x", want: upgradeQuery{TaskID: "b-1_x"}},
		{name: "empty task id subscribes to nothing", raw: "task_id=", want: upgradeQuery{}},
		{name: "ticket and task", raw: "ticket=abc&task_id=b1", want: upgradeQuery{TaskID: "b1", Ticket: "abc"}},
		{name: "seed token", raw: "token=x.y.z", want: upgradeQuery{Token: "x.y.z"}},
		{name: "unknown parameters are ignored", raw: "_=123&task_id=b1", want: upgradeQuery{TaskID: "b1"}},
		{name: "escaped slash", raw: "task_id=a%2Fb", wantErr: &queryError{Field: "task_id", Reason: "may hold only letters, digits, '-' and '_'"}},
		{name: "plain slash", raw: "task_id=a/lanes/x", wantErr: &queryError{Field: "task_id", Reason: "may hold only letters, digits, '-' and '_'"}},
		{name: "dot dot", raw: "task_id=..", wantErr: &queryError{Field: "task_id", Reason: "may hold only letters, digits, '-' and '_'"}},
		{name: "NUL", raw: "task_id=a%00", wantErr: &queryError{Field: "task_id", Reason: "may hold only letters, digits, '-' and '_'"}},
		{name: "too long", raw: "task_id=" + strings.Repeat("a", 129), wantErr: &queryError{Field: "task_id", Reason: "longer than 128 bytes"}},
		{name: "task id twice", raw: "task_id=a&task_id=b", wantErr: &queryError{Field: "task_id", Reason: reasonRepeated}},
		{name: "ticket twice", raw: "ticket=a&ticket=b", wantErr: &queryError{Field: "ticket", Reason: reasonRepeated}},
		{name: "bad escape", raw: "task_id=%zz", wantErr: &queryError{Reason: "malformed query string"}},
		{name: "semicolon", raw: "task_id=a;b", wantErr: &queryError{Reason: "malformed query string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseUpgradeQuery(tt.raw)
			if diff := cmp.Diff(tt.wantErr, err); diff != "" {
				t.Fatalf("parseUpgradeQuery(%q) error (-want +got):\n%s", tt.raw, diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseUpgradeQuery(%q) (-want +got):\n%s", tt.raw, diff)
			}
		})
	}
}

// FuzzParseUpgradeQuery: no panic on any query string, a refusal never
// quotes the input, and an accepted ?task_id= is a valid batch id (it goes
// straight to a Firestore path).
func FuzzParseUpgradeQuery(f *testing.F) {
	for _, s := range []string{
		"", "task_id=abc", "task_id=a%2Fb", "task_id=a/b/c", "ticket=t&task_id=x", "token=a.b.c",
		"task_id=%", "task_id=a&task_id=b", "task_id=%C3%A9", "task_id=" + url.QueryEscape("x/lanes/a1-l0"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseUpgradeQuery(raw)
		if err != nil {
			if len(raw) > 8 && strings.Contains(err.Error(), raw) {
				t.Errorf("error %q quotes the input", err)
			}
			return
		}
		if q.TaskID != "" && model.ValidateID(q.TaskID) != nil {
			t.Errorf("accepted bad task id %q", q.TaskID)
		}
	})
}
