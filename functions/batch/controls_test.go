package batch_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/model"
)

func selector(prefix string) string { return harness.TestLabel + "=" + prefix }

func sumCounts(c map[string]int) int {
	return c["succeeded"] + c["failed"] + c["skipped"] + c["cancelled"]
}

// TestCancelMidBatch cancels a 1,000-node batch at cap 5 part-way: the
// proxy in front of the API server must see no mutation start after the
// cancel was acknowledged, every node must have exactly one result, the
// counts add up, and exactly the nodes counted succeeded were patched.
// "Part-way" is by construction, not by timing: a gate lets 60 patches
// through and holds each lane's next one until the cancel is recorded, so
// exactly 60 + 5 nodes succeed and the rest are cancelled.
func TestCancelMidBatch(t *testing.T) {
	const total, cap, before = 1000, 5, 60
	gate := newGate(t, before)
	p := newPipeline(t, options{proxy: kubeproxy.Options{Latency: 20 * time.Millisecond, Gate: gate}})
	prefix, names := p.env.SeedNodes(t, total)
	alice, bob := p.token(t, "alice"), p.token(t, "bob")
	c := p.submit(t, alice, map[string]any{"labels": []string{"cancel=" + prefix}, "selector": selector(prefix), "concurrency": cap, "max_nodes": total})

	waitHeld(t, gate, cap)
	if code, _ := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":cancel", bob, nil, nil); code != http.StatusNotFound {
		t.Errorf("cancel by another user = %d, want 404", code)
	}
	var ack batch.Cancelled
	a := cancelWhileHeld(t, p.store, c.BatchID, gate, func() (int, []byte, error) {
		return p.send(http.MethodPost, "/v1/batches/"+c.BatchID+":cancel", alice, `{"reason":"test"}`, &ack)
	})
	acked := a.at
	if a.code != http.StatusOK || !ack.Settled || ack.Cancel == nil {
		t.Fatalf("cancel = %d %s, want 200 settled with the cancel", a.code, a.raw)
	}
	st := p.wait(t, alice, c.BatchID)

	stats := p.proxy.Stats()
	late := 0
	for _, r := range stats.Log {
		if !r.Start.Before(acked) {
			late++
			if late <= 3 {
				t.Errorf("mutation %s %s started %v after the cancel was acknowledged", r.Method, r.Path, r.Start.Sub(acked))
			}
		}
	}
	if late > 0 {
		t.Errorf("%d mutations started after the cancel was acknowledged, want 0", late)
	}
	if st.State != "cancelled" {
		t.Errorf("final state = %s %v, want cancelled", st.State, st.Counts)
	}
	// The patches through the gate and the ones it held succeed; every
	// lane's next node sees the cancel.
	wantCounts(t, st, map[string]int{"succeeded": before + cap, "cancelled": total - before - cap})
	checkOneResultEach(t, st, names)
	patched := map[string]bool{}
	for n, k := range stats.Mutations {
		patched[n] = true
		if k != 1 {
			t.Errorf("node %s mutated %d times, want 1", n, k)
		}
	}
	for _, r := range st.Results {
		if want := r.State == model.NodeSucceeded; patched[r.Node] != want {
			t.Errorf("node %s: state %s, patched %v", r.Node, r.State, patched[r.Node])
		}
	}
	if st.Counts["succeeded"] != len(patched) {
		t.Errorf("succeeded = %d, nodes patched = %d; want equal", st.Counts["succeeded"], len(patched))
	}
	if st.Timing == nil || st.Timing["end"] == nil {
		t.Errorf("timing = %v, want figures with an end", st.Timing)
	}

	// Idempotent: a second cancel changes nothing and says cancelled.
	var again batch.Cancelled
	if code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":cancel", alice, nil, &again); code != http.StatusOK || again.State != model.StateCancelled || !again.Cancel.RequestedAt.Equal(ack.Cancel.RequestedAt) {
		t.Errorf("second cancel = %d %s, want 200 cancelled with the first cancel", code, raw)
	}
}

func checkOneResultEach(t *testing.T, st status, names []string) {
	t.Helper()
	var got []string
	for _, r := range st.Results {
		got = append(got, r.Node)
	}
	if diff := cmp.Diff(names, got); diff != "" {
		t.Errorf("result documents (-want +got):\n%s", diff)
	}
}

