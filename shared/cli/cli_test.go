package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
)

func TestSplitChangeArgs(t *testing.T) {
	tests := []struct {
		name    string
		cmd     string
		args    []string
		want    changeArgs
		wantErr bool
	}{
		{name: "names and labels", cmd: "label", args: []string{"nodes", "n1", "n2", "team=ml", "old-"}, want: changeArgs{Nodes: []string{"n1", "n2"}, Changes: []string{"team=ml", "old-"}}},
		{name: "selector only changes", cmd: "label", args: []string{"node", "team="}, want: changeArgs{Changes: []string{"team="}}},
		{name: "taints", cmd: "taint", args: []string{"no", "n1", "gpu=true:NoSchedule", "gpu:NoSchedule-", "x-"}, want: changeArgs{Nodes: []string{"n1"}, Changes: []string{"gpu=true:NoSchedule", "gpu:NoSchedule-", "x-"}}},
		{name: "type/name", cmd: "label", args: []string{"nodes/n1", "nodes/n2", "a=b"}, want: changeArgs{Nodes: []string{"n1", "n2"}, Changes: []string{"a=b"}}},
		{name: "no type", cmd: "label", args: nil, wantErr: true},
		{name: "pods", cmd: "label", args: []string{"pods", "a=b"}, wantErr: true},
		{name: "no change", cmd: "label", args: []string{"nodes", "n1"}, wantErr: true},
		{name: "name after change", cmd: "label", args: []string{"nodes", "a=b", "n1"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitChangeArgs(tt.cmd, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestExitForAPI(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   int
	}{
		{http.StatusUnauthorized, "unauthenticated", ExitUnauthorized},
		{http.StatusForbidden, "forbidden", ExitUnauthorized},
		{http.StatusConflict, "confirmation_required", ExitConfirm},
		{http.StatusConflict, "conflict", ExitFailed},
		{http.StatusBadRequest, "malformed", ExitUsage},
		{http.StatusUnprocessableEntity, "invalid", ExitUsage},
		{http.StatusNotFound, "not_found", ExitFailed},
		{http.StatusTooManyRequests, "rate_limited", ExitFailed},
		{http.StatusServiceUnavailable, "unavailable", ExitFailed},
	}
	for _, tt := range tests {
		if got := exitForAPI(&apiError{Status: tt.status, Code: tt.code}); got != tt.want {
			t.Errorf("exitForAPI(%d %s) = %d, want %d", tt.status, tt.code, got, tt.want)
		}
	}
	for s, want := range map[model.State]int{model.StateSucceeded: 0, model.StatePartiallyFailed: 1, model.StateFailed: 1, model.StateCancelled: 3} {
		if got := exitFor(s); got != want {
			t.Errorf("exitFor(%s) = %d, want %d", s, got, want)
		}
	}
}

func TestDecodeErrorFormat(t *testing.T) {
	body := `{"error":{"code":"invalid","message":"the batch request is invalid","fields":[{"field":"labels[0]","value":"bad key=x","reason":"name part must consist of …"}]}}`
	e := decodeError(422, []byte(body))
	want := "the batch request is invalid\nerror: field \"labels[0]\" (value \"bad key=x\"): name part must consist of …"
	if diff := cmp.Diff(want, e.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := decodeError(502, []byte("<html>bad gateway</html>")); got.Status != 502 || !strings.Contains(got.Error(), "HTTP 502") {
		t.Errorf("non-JSON body: %v", got)
	}
}

// TestRunUsage checks what is refused before any request is sent.
func TestRunUsage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
	}))
	defer srv.Close()
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no args", nil, ExitUsage},
		{"unknown command", []string{"frob"}, ExitUsage},
		{"unknown flag", []string{"label", "nodes", "n1", "a=b", "--server", "x"}, ExitUsage},
		{"two targets", []string{"label", "nodes", "n1", "a=b", "--all"}, ExitUsage},
		{"bad output", []string{"get", "b1", "-o", "xml"}, ExitUsage},
		{"bad progress", []string{"watch", "b1", "--progress", "fancy"}, ExitUsage},
		{"dry-run client", []string{"label", "nodes", "n1", "a=b", "--dry-run=client"}, ExitUsage},
		{"dry-run unknown", []string{"taint", "nodes", "n1", "a=b:NoSchedule", "--dry-run=yes"}, ExitUsage},
		{"dry-run without value", []string{"label", "nodes", "n1", "a=b", "--dry-run"}, ExitUsage},
		{"bad id", []string{"get", "../x"}, ExitUsage},
		{"reserved id", []string{"cancel", "__x__"}, ExitUsage},
		{"no token", []string{"get", "b1"}, ExitUnauthorized},
		{"help", []string{"help"}, ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			env := Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
				if k == "NODEBATCH_URL" {
					return srv.URL
				}
				return ""
			}}
			if got := Run(context.Background(), tt.args, env); got != tt.want {
				t.Errorf("Run(%q) = %d, want %d; stderr %q", tt.args, got, tt.want, errb.String())
			}
		})
	}
}

