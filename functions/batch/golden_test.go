package batch_test

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/golden"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
)

var update = flag.Bool("update", false, "rewrite testdata/api/*.golden from the answers")

// goldenRun sends requests to one pipeline and compares each answer with
// testdata/api/NAME.golden (normalized: ids, times, the node prefix).
type goldenRun struct {
	t      *testing.T
	url    string
	prefix string
	subst  []string
}

// call sends body (a string, "" for none) with token ("" for none) and
// returns the status and the raw body, checking them against the golden
// file name.
func (g *goldenRun) call(name, method, path, token, body string) (int, []byte) {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.url+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	g.check(name, resp.StatusCode, resp.Header, raw)
	return resp.StatusCode, raw
}

func (g *goldenRun) check(name string, status int, h http.Header, raw []byte) {
	g.t.Helper()
	got := golden.Normalize(golden.Render(status, h, raw), g.subst...)
	golden.Check(g.t, filepath.Join("testdata", "api", name+".golden"), got, *update)
}

// nodes is the JSON list of the run's nodes i..j-1.
func (g *goldenRun) nodes(i, j int) string {
	var q []string
	for k := i; k < j; k++ {
		q = append(q, fmt.Sprintf("%q", fmt.Sprintf("%s-%04d", g.prefix, k)))
	}
	return "[" + strings.Join(q, ",") + "]"
}

// idOf reads "batch_id" of an answer.
func idOf(t *testing.T, raw []byte) string {
	t.Helper()
	var c batch.Created
	if err := jsonUnmarshal(raw, &c); err != nil || c.BatchID == "" {
		t.Fatalf("answer %s has no batch_id: %v", raw, err)
	}
	return c.BatchID
}

