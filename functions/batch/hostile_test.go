package batch_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
)

// Tests of issue 13: requests an attacker would send.

// errorBody is the API's error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Limit   string `json:"limit"`
		Fields  []struct {
			Field, Value, Reason string
		} `json:"fields"`
	} `json:"error"`
}

func decodeError(t *testing.T, raw []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %s is not {error:{code,message}}: %v", raw, err)
	}
	return e
}

func (e errorBody) names(field string) bool {
	for _, f := range e.Error.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// TestBatchIDValidated: every route that takes a batch id refuses one that
// is not a batch id with 400 naming "id", before it reaches a Firestore
// path ("a/b" would make the document path a collection path); a
// well-formed id that names nothing is 404.
func TestBatchIDValidated(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true})
	tok := p.token(t, "ines")
	bad := []string{"a%2Fb", "a%2Fb%2Fc", "a.b", "%C3%A9", "a%00b", "a%20b", strings.Repeat("x", 129)}
	for _, id := range bad {
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/v1/batches/" + id},
			{http.MethodPost, "/v1/batches/" + id + ":cancel"},
			{http.MethodPost, "/v1/batches/" + id + ":retry"},
			{http.MethodPost, "/v1/batches/" + id + ":revert"},
		} {
			code, raw := p.do(t, r.method, r.path, tok, nil, nil)
			if code != http.StatusBadRequest {
				t.Errorf("%s %s = %d %s, want 400", r.method, r.path, code, raw)
				continue
			}
			if e := decodeError(t, raw); e.Error.Code != "malformed" || !e.names("id") {
				t.Errorf("%s %s = %s, want code malformed naming field id", r.method, r.path, raw)
			}
		}
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/batches/no-such-batch"},
		{http.MethodGet, "/v1/batches/UPPER_case"},
		{http.MethodPost, "/v1/batches/no-such-batch:cancel"},
		{http.MethodPost, "/v1/batches/no-such-batch:retry"},
		{http.MethodPost, "/v1/batches/no-such-batch:revert"},
	} {
		if code, raw := p.do(t, r.method, r.path, tok, nil, nil); code != http.StatusNotFound {
			t.Errorf("%s %s = %d %s, want 404", r.method, r.path, code, raw)
		}
	}
	if code, raw := p.do(t, http.MethodPost, "/v1/batches/no-such-batch:explode", tok, nil, nil); code != http.StatusNotFound {
		t.Errorf("unknown action = %d %s, want 404", code, raw)
	}
}

// TestCancelReasonUTF8: a reason cut at byte 500 in the middle of a
// character was stored as invalid UTF-8, which Firestore refuses, so every
// such cancel answered 503. It is cut on a character boundary.
func TestCancelReasonUTF8(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true, cancelWait: time.Millisecond})
	_, names := p.env.SeedNodes(t, 6)
	tok := p.token(t, "jan")
	c := p.submit(t, tok, map[string]any{"labels": []string{"cr=1"}, "nodes": names})
	a499 := strings.Repeat("a", 499)
	for _, reason := range []string{a499 + "é", a499 + "日本", strings.Repeat("é", 300)} {
		var got batch.Cancelled
		code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":cancel", tok, map[string]string{"reason": reason}, &got)
		if code != http.StatusOK && code != http.StatusAccepted {
			t.Fatalf("cancel with a %d-byte reason = %d %s, want 200 or 202", len(reason), code, raw)
		}
		if got.Cancel == nil {
			t.Fatalf("cancel answer %s has no cancel", raw)
		}
		// The first cancel is kept: its reason is the first one, cut.
		want := "cancelled by jan@example.com: " + a499
		if got.Cancel.Reason != want || !utf8.ValidString(got.Cancel.Reason) {
			t.Errorf("stored reason = %q (%d bytes, valid UTF-8 %v), want %q", got.Cancel.Reason, len(got.Cancel.Reason), utf8.ValidString(got.Cancel.Reason), want)
		}
	}
}

