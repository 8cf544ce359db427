package batch_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/functions/batch"
)

// nodes reads the seeded nodes of prefix from the API server (directly, not
// through the proxy).
func (p *pipeline) nodes(t *testing.T, prefix string) map[string]corev1.Node {
	t.Helper()
	list, err := p.kube.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: harness.TestLabel + "=" + prefix})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	m := make(map[string]corev1.Node, len(list.Items))
	for _, n := range list.Items {
		m[n.Name] = n
	}
	return m
}

func hasTaint(n corev1.Node, key string, effect corev1.TaintEffect) (corev1.Taint, bool) {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return t, true
		}
	}
	return corev1.Taint{}, false
}

// checkResults checks that every node has exactly one result and that they
// are all in state want.
func checkResults(t *testing.T, st status, names []string, want string) {
	t.Helper()
	var got []string
	for _, r := range st.Results {
		got = append(got, r.Node)
		if string(r.State) != want {
			t.Errorf("node %s result state = %s (%s), want %s", r.Node, r.State, r.Reason, want)
		}
	}
	if diff := cmp.Diff(names, got); diff != "" {
		t.Errorf("result documents (-want +got):\n%s", diff)
	}
}

// TestLabelAndTaint500 labels 500 nodes, adds a taint and removes it, end to
// end, and checks every node through the API server and the exact counts.
func TestLabelAndTaint500(t *testing.T) {
	p := newPipeline(t, options{})
	prefix, names := p.env.SeedNodes(t, 500)
	before := p.nodes(t, prefix)
	tok := p.token(t, "alice")
	sel := harness.TestLabel + "=" + prefix

	c := p.submit(t, tok, map[string]any{"labels": []string{"team=ml", "x-"}, "selector": sel, "concurrency": 20, "max_nodes": 500})
	if c.Total != 500 || c.Concurrency != 20 {
		t.Errorf("created = %+v, want total 500, concurrency 20", c)
	}
	st := p.wait(t, tok, c.BatchID)
	if st.State != "succeeded" {
		t.Fatalf("label batch state = %s (%s), want succeeded; counts %v failures %v", st.State, st.Reason, st.Counts, st.Failures)
	}
	wantCounts(t, st, map[string]int{"succeeded": 500})
	checkResults(t, st, names, "succeeded")
	for name, n := range p.nodes(t, prefix) {
		if n.Labels["team"] != "ml" {
			t.Errorf("node %s label team = %q, want ml", name, n.Labels["team"])
		}
		if _, ok := n.Labels["x"]; ok {
			t.Errorf("node %s still has label x", name)
		}
		for k, v := range before[name].Labels {
			if k != "x" && k != "team" && n.Labels[k] != v {
				t.Errorf("node %s label %s = %q, want untouched %q", name, k, n.Labels[k], v)
			}
		}
	}
	if st.Timing == nil || st.Timing["nodes_per_second"].(float64) <= 0 {
		t.Errorf("timing = %v, want nodes_per_second > 0", st.Timing)
	}

	// Add a taint, then remove it.
	c = p.submit(t, tok, map[string]any{"taints": []string{"dedicated=ml:NoSchedule"}, "selector": sel, "max_nodes": 500})
	if c.Concurrency != 25 {
		t.Errorf("chosen concurrency for 500 nodes = %d, want 25 (ceil(500/20))", c.Concurrency)
	}
	st = p.wait(t, tok, c.BatchID)
	if st.State != "succeeded" {
		t.Fatalf("taint batch state = %s, want succeeded; counts %v failures %v", st.State, st.Counts, st.Failures)
	}
	wantCounts(t, st, map[string]int{"succeeded": 500})
	for name, n := range p.nodes(t, prefix) {
		if tn, ok := hasTaint(n, "dedicated", corev1.TaintEffectNoSchedule); !ok || tn.Value != "ml" {
			t.Errorf("node %s taints = %v, want dedicated=ml:NoSchedule", name, n.Spec.Taints)
		}
		if got, want := len(n.Spec.Taints), len(before[name].Spec.Taints)+1; got != want {
			t.Errorf("node %s has %d taints, want %d (the seeded ones kept)", name, got, want)
		}
	}
	c = p.submit(t, tok, map[string]any{"taints": []string{"dedicated:NoSchedule-"}, "selector": sel, "concurrency": 50, "max_nodes": 500})
	st = p.wait(t, tok, c.BatchID)
	if st.State != "succeeded" {
		t.Fatalf("untaint batch state = %s, want succeeded; counts %v failures %v", st.State, st.Counts, st.Failures)
	}
	wantCounts(t, st, map[string]int{"succeeded": 500})
	for name, n := range p.nodes(t, prefix) {
		if _, ok := hasTaint(n, "dedicated", corev1.TaintEffectNoSchedule); ok {
			t.Errorf("node %s still has taint dedicated:NoSchedule", name)
		}
		if diff := cmp.Diff(before[name].Spec.Taints, n.Spec.Taints); diff != "" {
			t.Errorf("node %s taints after add+remove (-before +after):\n%s", name, diff)
		}
	}
}