// failNodes returns a proxy fault that answers 403 to mutations of the
// nodes in the set bad points to (none while it points to nothing).
func failNodes(bad *atomic.Pointer[map[string]bool]) func(r *http.Request) *kubeproxy.Fault {
	return func(r *http.Request) *kubeproxy.Fault {
		m := bad.Load()
		if r.Method == http.MethodGet || m == nil || !(*m)[kubeproxy.NodeName(r.URL.Path)] {
			return nil
		}
		return &kubeproxy.Fault{Status: http.StatusForbidden}
	}
}

// TestRetryFailed injects a permanent failure (403) on 50 of 150 nodes, then
// retries the failed nodes: exactly those 50 are patched again, the batch
// ends succeeded with exact counts, and each retried node keeps its first
// result in its history.
func TestRetryFailed(t *testing.T) {
	const total = 150
	var faulty atomic.Pointer[map[string]bool]
	p := newPipeline(t, options{proxy: kubeproxy.Options{Fault: failNodes(&faulty)}})
	prefix, names := p.env.SeedNodes(t, total)
	bad := map[string]bool{}
	for i := 0; i < total; i += 3 {
		bad[names[i]] = true
	}
	if len(bad) != 50 {
		t.Fatalf("bad nodes = %d, want 50", len(bad))
	}
	faulty.Store(&bad)
	alice := p.token(t, "alice")
	c := p.submit(t, alice, map[string]any{"labels": []string{"retry=" + prefix}, "taints": []string{"retry=yes:NoSchedule"}, "selector": selector(prefix), "concurrency": 5, "max_nodes": total})
	st := p.wait(t, alice, c.BatchID)
	if st.State != "partially_failed" {
		t.Fatalf("first attempt: state %s %v, want partially_failed", st.State, st.Counts)
	}
	wantCounts(t, st, map[string]int{"succeeded": 100, "failed": 50})

	faulty.Store(nil)
	p.proxy.Reset()
	if code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":retry", p.token(t, "bob"), nil, nil); code != http.StatusNotFound {
		t.Errorf("retry by another user = %d %s, want 404", code, raw)
	}
	var rt batch.Retried
	if code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":retry", alice, `{"include_cancelled":false}`, &rt); code != http.StatusAccepted || rt.Attempt != 2 || rt.Total != 50 {
		t.Fatalf("retry = %d %s, want 202 attempt 2 of 50 nodes", code, raw)
	}
	st = p.wait(t, alice, c.BatchID)
	if st.State != "succeeded" {
		t.Errorf("after retry: state %s, failures %v, want succeeded", st.State, st.Failures)
	}
	wantCounts(t, st, map[string]int{"succeeded": total})
	if len(st.Failures) != 0 {
		t.Errorf("failures after retry = %v, want none", st.Failures)
	}
	stats := p.proxy.Stats()
	retried := map[string]bool{}
	for n, k := range stats.Mutations {
		retried[n] = true
		if k != 1 {
			t.Errorf("node %s mutated %d times by the retry, want 1", n, k)
		}
	}
	if diff := cmp.Diff(bad, retried); diff != "" {
		t.Errorf("nodes the retry patched (-want +got):\n%s", diff)
	}
	checkOneResultEach(t, st, names)
	for _, r := range st.Results {
		switch {
		case bad[r.Node] && (r.Attempt != 2 || len(r.History) != 1 || r.History[0].State != model.NodeFailed || !r.Changed):
			t.Errorf("retried node %s: attempt %d changed %v history %+v, want attempt 2, changed, with the failed attempt 1 in history", r.Node, r.Attempt, r.Changed, r.History)
		case !bad[r.Node] && (r.Attempt != 1 || len(r.History) != 0):
			t.Errorf("node %s: attempt %d history %v, want attempt 1 only", r.Node, r.Attempt, r.History)
		}
	}
	if code, _ := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":retry", alice, nil, nil); code != http.StatusConflict {
		t.Errorf("retry with nothing failed = %d, want 409", code)
	}
	for n, node := range p.nodes(t, prefix) {
		if node.Labels["retry"] != prefix {
			t.Errorf("node %s label retry = %q, want %q", n, node.Labels["retry"], prefix)
		}
	}
}

type taintID struct{ Key, Value, Effect string }