// TestStrictBodies: every body the API reads is decoded case-sensitively
// and refuses duplicate keys; a blank selector and a non-finite
// max_failures are refused. Nothing is published.
func TestStrictBodies(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true})
	prefix, names := p.env.SeedNodes(t, 3)
	tok := p.token(t, "kim")
	sel := selector(prefix)
	n0 := names[0]
	tests := []struct {
		name      string
		path      string
		body      string
		wantCode  int
		wantField string
	}{
		{"key in another case", "/v1/batches", `{"labels":["x=1"],"ALL":true}`, 400, "ALL"},
		{"duplicate key", "/v1/batches", `{"labels":["x=1"],"nodes":["` + n0 + `"],"nodes":["` + names[1] + `"]}`, 400, "nodes"},
		{"duplicate nested key", "/v1/batches", `{"changes":{"labels":[{"key":"x","value":"1","value":"2"}]},"nodes":["` + n0 + `"]}`, 400, "changes.labels[0].value"},
		{"blank selector", "/v1/batches", `{"labels":["x=1"],"selector":" "}`, 422, "selector"},
		{"NaN max_failures", "/v1/batches", `{"labels":["x=1"],"selector":"` + sel + `","max_failures":"NaN%"}`, 422, "max_failures"},
		{"Inf max_failures", "/v1/batches", `{"labels":["x=1"],"selector":"` + sel + `","max_failures":"Inf%"}`, 422, "max_failures"},
		{"overflowing max_failures", "/v1/batches", `{"labels":["x=1"],"selector":"` + sel + `","max_failures":"1e400%"}`, 422, "max_failures"},
		{"negative zero max_failures", "/v1/batches", `{"labels":["x=1"],"selector":"` + sel + `","max_failures":"-0%"}`, 422, "max_failures"},
		{"preview key in another case", "/v1/batches:preview", `{"labels":["x=1"],"ALL":true}`, 400, "ALL"},
		{"preview blank selector", "/v1/batches:preview", `{"labels":["x=1"],"selector":"\t"}`, 422, "selector"},
		{"seed labels duplicate label", "/api/v1/nodes/labels/batch-add-progress", `{"nodes":["` + n0 + `"],"labels":{"x":"1","x":"kubernetes.io"}}`, 400, "labels.x"},
		{"seed labels operation in another case", "/api/v1/nodes/labels/batch-add", `{"nodes":["` + n0 + `"],"labels":{"x":""},"Operation":"remove"}`, 400, "Operation"},
		{"seed taints duplicate operation", "/api/v1/nodes/taints/batch-add-progress", `{"nodes":["` + n0 + `"],"taints":[{"key":"x","effect":"NoSchedule"}],"operation":"add","operation":"remove"}`, 400, "operation"},
		{"cancel reason in another case", "/v1/batches/no-such-batch:cancel", `{"Reason":"x"}`, 400, "Reason"},
		{"retry duplicate key", "/v1/batches/no-such-batch:retry", `{"include_cancelled":false,"include_cancelled":true}`, 400, "include_cancelled"},
		{"revert unknown field", "/v1/batches/no-such-batch:revert", `{"force":true}`, 400, "force"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, raw := p.do(t, http.MethodPost, tt.path, tok, tt.body, nil)
			if code != tt.wantCode {
				t.Fatalf("POST %s %s = %d %s, want %d", tt.path, tt.body, code, raw, tt.wantCode)
			}
			if e := decodeError(t, raw); !e.names(tt.wantField) {
				t.Errorf("POST %s %s = %s, want field %s named", tt.path, tt.body, raw, tt.wantField)
			}
		})
	}
	assertNothingPublished(t, p)
}

