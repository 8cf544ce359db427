package apierror

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDocsTable checks docs/api.md's error table against Kinds: every row
// a kind, every kind a row.
func TestDocsTable(t *testing.T) {
	raw, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "### Errors")
	if start < 0 {
		t.Fatal(`docs/api.md has no "### Errors" section`)
	}
	doc = doc[start:]
	if end := strings.Index(doc[1:], "\n### "); end > 0 {
		doc = doc[:end+1]
	}
	row := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| `([a-z_]+)` \\|")
	var got []string
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		got = append(got, m[1]+" "+m[2])
	}
	var want []string
	for _, c := range Kinds {
		want = append(want, strconv.Itoa(c.Status)+" "+c.Code)
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/api.md error table vs apierror.Kinds (-want +got):\n%s", diff)
	}
}

func TestWrite(t *testing.T) {
	type details struct {
		Nodes   int      `json:"nodes"`
		Reasons []string `json:"reasons"`
	}
	withHeader := New(Unauthenticated, "a bearer token is required")
	withHeader.Header = http.Header{"Www-Authenticate": {`Bearer realm="x"`}}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantHeader http.Header
		wantBody   string
	}{
		{"plain", New(NotFound, "batch %q not found", "b1"), 404, nil,
			`{"error":{"code":"not_found","message":"batch \"b1\" not found"}}`},
		{"field, HTML escaped", Field(Invalid, "nodes[0]", "a<b>", "bad", "the batch request is invalid"), 422, nil,
			`{"error":{"code":"invalid","message":"the batch request is invalid","fields":[{"field":"nodes[0]","value":"a\u003cb\u003e","reason":"bad"}]}}`},
		{"limited", Limited(Limit{Name: "x_per_minute", PerMinute: 30, Burst: 10, RetryAfter: 5100 * time.Millisecond}, "too many"), 429,
			http.Header{"Retry-After": {"6"}},
			`{"error":{"code":"rate_limited","message":"too many","limit":"x_per_minute","per_minute":30,"burst":10,"retry_after_seconds":6}}`},
		{"key order", &Error{Kind: Invalid, Message: "m<", Fields: []FieldError{{Field: "task_id", Reason: "r"}}, KeyOrder: true}, 422, nil,
			`{"error":{"code":"invalid","fields":[{"field":"task_id","reason":"r"}],"message":"m\u003c"}}`},
		{"details follow", &Error{Kind: ConfirmationRequired, Message: "confirm", Details: details{Nodes: 3, Reasons: []string{"all"}}}, 409, nil,
			`{"error":{"code":"confirmation_required","message":"confirm","nodes":3,"reasons":["all"]}}`},
		{"header", withHeader, 401, http.Header{"Www-Authenticate": {`Bearer realm="x"`}},
			`{"error":{"code":"unauthenticated","message":"a bearer token is required"}}`},
		{"wrapped", fmt.Errorf("op: %w", New(Conflict, "no")), 409, nil,
			`{"error":{"code":"conflict","message":"no"}}`},
		{"not ours: internal, text hidden", errors.New("secret detail"), 500, nil,
			`{"error":{"code":"internal","message":"internal error"}}`},
		{"details not an object", &Error{Kind: Conflict, Message: "x", Details: 3}, 500, nil,
			`{"error":{"code":"internal","message":"encode error answer"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, tt.err)
			if rec.Code != tt.wantStatus {
				t.Errorf("Write(%v) status = %d, want %d", tt.err, rec.Code, tt.wantStatus)
			}
			if diff := cmp.Diff(tt.wantBody+"\n", rec.Body.String()); diff != "" {
				t.Errorf("Write(%v) body (-want +got):\n%s", tt.err, diff)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			for k := range tt.wantHeader {
				if got, want := rec.Header().Get(k), tt.wantHeader.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestKindOf(t *testing.T) {
	if got := KindOf(fmt.Errorf("x: %w", New(TooLarge, "big"))); got != TooLarge {
		t.Errorf("KindOf(wrapped TooLarge) = %v, want %v", got, TooLarge)
	}
	if got := KindOf(errors.New("x")); got != Internal {
		t.Errorf("KindOf(plain) = %v, want Internal", got)
	}
	cause := errors.New("cause")
	if e := Wrap(Unavailable, cause, "op failed"); !errors.Is(e, cause) || e.Status() != 503 || e.Code() != "unavailable" {
		t.Errorf("Wrap = %v (status %d code %s), want 503 unavailable wrapping its cause", e, e.Status(), e.Code())
	}
}

func TestHandlerFunc(t *testing.T) {
	h := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/ok" {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return New(Forbidden, "no")
	})
	for path, want := range map[string]int{"/ok": 204, "/no": 403} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
}