// TestGoldenAPI records every documented answer of the batch API
// (docs/api.md: create, dry_run, preview, get, history, cancel, retry,
// revert, the seed endpoints, and every error) and compares it with
// testdata/api/*.golden byte for byte, after normalizing what varies from
// run to run. Run with -update to rewrite the files: the wire format is
// the contract, so a diff here is a change of the API.
func TestGoldenAPI(t *testing.T) {
	var faulty atomic.Pointer[map[string]bool]
	o := options{inlineMax: 5, cancelWait: 50 * time.Millisecond}
	o.proxy.Fault = failNodes(&faulty)
	p := newPipeline(t, o)
	prefix, names := p.env.SeedNodes(t, 8)
	g := &goldenRun{t: t, url: p.api.URL, prefix: prefix, subst: []string{prefix, "<prefix>", p.project, "<project>"}}
	alice, bob, admin := p.token(t, "alice"), p.token(t, "bob"), p.token(t, "root", "admin")
	tok1 := base64.RawURLEncoding.EncodeToString([]byte(names[1]))
	sel := fmt.Sprintf(`"selector":%q`, selector(prefix))

	// Submit: fanned out, idempotent repeat, mismatch.
	six := g.nodes(0, 6)
	body := `{"labels":["golden=a"],"nodes":` + six + `,"concurrency":2,"idempotency_key":"k1"}`
	_, raw := g.call("create_202", "POST", "/v1/batches", alice, body)
	first := idOf(t, raw)
	p.wait(t, alice, first)
	g.call("create_existing_200", "POST", "/v1/batches", alice, body)
	g.call("create_idempotency_mismatch_409", "POST", "/v1/batches", alice, `{"labels":["golden=b"],"nodes":`+six+`,"idempotency_key":"k1"}`)

	// Status.
	g.call("get_200", "GET", "/v1/batches/"+first+"?page_size=2", alice, "")
	g.call("get_page_token_200", "GET", "/v1/batches/"+first+"?page_size=2&page_token="+tok1, alice, "")
	g.call("get_other_owner_404", "GET", "/v1/batches/"+first, bob, "")
	g.call("get_admin_200", "GET", "/v1/batches/"+first+"?page_size=1", admin, "")
	g.call("get_not_found_404", "GET", "/v1/batches/nosuchbatch", alice, "")
	g.call("get_bad_id_400", "GET", "/v1/batches/a.b", alice, "")
	g.call("get_bad_page_size_400", "GET", "/v1/batches/"+first+"?page_size=0", alice, "")
	g.call("get_bad_page_token_400", "GET", "/v1/batches/"+first+"?page_token=!!", alice, "")

	// Inline (at most 5 nodes): 200 with the status.
	g.call("create_inline_200", "POST", "/v1/batches", alice, `{"labels":["golden=inline"],"taints":["golden=x:NoSchedule"],"nodes":`+g.nodes(6, 8)+`}`)
	_, raw = g.call("create_inline_unchanged_200", "POST", "/v1/batches", alice, `{"changes":{"labels":[{"key":"golden","value":"inline"}]},"nodes":`+g.nodes(6, 8)+`}`)
	unchanged := idOf(t, raw)

	// Dry run and preview.
	_, raw = g.call("create_dry_run_202", "POST", "/v1/batches", alice, `{"labels":["golden=dry","zone-"],"nodes":`+six+`,"dry_run":true}`)
	dry := idOf(t, raw)
	p.wait(t, alice, dry)
	g.call("preview_200", "POST", "/v1/batches:preview?page_size=3", alice, `{"labels":["golden=p"],"taints":["golden=p:NoExecute"],`+sel+`}`)
	g.call("preview_page_token_200", "POST", "/v1/batches:preview?page_size=3&page_token="+tok1, alice, `{"labels":["golden=p"],`+sel+`}`)
	g.call("preview_bad_page_size_400", "POST", "/v1/batches:preview?page_size=x", alice, `{"labels":["golden=p"],`+sel+`}`)
	g.call("preview_invalid_422", "POST", "/v1/batches:preview", alice, `{"labels":["golden=p"]}`)

	// Refusals of a submit.
	g.call("create_unauthenticated_401", "POST", "/v1/batches", "", `{"labels":["a=b"],"all":true}`)
	g.call("create_bad_token_401", "POST", "/v1/batches", "not-a-token", `{"labels":["a=b"],"all":true}`)
	g.call("create_empty_400", "POST", "/v1/batches", alice, "")
	g.call("create_not_json_400", "POST", "/v1/batches", alice, `{"labels":`)
	g.call("create_not_object_400", "POST", "/v1/batches", alice, `[1]`)
	g.call("create_two_values_400", "POST", "/v1/batches", alice, `{} {}`)
	g.call("create_wrong_type_400", "POST", "/v1/batches", alice, `{"concurrency":"x"}`)
	g.call("create_unknown_field_400", "POST", "/v1/batches", alice, `{"ALL":true,"labels":["a=b"]}`)
	g.call("create_duplicate_key_400", "POST", "/v1/batches", alice, `{"all":false,"all":true,"labels":["a=b"]}`)
	g.call("create_too_large_413", "POST", "/v1/batches", alice, `{"labels":["`+strings.Repeat("a", 1<<20)+`"]}`)
	g.call("create_invalid_422", "POST", "/v1/batches", alice, `{"labels":["bad key=x","ok=1","node.kubernetes.io/x=1"],"taints":["gpu:NoSchedule-","gpu:NoSchedule-"],"nodes":["a<b>&c"],"concurrency":99,"max_failures":"NaN%"}`)
	g.call("create_both_forms_422", "POST", "/v1/batches", alice, `{"labels":["a=b"],"changes":{"labels":[{"key":"a"}]},"all":true}`)
	g.call("create_no_target_422", "POST", "/v1/batches", alice, `{"labels":["a=b"]}`)
	g.call("create_unknown_node_422", "POST", "/v1/batches", alice, `{"labels":["a=b"],"nodes":["`+names[0]+`","`+prefix+`-nope"]}`)
	g.call("create_selector_matches_nothing_422", "POST", "/v1/batches", alice, `{"labels":["a=b"],"selector":"nodebatch.dev/test=nothing-`+prefix+`"}`)
	g.call("create_forbidden_403", "POST", "/v1/batches", bob, `{"labels":["a=b"],"nodes":["`+names[0]+`"]}`)
	g.call("create_confirmation_required_409", "POST", "/v1/batches", alice, `{"taints":["golden=x:NoExecute"],`+sel+`}`)
	g.call("create_confirm_mismatch_409", "POST", "/v1/batches", alice, `{"labels":["a=b"],`+sel+`,"confirm":3}`)
	g.call("create_max_nodes_409", "POST", "/v1/batches", alice, `{"labels":["a=b"],`+sel+`,"max_nodes":2}`)

	// History.
	g.call("history_200", "GET", "/v1/batches?limit=2", alice, "")
	g.call("history_state_200", "GET", "/v1/batches?state=succeeded&limit=1", alice, "")
	g.call("history_all_admin_200", "GET", "/v1/batches?all=true&limit=1", admin, "")
	g.call("history_all_forbidden_403", "GET", "/v1/batches?all=true", alice, "")
	g.call("history_bad_all_400", "GET", "/v1/batches?all=maybe", alice, "")
	g.call("history_bad_state_400", "GET", "/v1/batches?state=done", alice, "")
	g.call("history_bad_limit_400", "GET", "/v1/batches?limit=101", alice, "")
	g.call("history_bad_page_token_400", "GET", "/v1/batches?page_token=eyJ4IjoxfQ", alice, "")

	// Controls of final batches.
	g.call("cancel_ended_409", "POST", "/v1/batches/"+first+":cancel", alice, "")
	g.call("cancel_bad_body_400", "POST", "/v1/batches/"+first+":cancel", alice, `{"why":"x"}`)
	g.call("cancel_not_found_404", "POST", "/v1/batches/nosuchbatch:cancel", alice, "")
	g.call("control_unknown_action_404", "POST", "/v1/batches/"+first+":explode", alice, "")
	g.call("control_no_action_404", "POST", "/v1/batches/"+first+":", alice, "")
	g.call("control_bad_id_400", "POST", "/v1/batches/a.b:cancel", alice, "")
	g.call("retry_nothing_409", "POST", "/v1/batches/"+first+":retry", alice, "")
	g.call("retry_bad_body_400", "POST", "/v1/batches/"+first+":retry", alice, `{"include_cancelled":"yes"}`)
	g.call("revert_dry_run_409", "POST", "/v1/batches/"+dry+":revert", alice, "")
	g.call("revert_nothing_409", "POST", "/v1/batches/"+unchanged+":revert", alice, "")
	g.call("revert_bad_body_400", "POST", "/v1/batches/"+first+":revert", alice, `{"x":1}`)
	_, raw = g.call("revert_202", "POST", "/v1/batches/"+first+":revert", alice, "{}")
	p.wait(t, alice, idOf(t, raw))
	g.call("revert_again_200", "POST", "/v1/batches/"+first+":revert", alice, "")

	// A failed batch, retried.
	bad := map[string]bool{}
	for _, n := range names[:6] {
		bad[n] = true
	}
	faulty.Store(&bad)
	_, raw = g.call("create_failing_202", "POST", "/v1/batches", alice, `{"labels":["golden=fail"],"nodes":`+six+`,"concurrency":1,"max_failures":"50%"}`)
	failed := idOf(t, raw)
	p.wait(t, alice, failed)
	faulty.Store(nil)
	g.call("get_failed_200", "GET", "/v1/batches/"+failed+"?page_size=1", alice, "")
	g.call("retry_202", "POST", "/v1/batches/"+failed+":retry", alice, `{"include_cancelled":true}`)
	p.wait(t, alice, failed)
	g.call("get_retried_200", "GET", "/v1/batches/"+failed+"?page_size=4", alice, "")

	// The seed's endpoints.
	_, raw = g.call("seed_labels_progress_202", "POST", "/api/v1/nodes/labels/batch-add-progress", alice, `{"nodes":`+six+`,"labels":{"seed":"a"}}`)
	p.wait(t, alice, idOf(t, raw))
	g.call("seed_labels_wait_200", "POST", "/api/v1/nodes/labels/batch-add", alice, `{"nodes":`+g.nodes(6, 8)+`,"labels":{"seed":"b"}}`)
	g.call("seed_taints_wait_200", "POST", "/api/v1/nodes/taints/batch-add", alice, `{"nodes":`+six+`,"taints":[{"key":"seed","value":"c","effect":"NoSchedule"}],"concurrency":3}`)
	g.call("seed_taints_progress_202", "POST", "/api/v1/nodes/taints/batch-add-progress", alice, `{"nodes":`+six+`,"taints":[{"key":"seed","effect":"NoSchedule"}],"operation":"remove"}`)
	g.call("seed_invalid_422", "POST", "/api/v1/nodes/taints/batch-add", alice, `{"nodes":["`+names[0]+`"],"taints":[{"key":"k=v","value":"a:b","effect":"NoSchedule-"}],"operation":"drop"}`)
	g.call("seed_invalid_fields_422", "POST", "/api/v1/nodes/taints/batch-add", alice, `{"nodes":["`+names[0]+`"],"taints":[{"key":"k=v","value":"a:b","effect":"NoSchedule-"}]}`)
	g.call("seed_labels_invalid_422", "POST", "/api/v1/nodes/labels/batch-add", alice, `{"nodes":["`+names[0]+`"],"labels":{"a=b":"x-","ok":"1"}}`)
	g.call("seed_malformed_400", "POST", "/api/v1/nodes/labels/batch-add", alice, `{"nodes":["`+names[0]+`"],"labels":{"a":1}}`)
	g.call("seed_noexecute_409", "POST", "/api/v1/nodes/taints/batch-add-progress", alice, `{"nodes":["`+names[0]+`"],"taints":[{"key":"seed","effect":"NoExecute"}]}`)

	// A confirmed NoExecute batch records its predicted impact.
	_, raw = g.call("create_noexecute_inline_200", "POST", "/v1/batches", alice, `{"taints":["golden=ne:NoExecute"],"nodes":`+g.nodes(6, 8)+`,"confirm":2}`)
	g.call("get_noexecute_200", "GET", "/v1/batches/"+idOf(t, raw)+"?page_size=1", alice, "")
}