// TestIdempotencyMismatch: an idempotency key reused with the same request
// (however spelled) finds the earlier batch; with a different request it
// is refused with 409 idempotency_mismatch and runs nothing. Keys are
// scoped to their owner without ambiguity: an owner whose name ends in
// "|x" cannot reach the batch another owner made with a key starting "x|".
func TestIdempotencyMismatch(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true})
	_, names := p.env.SeedNodes(t, 8)
	alice := p.token(t, "alice")
	first := p.submit(t, alice, map[string]any{"labels": []string{"im=1"}, "nodes": names, "idempotency_key": "nightly|1"})

	reordered := append([]string{names[7]}, names[:7]...)
	var again batch.Created
	code, raw := p.do(t, http.MethodPost, "/v1/batches", alice, map[string]any{"nodes": reordered, "labels": []string{"im=1"}, "idempotency_key": "nightly|1"}, &again)
	if code != http.StatusOK || again.BatchID != first.BatchID || !again.Existing {
		t.Fatalf("same request, same key = %d %s, want 200 existing batch %s", code, raw, first.BatchID)
	}
	for _, body := range []map[string]any{
		{"labels": []string{"im=2"}, "nodes": names, "idempotency_key": "nightly|1"},
		{"labels": []string{"im=1"}, "nodes": names[:4], "idempotency_key": "nightly|1"},
		{"labels": []string{"im=1"}, "nodes": names, "dry_run": true, "idempotency_key": "nightly|1"},
	} {
		code, raw := p.do(t, http.MethodPost, "/v1/batches", alice, body, nil)
		if code != http.StatusConflict {
			t.Errorf("other request %v, same key = %d %s, want 409", body, code, raw)
			continue
		}
		if e := decodeError(t, raw); e.Error.Code != "idempotency_mismatch" || !e.names("idempotency_key") || !strings.Contains(e.Error.Message, first.BatchID) {
			t.Errorf("other request, same key = %s, want code idempotency_mismatch naming idempotency_key and batch %s", raw, first.BatchID)
		}
	}
	// The seed endpoints share the keys.
	seed := map[string]any{"nodes": names, "labels": map[string]string{"im": "other"}, "idempotency_key": "nightly|1"}
	if code, raw := p.do(t, http.MethodPost, "/api/v1/nodes/labels/batch-add-progress", alice, seed, nil); code != http.StatusConflict {
		t.Errorf("seed request, same key, other change = %d %s, want 409", code, raw)
	}

	// An owner "alice@example.com|nightly" with key "1": the same bytes
	// as alice's owner|key under the original encoding.
	tok, err := p.issuer.Mint(oidcdev.Claims{Subject: "mallory", Email: "alice@example.com|nightly", Audience: []string{audience}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var m batch.Created
	code, raw = p.do(t, http.MethodPost, "/v1/batches", tok, map[string]any{"labels": []string{"im=1"}, "nodes": names, "idempotency_key": "1"}, &m)
	if code != http.StatusAccepted || m.BatchID == first.BatchID || m.Existing {
		t.Errorf("owner alice@example.com|nightly, key 1 = %d %s, want 202 with a batch of its own (not %s)", code, raw, first.BatchID)
	}
}

// TestPreviewLimit: previews and dry-run submits (each lists every node
// and sends dry-run writes) are limited per user: past the burst, 429 with
// Retry-After and the previews limit named; another user is unaffected.
func TestPreviewLimit(t *testing.T) {
	const burst = 2
	// One preview per minute sustained: the test's few seconds cannot
	// refill a token, whatever the pace.
	p := newPipeline(t, options{noDeliverer: true, settings: map[string]string{
		"NODEBATCH_PREVIEW_PER_MINUTE": "1", "NODEBATCH_PREVIEW_BURST": strconv.Itoa(burst),
	}})
	prefix, _ := p.env.SeedNodes(t, 3)
	alice := p.token(t, "alice")
	body := map[string]any{"labels": []string{"pl=1"}, "selector": selector(prefix)}
	for i := range burst {
		if code, raw := p.do(t, http.MethodPost, "/v1/batches:preview", alice, body, nil); code != http.StatusOK {
			t.Fatalf("preview %d = %d %s, want 200", i+1, code, raw)
		}
	}
	// A refused request is not charged: an invalid preview costs nothing.
	if code, raw := p.do(t, http.MethodPost, "/v1/batches:preview", alice, map[string]any{"labels": []string{"pl=1"}}, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("invalid preview = %d %s, want 422", code, raw)
	}
	dry := map[string]any{"labels": []string{"pl=1"}, "selector": selector(prefix), "dry_run": true}
	for _, r := range []struct {
		path string
		body map[string]any
	}{{"/v1/batches:preview", body}, {"/v1/batches", dry}} {
		code, hdr, raw, err := p.sendHeader(http.MethodPost, r.path, alice, r.body)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusTooManyRequests {
			t.Fatalf("POST %s past the preview burst = %d %s, want 429", r.path, code, raw)
		}
		if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
			t.Errorf("Retry-After = %q, want whole seconds in [1, 60]", hdr.Get("Retry-After"))
		}
		if e := decodeError(t, raw); e.Error.Code != "rate_limited" || e.Error.Limit != ratelimit.PreviewName || !strings.Contains(e.Error.Message, "previews") {
			t.Errorf("429 answer = %s, want rate_limited naming %s", raw, ratelimit.PreviewName)
		}
	}
	// A real submit is not a preview.
	if code, raw := p.do(t, http.MethodPost, "/v1/batches", alice, map[string]any{"labels": []string{"pl=1"}, "selector": selector(prefix)}, nil); code != http.StatusAccepted {
		t.Errorf("submit after the preview burst = %d %s, want 202", code, raw)
	}
	if code, raw := p.do(t, http.MethodPost, "/v1/batches:preview", p.token(t, "dave"), body, nil); code != http.StatusOK {
		t.Errorf("another user's preview = %d %s, want 200", code, raw)
	}
}

// sendHeader is send that also returns the answer's headers.
func (p *pipeline) sendHeader(method, path, token string, body any) (int, http.Header, []byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, nil, err
	}
	req, err := http.NewRequest(method, p.api.URL+path, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	return resp.StatusCode, resp.Header, out, nil
}