func TestProgressLineThrottle(t *testing.T) {
	now := time.Unix(0, 0)
	var out bytes.Buffer
	w := &plainReporter{every: 3 * time.Second, w: &out, now: func() time.Time { return now }}
	m := progress.Message{TaskID: "b1", State: model.StateRunning, Current: 3, Total: 10, Rate: 2, ETASeconds: 3.5, InFlight: map[int]string{0: "n"}}
	w.update(m) // printed
	now = now.Add(time.Second)
	w.update(m) // too soon
	now = now.Add(2 * time.Second)
	m.Current = 5
	w.update(m) // printed
	want := "batch/b1 running: 3/10 nodes done, 0 failed, 2.0 nodes/s, eta 4s, 1 in flight\n" +
		"batch/b1 running: 5/10 nodes done, 0 failed, 2.0 nodes/s, eta 4s, 1 in flight\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestTokenNeverInURL(t *testing.T) {
	got, err := wsURL("https://relay.example.com/base/?token=x")
	if err != nil {
		t.Fatal(err)
	}
	if want := "wss://relay.example.com/base/v1/progress/ws"; got != want {
		t.Errorf("wsURL = %q, want %q", got, want)
	}
	if _, err := wsURL("ftp://x"); err == nil {
		t.Error("ftp scheme accepted")
	}
}

// FuzzDecode feeds the parsers of what the API and the relay send.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"error":{"code":"invalid","message":"m","fields":[{"field":"labels[0]"}],"nodes":3}}`))
	f.Add([]byte(`{"batch_id":"b","state":"running","counts":{"failed":1},"failures":[{"node":"n","reason":"r"}]}`))
	f.Add([]byte(`{"task_id":"b","type":"complete","state":"succeeded","in_flight":{"0":"n"}}`))
	f.Add([]byte(`{"batches":[{"batch_id":"b"}]}`))
	f.Add([]byte(`{"total":2,"nodes":[{"node":"n","changed":true,"changes":[{"key":"label:a","before":null,"after":"b"}]}],"impact":{"no_execute":true,"budgets":[{"violated":true}],"nodes":[{"node":"n","pods":[{"name":"p","after_seconds":3,"budgets":["x/y"]}]}]},"server_dry_run":[{"ok":false}]}`))
	f.Add([]byte("\xff\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeError(400, b).Error()
		if s, err := decodeStatus(b); err == nil {
			_ = summaryLine(s)
			var out bytes.Buffer
			for _, format := range []string{"", "wide", "name", "yaml"} {
				_ = printBatch(&out, format, b, s, time.Now())
			}
		}
		if m, err := decodeMessage(b); err == nil {
			_ = progressLine(m)
		}
		var out bytes.Buffer
		_ = printList(&out, &out, "wide", b, time.Now())
		_ = printList(&out, &out, "name", b, time.Now())
		var p preview
		if json.Unmarshal(b, &p) == nil {
			for _, format := range []string{"", "json", "yaml", "name"} {
				_ = printPreviewPage(&out, format, b, p, true)
			}
		}
	})
}