func taintSet(ts []corev1.Taint) []taintID {
	out := make([]taintID, len(ts))
	for i, t := range ts {
		out[i] = taintID{t.Key, t.Value, string(t.Effect)}
	}
	slices.SortFunc(out, func(a, b taintID) int { return strings.Compare(a.Key+":"+a.Effect, b.Key+":"+b.Effect) })
	return out
}

// TestRevert changes labels and taints (adds, overwrites and removes), lets
// another writer change some nodes in between, then reverts: every other
// node is back to its labels and taints from before the batch; the nodes the
// other writer touched are skipped with the reason, and keep its values.
func TestRevert(t *testing.T) {
	const total = 60
	p := newPipeline(t, options{})
	prefix, names := p.env.SeedNodes(t, total)
	before := p.nodes(t, prefix)
	alice := p.token(t, "alice")
	c := p.submit(t, alice, map[string]any{
		"labels":   []string{"rv=one", "pool=changed"},
		"taints":   []string{"rv=yes:NoSchedule", "nvidia.com/gpu:NoSchedule-"},
		"selector": selector(prefix), "concurrency": 4, "max_nodes": total,
	})
	if st := p.wait(t, alice, c.BatchID); st.State != "succeeded" {
		t.Fatalf("batch: %s %v", st.State, st.Failures)
	}

	// Another writer: a label on nodes 1..5, a taint value on 11..15.
	ctx := context.Background()
	touched := map[string]string{}
	for i := 1; i <= 15; i++ {
		if i > 5 && i < 11 {
			continue
		}
		n, err := p.kube.CoreV1().Nodes().Get(ctx, names[i], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i <= 5 {
			n.Labels["rv"] = "other"
			touched[n.Name] = `label "rv"`
		} else {
			for j := range n.Spec.Taints {
				if n.Spec.Taints[j].Key == "rv" {
					n.Spec.Taints[j].Value = "other"
				}
			}
			touched[n.Name] = `taint "rv:NoSchedule"`
		}
		if _, err := p.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	between := p.nodes(t, prefix)

	if code, _ := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":revert", p.token(t, "bob"), nil, nil); code != http.StatusNotFound {
		t.Errorf("revert by another user = %d, want 404", code)
	}
	var rv batch.Created
	if code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":revert", alice, nil, &rv); code != http.StatusAccepted || rv.Reverts != c.BatchID || rv.Total != total {
		t.Fatalf("revert = %d %s, want 202 reverting %s with %d nodes", code, raw, c.BatchID, total)
	}
	st := p.wait(t, alice, rv.BatchID)
	if st.State != "succeeded" {
		t.Errorf("revert state = %s %v, want succeeded", st.State, st.Failures)
	}
	wantCounts(t, st, map[string]int{"succeeded": total - len(touched), "skipped": len(touched)})
	for _, r := range st.Results {
		why, other := touched[r.Node]
		switch {
		case other && (r.State != model.NodeSkipped || !strings.Contains(r.Reason, why) || !strings.Contains(r.Reason, `"other"`)):
			t.Errorf("node %s: %s %q, want skipped naming %s and the value found", r.Node, r.State, r.Reason, why)
		case !other && r.State != model.NodeSucceeded:
			t.Errorf("node %s: %s %q, want succeeded", r.Node, r.State, r.Reason)
		}
	}
	after := p.nodes(t, prefix)
	for _, n := range names {
		want := before[n]
		if _, other := touched[n]; other {
			want = between[n]
		}
		if diff := cmp.Diff(want.Labels, after[n].Labels); diff != "" {
			t.Errorf("node %s labels (-want +got):\n%s", n, diff)
		}
		if diff := cmp.Diff(taintSet(want.Spec.Taints), taintSet(after[n].Spec.Taints)); diff != "" {
			t.Errorf("node %s taints (-want +got):\n%s", n, diff)
		}
	}

	// A second revert is the same revert batch.
	var again batch.Created
	if code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":revert", alice, nil, &again); code != http.StatusOK || !again.Existing || again.BatchID != rv.BatchID {
		t.Errorf("second revert = %d %s, want 200 existing %s", code, raw, rv.BatchID)
	}
}