// TestDuplicateDelivery pushes every event twice: same node state, same
// counts, one result per node.
func TestDuplicateDelivery(t *testing.T) {
	p := newPipeline(t, options{duplicate: true})
	prefix, names := p.env.SeedNodes(t, 60)
	tok := p.token(t, "erin")
	sel := harness.TestLabel + "=" + prefix
	var ids []string
	for _, body := range []map[string]any{
		{"labels": []string{"dup=yes"}, "selector": sel, "concurrency": 6, "confirm": 60},
		{"taints": []string{"dup=yes:PreferNoSchedule"}, "selector": sel, "concurrency": 6, "confirm": 60},
	} {
		c := p.submit(t, tok, body)
		ids = append(ids, c.BatchID)
		st := p.wait(t, tok, c.BatchID)
		if st.State != "succeeded" {
			t.Fatalf("state = %s, want succeeded; counts %v failures %v", st.State, st.Counts, st.Failures)
		}
		wantCounts(t, st, map[string]int{"succeeded": 60})
		checkResults(t, st, names, "succeeded")
		for _, r := range st.Results {
			if !r.Changed {
				t.Errorf("node %s changed = false, want true (its first delivery changed it)", r.Node)
			}
		}
	}
	// The second push of the last events may still be in flight when the
	// batch finishes: wait for all of them, then check again.
	wait.For(t.Context(), t, "the deliverer's 120th duplicate (every event twice)", func() error {
		n := p.push.Stats().Duplicates
		return wait.True(n >= 120, "%d duplicates pushed", n)
	})
	for _, id := range ids {
		st := p.wait(t, tok, id)
		wantCounts(t, st, map[string]int{"succeeded": 60})
		checkResults(t, st, names, "succeeded")
	}
	for name, n := range p.nodes(t, prefix) {
		if n.Labels["dup"] != "yes" {
			t.Errorf("node %s label dup = %q", name, n.Labels["dup"])
		}
		count := 0
		for _, tn := range n.Spec.Taints {
			if tn.Key == "dup" {
				count++
			}
		}
		if count != 1 {
			t.Errorf("node %s has %d dup taints, want 1: %v", name, count, n.Spec.Taints)
		}
	}
}