// TestBarReporter draws the bar into a buffer as a terminal would get it.
func TestBarReporter(t *testing.T) {
	var out bytes.Buffer
	r := newReporter(ProgressAuto, true, &out, time.Hour, time.Now)
	if _, ok := r.(*barReporter); !ok {
		t.Fatalf("newReporter(auto, terminal) = %T, want *barReporter", r)
	}
	running := progress.Message{TaskID: "b1", State: model.StateRunning, Current: 3, Total: 10, Rate: 2.5, ETASeconds: 2.8,
		Counts: model.Counts{Succeeded: 2, Failed: 1}, InFlight: map[int]string{0: "n3", 1: "n4"}}
	r.update(progress.Message{TaskID: "b1", State: model.StatePending}) // no total yet: nothing drawn
	if out.Len() != 0 {
		t.Errorf("a message without a total drew %q", out.String())
	}
	r.update(running)
	r.println("interrupted: cancelling batch/b1")
	r.final(progress.Message{TaskID: "b1", State: model.StateSucceeded, Current: 10, Total: 10, Counts: model.Counts{Succeeded: 9, Failed: 1}})
	r.final(progress.Message{}) // a second end prints nothing
	got := out.String()
	for _, want := range []string{
		"batch/b1: 10 nodes (Ctrl-C cancels the batch; twice detaches)\n",
		"(3/10) running, 2.5 nodes/s, eta 3s, 1 failed, 2 in flight",
		"\rinterrupted: cancelling batch/b1\n",
		"100%",
		"(10/10) succeeded, 1 failed, 0 in flight",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("bar output lacks %q:\n%q", want, got)
		}
	}
	if !strings.HasSuffix(got, "\n") || strings.HasSuffix(got, "\n\n") {
		t.Errorf("bar output should end with exactly one newline: %q", got)
	}
	if p := newReporter(ProgressAuto, false, &out, time.Hour, time.Now); func() bool { _, ok := p.(*plainReporter); return !ok }() {
		t.Errorf("newReporter(auto, not a terminal) = %T, want *plainReporter", p)
	}
	if p := newReporter(ProgressPlain, true, &out, time.Hour, time.Now); func() bool { _, ok := p.(*plainReporter); return !ok }() {
		t.Errorf("newReporter(plain, terminal) = %T, want *plainReporter", p)
	}
}

// TestPreviewPages reads every page of the preview, each with the token the
// one before gave, and prints every node once.
func TestPreviewPages(t *testing.T) {
	var tokens []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/batches:preview" || r.URL.Query().Get("page_size") != "1000" {
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
		}
		tok := r.URL.Query().Get("page_token")
		tokens = append(tokens, tok)
		switch tok {
		case "":
			fmt.Fprint(w, `{"total":3,"would_change":2,"already_in_target":1,"nodes":[{"node":"a","changed":true,"changes":[{"key":"label:x","before":"1","after":null}]}],"next_page_token":"p2"}`)
		case "p2":
			fmt.Fprint(w, `{"total":3,"nodes":[{"node":"b","changed":false},{"node":"c","changed":true,"changes":[{"key":"label:x","before":"1","after":"1"},{"key":"label:y","before":null,"after":"2"}]}],"next_page_token":"p2"}`)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		switch k {
		case "NODEBATCH_URL":
			return srv.URL
		case "NODEBATCH_TOKEN":
			return "tok"
		}
		return ""
	}}
	if code := Run(context.Background(), []string{"label", "nodes", "--all", "x-", "--dry-run=server"}, env); code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if diff := cmp.Diff([]string{"", "p2"}, tokens); diff != "" {
		t.Errorf("page tokens (-want +got):\n%s", diff)
	}
	want := "# dry run (server): 3 nodes, 2 would change, 1 already in target, 0 skipped; nothing was changed\n" +
		"node/a\n" + `- label:x: "1" → (absent)` + "\n" +
		"node/b unchanged (already in target)\n" +
		"node/c\n" + `  label:x: "1" → "1"` + "\n" + `+ label:y: (absent) → "2"` + "\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
}