// TestGoldenAPIRunning records the controls of a batch that stays running
// (nothing consumes its events) and a submit whose publishing fails.
func TestGoldenAPIRunning(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true, cancelWait: 50 * time.Millisecond})
	prefix, _ := p.env.SeedNodes(t, 6)
	g := &goldenRun{t: t, url: p.api.URL, prefix: prefix, subst: []string{prefix, "<prefix>", p.project, "<project>"}}
	alice := p.token(t, "alice")
	_, raw := g.call("running_create_202", "POST", "/v1/batches", alice, `{"labels":["golden=run"],"selector":"`+selector(prefix)+`","concurrency":2}`)
	id := idOf(t, raw)
	g.call("running_get_200", "GET", "/v1/batches/"+id, alice, "")
	g.call("running_retry_409", "POST", "/v1/batches/"+id+":retry", alice, "")
	g.call("running_revert_409", "POST", "/v1/batches/"+id+":revert", alice, "")
	g.call("running_cancel_202", "POST", "/v1/batches/"+id+":cancel", alice, `{"reason":"golden <test> & more"}`)
	g.call("running_cancel_again_202", "POST", "/v1/batches/"+id+":cancel", alice, "")
	g.call("running_history_200", "GET", "/v1/batches", alice, "")

	failing := newPipeline(t, options{noDeliverer: true, publisher: func(next batch.Publisher) batch.Publisher { return halfPublisher{next} }})
	g2 := &goldenRun{t: t, url: failing.api.URL, prefix: prefix, subst: g.subst}
	g2.call("create_publish_failed_503", "POST", "/v1/batches", failing.token(t, "alice"), `{"labels":["golden=pub"],"selector":"`+selector(prefix)+`","concurrency":2}`)
}