// TestOtherWriterTaintSurvives adds a taint with another client just before
// the batch's write of each node reaches the API server: the batch's write
// conflicts, re-reads, and keeps the other writer's taint. The hook is on
// the write, whatever its verb (an update, or a patch with a
// resourceVersion precondition), and whether or not the patcher read the
// node first.
func TestOtherWriterTaintSurvives(t *testing.T) {
	var p *pipeline
	var mu sync.Mutex
	raced := map[string]bool{}
	p = newPipeline(t, options{proxy: kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		node := kubeproxy.NodeName(r.URL.Path)
		if (r.Method != http.MethodPut && r.Method != http.MethodPatch) || node == "" {
			return nil
		}
		mu.Lock()
		first := !raced[node]
		raced[node] = true
		mu.Unlock()
		if !first {
			return nil
		}
		ctx := context.Background()
		n, err := p.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Errorf("other writer get %s: %v", node, err)
			return nil
		}
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "other-writer", Value: "v", Effect: corev1.TaintEffectNoExecute})
		if _, err := p.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{FieldManager: "other"}); err != nil {
			t.Errorf("other writer update %s: %v", node, err)
		}
		return nil
	}}})
	prefix, names := p.env.SeedNodes(t, 20)
	tok := p.token(t, "frank")
	c := p.submit(t, tok, map[string]any{"taints": []string{"batch=1:NoSchedule"}, "nodes": names, "concurrency": 4})
	st := p.wait(t, tok, c.BatchID)
	if st.State != "succeeded" {
		t.Fatalf("state = %s, want succeeded; failures %v", st.State, st.Failures)
	}
	conflicts := 0
	for _, r := range st.Results {
		conflicts += r.Conflicts
	}
	if conflicts < len(names) {
		t.Errorf("recorded conflicts = %d, want >= %d (every node raced)", conflicts, len(names))
	}
	for name, n := range p.nodes(t, prefix) {
		if _, ok := hasTaint(n, "other-writer", corev1.TaintEffectNoExecute); !ok {
			t.Errorf("node %s lost the other writer's taint: %v", name, n.Spec.Taints)
		}
		if _, ok := hasTaint(n, "batch", corev1.TaintEffectNoSchedule); !ok {
			t.Errorf("node %s lacks the batch's taint: %v", name, n.Spec.Taints)
		}
	}
}

// TestNodeDeletedMidBatch deletes a node the batch has not reached yet: that
// node fails with a clear reason, the rest succeed, partially_failed.
func TestNodeDeletedMidBatch(t *testing.T) {
	var p *pipeline
	var once sync.Once
	var victim string
	p = newPipeline(t, options{proxy: kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		if r.Method == http.MethodPatch || r.Method == http.MethodPut {
			once.Do(func() {
				if err := p.kube.CoreV1().Nodes().Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
					t.Errorf("delete %s: %v", victim, err)
				}
			})
		}
		return nil
	}}})
	_, names := p.env.SeedNodes(t, 30)
	// Concurrency 3: node 29 is the last of lane 2, never the first request.
	victim = names[29]
	tok := p.token(t, "dave")
	c := p.submit(t, tok, map[string]any{"labels": []string{"wave=2"}, "nodes": names, "concurrency": 3})
	st := p.wait(t, tok, c.BatchID)
	if st.State != "partially_failed" {
		t.Fatalf("state = %s, want partially_failed; counts %v", st.State, st.Counts)
	}
	wantCounts(t, st, map[string]int{"succeeded": 29, "failed": 1})
	for _, r := range st.Results {
		switch {
		case r.Node == victim:
			if r.State != "failed" || !strings.Contains(r.Reason, "not found") {
				t.Errorf("deleted node result = %s %q, want failed with a not-found reason", r.State, r.Reason)
			}
		case r.State != "succeeded":
			t.Errorf("node %s = %s %q, want succeeded", r.Node, r.State, r.Reason)
		}
	}
	if len(st.Failures) != 1 || st.Failures[0]["node"] != victim {
		t.Errorf("failures = %v, want only %s", st.Failures, victim)
	}
}