// TestPrintTable prints batches as kubectl prints resources, with cli-runtime.
func TestPrintTable(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	list := `{"batches":[` +
		`{"batch_id":"b-long-id-1","owner":"alice@example.com","action":"batch_label","total":200,"concurrency":10,"attempt":1,"state":"running","counts":{"succeeded":150,"failed":2},"created_at":"2026-12-02T09:56:50Z"},` +
		`{"batch_id":"b2","owner":"bob@example.com","action":"batch_taint","total":3,"concurrency":1,"attempt":2,"state":"cancelled","counts":{"succeeded":1,"cancelled":2},"created_at":"2026-11-28T10:00:00Z","reverts":"b0"}]}`
	tests := []struct {
		format, want string
	}{
		{"", "" +
			"NAME          ACTION        STATE       DONE      FAILED   AGE\n" +
			"b-long-id-1   batch_label   running     152/200   2        3m10s\n" +
			"b2            batch_taint   cancelled   3/3       0        4d\n"},
		{"wide", "" +
			"NAME          ACTION        STATE       DONE      FAILED   AGE     OWNER               ATTEMPT   CONCURRENCY   REVERTS\n" +
			"b-long-id-1   batch_label   running     152/200   2        3m10s   alice@example.com   1         10            -\n" +
			"b2            batch_taint   cancelled   3/3       0        4d      bob@example.com     2         1             b0\n"},
		{"name", "batch/b-long-id-1\nbatch/b2\n"},
	}
	for _, tt := range tests {
		t.Run("-o "+tt.format, func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := printList(&out, &errb, tt.format, []byte(list), now); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, out.String()); diff != "" {
				t.Errorf("printList(-o %s) (-want +got):\n%s", tt.format, diff)
			}
		})
	}
	var out, errb bytes.Buffer
	if err := printList(&out, &errb, "", []byte(`{"batches":[]}`), now); err != nil || out.Len() != 0 || errb.String() != "No batches found.\n" {
		t.Errorf("empty list: err %v, stdout %q, stderr %q; want nothing and No batches found.", err, out.String(), errb.String())
	}
	// A NoExecute batch says under its table what it recorded it would
	// evict; an error from the server is shown, never acted on.
	impacts := []struct {
		name, batch, want string
	}{
		{"evictions", `"impact":{"no_execute":true,"nodes_with_evictions":2,"evictions":10,"evict_now":8,"budgets_violated":1}`,
			"Impact: would evict 10 pods on 2 nodes (8 at once, 2 after their tolerationSeconds), 1 budget violated (taint eviction ignores budgets)\n"},
		{"nothing", `"impact":{"no_execute":true,"nodes_with_evictions":0,"evictions":0,"evict_now":0,"budgets_violated":0}`,
			"Impact: would evict 0 pods on 0 nodes, 0 budgets violated\n"},
		{"one", `"impact":{"no_execute":true,"nodes_with_evictions":1,"evictions":1,"evict_now":1,"budgets_violated":2}`,
			"Impact: would evict 1 pod on 1 node, 2 budgets violated (taint eviction ignores budgets)\n"},
		{"error", `"impact_error":"pods is forbidden\u001b[2J"`, "Impact: unknown: pods is forbidden?[2J\n"},
		{"none", `"counts":{}`, ""},
	}
	for _, tt := range impacts {
		raw := []byte(`{"batch_id":"b3","action":"batch_taint","total":2,"state":"succeeded","created_at":"2026-12-02T09:00:00Z",` + tt.batch + `}`)
		s, err := decodeStatus(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, format := range []string{"", "wide"} {
			out.Reset()
			if err := printBatch(&out, format, raw, s, now); err != nil {
				t.Fatal(err)
			}
			_, line, _ := strings.Cut(strings.SplitN(out.String(), "\n", 2)[1], "\n")
			if diff := cmp.Diff(tt.want, line); diff != "" {
				t.Errorf("printBatch(-o %s) of a batch with %s: the line under the table (-want +got):\n%s", format, tt.name, diff)
			}
		}
		out.Reset()
		if err := printBatch(&out, "json", raw, s, now); err != nil || out.String() != string(raw)+"\n" {
			t.Errorf("printBatch(-o json) = %q, %v; want the answer as it came", out.String(), err)
		}
	}
	out.Reset()
	// A cell is escaped, never sent raw to the terminal.
	out.Reset()
	if err := printBatch(&out, "", nil, status{BatchID: "b\x1b[2Jx", State: "running"}, now); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Errorf("an escape sequence reached the table: %q", out.String())
	}
}