// TestMaxFailures stops a batch whose every node fails once 10 have failed.
func TestMaxFailures(t *testing.T) {
	const total, cap = 200, 2
	var faulty atomic.Pointer[map[string]bool]
	p := newPipeline(t, options{proxy: kubeproxy.Options{Fault: failNodes(&faulty)}})
	prefix, names := p.env.SeedNodes(t, total)
	all := map[string]bool{}
	for _, n := range names {
		all[n] = true
	}
	faulty.Store(&all)
	alice := p.token(t, "alice")
	c := p.submit(t, alice, map[string]any{"labels": []string{"mf=1"}, "selector": selector(prefix), "concurrency": cap, "max_failures": 10, "max_nodes": total})
	st := p.wait(t, alice, c.BatchID)
	if st.State != "failed" || !strings.Contains(st.Reason, "failure threshold") {
		t.Errorf("state %s reason %q, want failed by the failure threshold", st.State, st.Reason)
	}
	if f := st.Counts["failed"]; f < 10 || f > 10+cap {
		t.Errorf("failed = %d, want 10..%d (the threshold plus what was in flight)", f, 10+cap)
	}
	if got := sumCounts(st.Counts); got != total || st.Counts["cancelled"] != total-st.Counts["failed"] {
		t.Errorf("counts = %v, want %d in all, the rest cancelled", st.Counts, total)
	}
	if n := p.proxy.Stats().Faults; n > 10+cap {
		t.Errorf("patches attempted = %d, want at most %d", n, 10+cap)
	}
}

// TestHistory lists the caller's batches newest first, pages, filters by
// state, and hides other users' batches except from admins asking for all.
func TestHistory(t *testing.T) {
	p := newPipeline(t, options{})
	prefix, _ := p.env.SeedNodes(t, 6)
	alice, bob, admin := p.token(t, "alice"), p.token(t, "dave"), p.token(t, "root", "admin") // dave: another user who may patch nodes
	var mine []string
	for i := range 3 {
		c := p.submit(t, alice, map[string]any{"labels": []string{fmt.Sprintf("h%d=x", i)}, "selector": selector(prefix)})
		p.wait(t, alice, c.BatchID)
		mine = append(mine, c.BatchID)
	}
	theirs := p.submit(t, bob, map[string]any{"labels": []string{"hb=x"}, "selector": selector(prefix)}).BatchID
	p.wait(t, bob, theirs)
	slices.Reverse(mine) // newest first

	list := func(token, query string) ([]string, string) {
		t.Helper()
		var page batch.HistoryPage
		if code, raw := p.do(t, http.MethodGet, "/v1/batches"+query, token, nil, &page); code != http.StatusOK {
			t.Fatalf("GET /v1/batches%s = %d %s", query, code, raw)
		}
		var ids []string
		for _, b := range page.Batches {
			ids = append(ids, b.ID)
			if b.Done != b.Total || len(b.Nodes) != 0 {
				t.Errorf("summary %s: done %d of %d, nodes %v; want done and no node list", b.ID, b.Done, b.Total, b.Nodes)
			}
		}
		return ids, page.NextPageToken
	}
	got, _ := list(alice, "")
	if diff := cmp.Diff(mine, got); diff != "" {
		t.Errorf("alice's history (-want +got):\n%s", diff)
	}
	first, next := list(alice, "?limit=2")
	rest, end := list(alice, "?limit=2&page_token="+next)
	if diff := cmp.Diff(mine, append(first, rest...)); diff != "" || next == "" || end != "" {
		t.Errorf("two pages (-want +got):\n%s (tokens %q, %q)", diff, next, end)
	}
	if got, _ := list(alice, "?state=failed"); len(got) != 0 {
		t.Errorf("state=failed = %v, want none", got)
	}
	if got, _ := list(alice, "?state=succeeded"); len(got) != 3 {
		t.Errorf("state=succeeded = %v, want 3", got)
	}
	if got, _ := list(bob, ""); !slices.Equal(got, []string{theirs}) {
		t.Errorf("bob's history = %v, want only %s", got, theirs)
	}
	if code, _ := p.do(t, http.MethodGet, "/v1/batches?all=true", alice, nil, nil); code != http.StatusForbidden {
		t.Errorf("all=true by a user = %d, want 403", code)
	}
	if got, _ := list(admin, "?all=true"); !slices.Equal(got, append([]string{theirs}, mine...)) {
		t.Errorf("admin all=true = %v, want %v", got, append([]string{theirs}, mine...))
	}
	for _, q := range []string{"?state=bogus", "?limit=0", "?limit=101", "?page_token=bm90LWpzb24", "?page_token=!!", "?all=maybe"} {
		if code, _ := p.do(t, http.MethodGet, "/v1/batches"+q, alice, nil, nil); code != http.StatusBadRequest {
			t.Errorf("GET /v1/batches%s = %d, want 400", q, code)
		}
	}
}