// TestConcurrencyCap puts latency on every API request and checks that the
// batch never has more than its cap of mutating requests in flight, and
// reaches it: a gate holds the first writes until one per lane is waiting,
// so the cap is reached by construction, not by the lanes' timing.
func TestConcurrencyCap(t *testing.T) {
	const cap = 4
	gate := kubeproxy.NewGate()
	t.Cleanup(gate.Open)
	p := newPipeline(t, options{proxy: kubeproxy.Options{Latency: 40 * time.Millisecond, Gate: gate}, duplicate: true})
	prefix, _ := p.env.SeedNodes(t, 48)
	tok := p.token(t, "erin")
	for _, body := range []map[string]any{
		{"labels": []string{"capped=yes"}, "selector": harness.TestLabel + "=" + prefix, "concurrency": cap},
		{"taints": []string{"capped=yes:NoSchedule"}, "selector": harness.TestLabel + "=" + prefix, "concurrency": cap},
	} {
		p.proxy.Reset()
		gate.CloseAfter(0)
		c := p.submit(t, tok, body)
		waitHeld(t, gate, cap)
		gate.Open()
		st := p.wait(t, tok, c.BatchID)
		if st.State != "succeeded" {
			t.Fatalf("state = %s, want succeeded; failures %v", st.State, st.Failures)
		}
		stats := p.proxy.Stats()
		if stats.MaxInFlight != cap {
			t.Errorf("%v: max mutating requests in flight = %d, want exactly the cap %d", body, stats.MaxInFlight, cap)
		}
		if got := len(stats.Mutations); got != 48 {
			t.Errorf("%v: mutated nodes = %d, want 48", body, got)
		}
	}
}

// TestInlineSmallBatch runs a batch of at most InlineMax nodes in-process:
// 200 with per-node results, recorded the same way.
func TestInlineSmallBatch(t *testing.T) {
	p := newPipeline(t, options{inlineMax: 5, noDeliverer: true})
	prefix, names := p.env.SeedNodes(t, 3)
	tok := p.token(t, "frank")
	var st status
	code, raw := p.do(t, http.MethodPost, "/v1/batches", tok, map[string]any{"labels": []string{"inline=yes"}, "nodes": names}, &st)
	if code != http.StatusOK {
		t.Fatalf("POST = %d %s, want 200", code, raw)
	}
	if st.State != "succeeded" || st.Total != 3 {
		t.Fatalf("inline batch = %s total %d, want succeeded 3", st.State, st.Total)
	}
	checkResults(t, st, names, "succeeded")
	for _, r := range st.Results {
		if r.After["label:inline"] == nil || *r.After["label:inline"] != "yes" || r.Before["label:inline"] != nil {
			t.Errorf("node %s before/after = %v/%v, want absent -> yes", r.Node, r.Before, r.After)
		}
	}
	for name, n := range p.nodes(t, prefix) {
		if n.Labels["inline"] != "yes" {
			t.Errorf("node %s label inline = %q", name, n.Labels["inline"])
		}
	}
	// Recorded the same way: GET answers the same batch.
	var again status
	if code, raw := p.do(t, http.MethodGet, "/v1/batches/"+st.BatchID, tok, nil, &again); code != http.StatusOK || again.State != "succeeded" {
		t.Fatalf("GET inline batch = %d %s", code, raw)
	}
	wantCounts(t, again, map[string]int{"succeeded": 3})
}