// TestGoldenRateLimits records the 429 answers of both per-user limits,
// on a handler whose limiters run on a fixed clock (so Retry-After is
// exact) and are spent before the request.
func TestGoldenRateLimits(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true})
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	batches := ratelimit.New(ratelimit.Config{PerMinute: 30, Burst: 1, Now: clock})
	previews := ratelimit.New(ratelimit.Config{PerMinute: 30, Burst: 1, Name: ratelimit.PreviewName, What: "previews", Now: clock})
	const who = "alice@example.com"
	batches.Allow(who)
	previews.Allow(who)
	h := &batch.Handler{Store: p.store, Kube: p.kube, Protection: change.DefaultProtection(), RateLimit: batches, PreviewLimit: previews}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Subject: who, Email: who})))
	}))
	t.Cleanup(srv.Close)
	g := &goldenRun{t: t, url: srv.URL}
	g.call("create_rate_limited_429", "POST", "/v1/batches", "", `{"labels":["a=b"],"all":true}`)
	g.call("preview_rate_limited_429", "POST", "/v1/batches:preview", "", `{"labels":["a=b"],"all":true}`)
	g.call("create_dry_run_rate_limited_429", "POST", "/v1/batches", "", `{"labels":["a=b"],"all":true,"dry_run":true}`)
	g.call("seed_rate_limited_429", "POST", "/api/v1/nodes/labels/batch-add", "", `{"nodes":["n1"],"labels":{"a":"b"}}`)
}