// TestPreviewChangesNothing previews a change on 30 nodes, 10 of them
// already in the target state, then submits it as a dry run: the counts and
// per-node diffs are right and no node's resourceVersion moves.
func TestPreviewChangesNothing(t *testing.T) {
	const total = 30
	p := newPipeline(t, options{})
	prefix, names := p.env.SeedNodes(t, total)
	ctx := context.Background()
	for _, n := range names[:10] {
		patch := []byte(`{"metadata":{"labels":{"pv":"yes"}}}`)
		if _, err := p.kube.CoreV1().Nodes().Patch(ctx, n, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rvs := func() map[string]string {
		m := map[string]string{}
		for n, node := range p.nodes(t, prefix) {
			m[n] = node.ResourceVersion
		}
		return m
	}
	start := rvs()
	alice := p.token(t, "alice")
	body := map[string]any{"labels": []string{"pv=yes"}, "taints": []string{"pv=yes:NoSchedule"}, "selector": selector(prefix)}

	var pv batch.Preview
	if code, raw := p.do(t, http.MethodPost, "/v1/batches:preview?page_size=20", alice, body, &pv); code != http.StatusOK {
		t.Fatalf("preview = %d %s", code, raw)
	}
	if pv.Total != total || pv.WouldChange != total || pv.AlreadyInTarget != 0 || len(pv.Nodes) != 20 || pv.NextPageToken == "" {
		t.Errorf("preview = total %d, would change %d, already %d, %d nodes, next %q; want 30, 30, 0, 20 and a next page", pv.Total, pv.WouldChange, pv.AlreadyInTarget, len(pv.Nodes), pv.NextPageToken)
	}
	yes := "yes"
	want := []batchKeyChange{{Key: "label:pv", Before: &yes, After: &yes}, {Key: "taint:pv:NoSchedule", After: &yes}}
	if diff := cmp.Diff(want, keyChanges(pv.Nodes[0])); diff != "" {
		t.Errorf("preview of %s (-want +got):\n%s", pv.Nodes[0].Node, diff)
	}
	if len(pv.ServerDryRun) == 0 {
		t.Errorf("preview ran no server-side dry run")
	}
	for _, c := range pv.ServerDryRun {
		if !c.OK || !c.Changed {
			t.Errorf("server dry run of %s = %+v, want ok and changed", c.Node, c)
		}
	}

	// Labels only: the 10 pre-labelled nodes are already in the target.
	var pl batch.Preview
	if code, raw := p.do(t, http.MethodPost, "/v1/batches:preview", alice, map[string]any{"labels": []string{"pv=yes"}, "selector": selector(prefix)}, &pl); code != http.StatusOK {
		t.Fatalf("preview = %d %s", code, raw)
	}
	if pl.WouldChange != 20 || pl.AlreadyInTarget != 10 || len(pl.Nodes) != total {
		t.Errorf("labels-only preview = would change %d, already %d, %d nodes; want 20, 10, 30", pl.WouldChange, pl.AlreadyInTarget, len(pl.Nodes))
	}

	body["dry_run"] = true
	c := p.submit(t, alice, body)
	if c.Preview == nil || c.Preview.WouldChange != total {
		t.Errorf("dry-run submit preview = %+v, want %d would change", c.Preview, total)
	}
	st := p.wait(t, alice, c.BatchID)
	if st.State != "succeeded" {
		t.Errorf("dry-run batch = %s %v", st.State, st.Failures)
	}
	if diff := cmp.Diff(start, rvs()); diff != "" {
		t.Errorf("resourceVersions after preview and dry run (-want +got):\n%s", diff)
	}
}

type batchKeyChange struct {
	Key           string
	Before, After *string
}

func keyChanges(n batch.PreviewNode) []batchKeyChange {
	var out []batchKeyChange
	for _, c := range n.Changes {
		out = append(out, batchKeyChange{c.Key, c.Before, c.After})
	}
	return out
}