// TestSeedEndpoints drives the seed's four endpoints with the seed's bodies.
func TestSeedEndpoints(t *testing.T) {
	p := newPipeline(t, options{inlineMax: 5})
	prefix, names := p.env.SeedNodes(t, 12)
	tok := p.token(t, "grace")

	// labels/batch-add-progress: 202 {task_id} at once.
	var c struct {
		TaskID string `json:"task_id"`
	}
	code, raw := p.do(t, http.MethodPost, "/api/v1/nodes/labels/batch-add-progress", tok, map[string]any{"nodes": names, "labels": map[string]string{"seed": "one", "tier": "b"}}, &c)
	if code != http.StatusAccepted || c.TaskID == "" {
		t.Fatalf("labels/batch-add-progress = %d %s, want 202 with task_id", code, raw)
	}
	if st := p.wait(t, tok, c.TaskID); st.State != "succeeded" {
		t.Fatalf("labels batch = %s, want succeeded", st.State)
	}
	// taints/batch-add: waits and answers the result.
	var st status
	code, raw = p.do(t, http.MethodPost, "/api/v1/nodes/taints/batch-add", tok, map[string]any{"nodes": names, "taints": []map[string]string{{"key": "seed", "value": "t", "effect": "NoSchedule"}}}, &st)
	if code != http.StatusOK || st.State != "succeeded" {
		t.Fatalf("taints/batch-add = %d %s, want 200 succeeded", code, raw)
	}
	// labels/batch-add remove, inline (small).
	code, raw = p.do(t, http.MethodPost, "/api/v1/nodes/labels/batch-add", tok, map[string]any{"nodes": names[:2], "labels": map[string]string{"tier": ""}, "operation": "remove"}, &st)
	if code != http.StatusOK || st.State != "succeeded" {
		t.Fatalf("labels/batch-add remove = %d %s, want 200 succeeded", code, raw)
	}
	// taints/batch-add-progress remove.
	code, raw = p.do(t, http.MethodPost, "/api/v1/nodes/taints/batch-add-progress", tok, map[string]any{"nodes": names, "taints": []map[string]string{{"key": "seed", "effect": "NoSchedule"}}, "operation": "remove"}, &c)
	if code != http.StatusAccepted {
		t.Fatalf("taints/batch-add-progress = %d %s, want 202", code, raw)
	}
	if st := p.wait(t, tok, c.TaskID); st.State != "succeeded" {
		t.Fatalf("untaint batch = %s, want succeeded", st.State)
	}
	for name, n := range p.nodes(t, prefix) {
		wantTier := "b"
		if name == names[0] || name == names[1] {
			wantTier = ""
		}
		if n.Labels["seed"] != "one" || n.Labels["tier"] != wantTier {
			t.Errorf("node %s labels seed=%q tier=%q, want one, %q", name, n.Labels["seed"], n.Labels["tier"], wantTier)
		}
		if _, ok := hasTaint(n, "seed", corev1.TaintEffectNoSchedule); ok {
			t.Errorf("node %s still has taint seed:NoSchedule", name)
		}
	}
}

// TestOwnerAndIdempotency: only the owner or an admin sees a batch; the same
// owner and idempotency key give the same batch.
func TestOwnerAndIdempotency(t *testing.T) {
	p := newPipeline(t, options{})
	_, names := p.env.SeedNodes(t, 8)
	alice, mallory, admin := p.token(t, "alice"), p.token(t, "mallory"), p.token(t, "root", "admin")
	body := map[string]any{"labels": []string{"idem=1"}, "nodes": names, "idempotency_key": "nightly-2026-11-27"}
	c1 := p.submit(t, alice, body)
	var c2 struct {
		BatchID  string `json:"batch_id"`
		Existing bool   `json:"existing"`
	}
	if code, raw := p.do(t, http.MethodPost, "/v1/batches", alice, body, &c2); code != http.StatusOK || c2.BatchID != c1.BatchID || !c2.Existing {
		t.Fatalf("repeat with the same key = %d %s, want 200 with batch %s", code, raw, c1.BatchID)
	}
	// Another owner with the same key gets a batch of their own.
	c3 := p.submit(t, mallory, body)
	if c3.BatchID == c1.BatchID {
		t.Fatalf("another owner's key reused batch %s", c1.BatchID)
	}
	p.wait(t, alice, c1.BatchID)
	if code, raw := p.do(t, http.MethodGet, "/v1/batches/"+c1.BatchID, mallory, nil, nil); code != http.StatusNotFound {
		t.Errorf("GET someone else's batch = %d %s, want 404", code, raw)
	}
	if code, raw := p.do(t, http.MethodGet, "/v1/batches/"+c1.BatchID, admin, nil, nil); code != http.StatusOK {
		t.Errorf("admin GET = %d %s, want 200", code, raw)
	}
	if code, _ := p.do(t, http.MethodGet, "/v1/batches/"+c1.BatchID, "not-a-token", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("GET with a bad token = %d, want 401", code)
	}
	// Ids that are not batch ids answer 400 (TestBatchIDValidated).
	for _, id := range []string{"no-such-batch", "..", "UPPER"} {
		if code, _ := p.do(t, http.MethodGet, "/v1/batches/"+id, alice, nil, nil); code != http.StatusNotFound {
			t.Errorf("GET batch %q = %d, want 404", id, code)
		}
	}
}

// TestDeadLetter makes one node's updates fail with 503 every time: after the
// deliverer's attempts it is dead-lettered, recorded failed, and the batch
// still finishes.
func TestDeadLetter(t *testing.T) {
	var victim string
	p := newPipeline(t, options{maxAttempts: 3, proxy: kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		if r.Method != http.MethodGet && kubeproxy.NodeName(r.URL.Path) == victim {
			return &kubeproxy.Fault{Status: http.StatusServiceUnavailable}
		}
		return nil
	}}})
	_, names := p.env.SeedNodes(t, 10)
	victim = names[4]
	tok := p.token(t, "heidi")
	c := p.submit(t, tok, map[string]any{"labels": []string{"dl=1"}, "nodes": names, "concurrency": 2})
	st := p.wait(t, tok, c.BatchID)
	if st.State != "partially_failed" {
		t.Fatalf("state = %s, want partially_failed; counts %v", st.State, st.Counts)
	}
	wantCounts(t, st, map[string]int{"succeeded": 9, "failed": 1})
	for _, r := range st.Results {
		if r.Node == victim && (r.State != "failed" || !strings.Contains(r.Reason, "delivery attempts exhausted")) {
			t.Errorf("victim result = %s %q, want failed: delivery attempts exhausted", r.State, r.Reason)
		}
	}
}

// TestBadInputs: every refused request answers 4xx naming the field, and
// nothing is published or changed.
func TestBadInputs(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true})
	prefix, names := p.env.SeedNodes(t, 4)
	tok := p.token(t, "ivan")
	before := p.nodes(t, prefix)
	sel := harness.TestLabel + "=" + prefix
	tests := []struct {
		name      string
		path      string
		body      string
		wantCode  int
		wantField string
	}{
		{"not json", "/v1/batches", `labels=a`, 400, ""},
		{"unknown field", "/v1/batches", `{"labels":["a=b"],"all":true,"nodez":["x"]}`, 400, "nodez"},
		{"two values", "/v1/batches", `{"labels":["a=b"],"all":true}{}`, 400, ""},
		{"wrong type", "/v1/batches", `{"labels":"a=b","all":true}`, 400, "labels"},
		{"too large", "/v1/batches", `{"labels":["a=b"],"nodes":["` + strings.Repeat("n", 2<<20) + `"]}`, 413, ""},
		{"bad label key", "/v1/batches", `{"labels":["bad key=x"],"selector":"` + sel + `"}`, 422, "labels[0]"},
		{"bad label value", "/v1/batches", `{"labels":["ok=` + strings.Repeat("v", 70) + `"],"selector":"` + sel + `"}`, 422, "labels[0]"},
		{"protected key", "/v1/batches", `{"labels":["node.kubernetes.io/exclude-from-external-load-balancers=true"],"selector":"` + sel + `"}`, 422, "labels[0].key"},
		{"bad taint effect", "/v1/batches", `{"taints":["a=b:Never"],"selector":"` + sel + `"}`, 422, "taints[0]"},
		{"no change", "/v1/batches", `{"selector":"` + sel + `"}`, 422, "labels"},
		{"no target", "/v1/batches", `{"labels":["a=b"]}`, 422, "nodes"},
		{"bad node name", "/v1/batches", `{"labels":["a=b"],"nodes":["` + names[0] + `","UPPER"]}`, 422, "nodes[1]"},
		{"unknown node", "/v1/batches", `{"labels":["a=b"],"nodes":["` + names[0] + `","no-such-node-x"]}`, 422, "nodes[1]"},
		{"bad selector", "/v1/batches", `{"labels":["a=b"],"selector":"a=(b"}`, 422, "selector"},
		{"selector matches nothing", "/v1/batches", `{"labels":["a=b"],"selector":"` + sel + `-none"}`, 422, "selector"},
		{"concurrency too high", "/v1/batches", `{"labels":["a=b"],"selector":"` + sel + `","concurrency":100000}`, 422, "concurrency"},
		{"bad max_failures", "/v1/batches", `{"labels":["a=b"],"selector":"` + sel + `","max_failures":"many"}`, 422, "max_failures"},
		{"seed labels bad op", "/api/v1/nodes/labels/batch-add", `{"nodes":["` + names[0] + `"],"labels":{"a":"b"},"operation":"flip"}`, 422, "operation"},
		{"seed taint bad effect", "/api/v1/nodes/taints/batch-add-progress", `{"nodes":["` + names[0] + `"],"taints":[{"key":"a","effect":"Maybe"}]}`, 422, "taints[0].effect"},
		{"seed unknown node", "/api/v1/nodes/labels/batch-add-progress", `{"nodes":["nope-nope"],"labels":{"a":"b"}}`, 422, "nodes[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, raw := p.do(t, http.MethodPost, tt.path, tok, tt.body, nil)
			if code != tt.wantCode {
				t.Fatalf("POST %s = %d %s, want %d", tt.path, code, raw, tt.wantCode)
			}
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
					Fields  []struct {
						Field, Value, Reason string
					} `json:"fields"`
				} `json:"error"`
			}
			if err := jsonUnmarshal(raw, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("error body %s is not {error:{code,message}}: %v", raw, err)
			}
			if tt.wantField == "" {
				return
			}
			var fields []string
			for _, f := range e.Error.Fields {
				fields = append(fields, f.Field)
			}
			if !slices.Contains(fields, tt.wantField) {
				t.Errorf("error fields = %v, want %s named; body %s", fields, tt.wantField, raw)
			}
		})
	}
	// Nothing published: a probe subscription created before the requests
	// would hold any message; publish a sentinel and check it is the first.
	assertNothingPublished(t, p)
	for name, n := range p.nodes(t, prefix) {
		if n.ResourceVersion != before[name].ResourceVersion {
			t.Errorf("node %s changed (resourceVersion %s -> %s)", name, before[name].ResourceVersion, n.ResourceVersion)
		}
	}
}

// TestPublishFailsMidway: when publishing fails part-way the request answers
// 503 and the batch is recorded failed, with the reason and a cancel, so the
// events already published record their nodes cancelled instead of patching.
func TestPublishFailsMidway(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true, publisher: func(next batch.Publisher) batch.Publisher { return halfPublisher{next} }})
	_, names := p.env.SeedNodes(t, 10)
	tok := p.token(t, "judy")
	code, raw := p.do(t, http.MethodPost, "/v1/batches", tok, map[string]any{"labels": []string{"half=1"}, "nodes": names}, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(raw), "injected: pubsub unavailable") {
		t.Fatalf("POST = %d %s, want 503 naming the publish error", code, raw)
	}
	batches, err := p.fs.Collection("batches").Documents(context.Background()).GetAll()
	if err != nil || len(batches) != 1 {
		t.Fatalf("batches = %d, %v; want 1", len(batches), err)
	}
	var st status
	if code, raw := p.do(t, http.MethodGet, "/v1/batches/"+batches[0].Ref.ID, tok, nil, &st); code != http.StatusOK {
		t.Fatalf("GET = %d %s", code, raw)
	}
	if st.State != "failed" || !strings.Contains(st.Reason, "publishing the node events failed") {
		t.Errorf("batch = %s %q, want failed with the publish reason", st.State, st.Reason)
	}
	var b map[string]any
	if err := batches[0].DataTo(&b); err != nil || b["cancel"] == nil {
		t.Errorf("batch document cancel = %v (%v), want a recorded cancel", b["cancel"], err)
	}
}
