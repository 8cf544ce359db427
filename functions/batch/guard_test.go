package batch_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodebatch/nodebatch/emulators/seed"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/impact"
)

// seedWorkloads binds seed's pods (one of each kind) to nodes, in a fresh
// namespace, deleted on cleanup.
func seedWorkloads(t *testing.T, p *pipeline, nodes []string) string {
	t.Helper()
	ns := "w" + p.env.ProjectID(t)[4:12]
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := seed.DeleteWorkloads(ctx, p.kube, ns); err != nil {
			t.Errorf("delete workloads: %v", err)
		}
	})
	if err := seed.Workloads(t.Context(), p.kube, seed.WorkloadOptions{Namespace: ns, Nodes: nodes, PodsPerNode: 8}); err != nil {
		t.Fatalf("seed workloads: %v", err)
	}
	return ns
}

// evicted is what the preview must list for a node's seeded pods, by kind:
// the seconds after which each evicted kind goes.
func evicted(ns string, nodes []string, kinds map[seed.Kind]int64) []impact.NodeImpact {
	var out []impact.NodeImpact
	for _, n := range nodes {
		ni := impact.NodeImpact{Node: n}
		for j := range 8 {
			k := seed.PodKind(j)
			after, ok := kinds[k]
			if !ok {
				continue
			}
			p := impact.Pod{Namespace: ns, Name: seed.PodName(n, j), AfterSeconds: after, DaemonSet: k == seed.KindAgent}
			switch k {
			case seed.KindWeb:
				p.Budgets = []string{ns + "/web"}
			case seed.KindDB:
				p.Budgets = []string{ns + "/db"}
			}
			ni.Pods = append(ni.Pods, p)
		}
		slices.SortFunc(ni.Pods, func(a, b impact.Pod) int {
			if a.Name < b.Name {
				return -1
			}
			return 1
		})
		out = append(out, ni)
	}
	return out
}

// TestPreviewImpact previews taints on three nodes, two of them running one
// pod of each seeded kind: a NoExecute taint lists exactly the pods that do
// not tolerate it (exact match, Exists, empty key, the wrong effect,
// tolerationSeconds) and the budget it breaks; a NoSchedule one evicts
// nothing and says so.
func TestPreviewImpact(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true})
	prefix, names := p.env.SeedNodes(t, 3)
	ns := seedWorkloads(t, p, names[:2])
	alice := p.token(t, "alice")
	slow := int64(seed.SlowSeconds)
	tests := []struct {
		name   string
		taint  string
		kinds  map[seed.Kind]int64 // evicted kinds → after seconds
		budget map[string]int      // budget → evictions
	}{
		{
			name:   "NoExecute, tolerated value",
			taint:  seed.DrainKey + "=" + seed.DrainValue + ":NoExecute",
			kinds:  map[seed.Kind]int64{seed.KindAgent: 0, seed.KindWeb: 0, seed.KindSlow: slow, seed.KindDB: 0, seed.KindNoSchedule: 0},
			budget: map[string]int{"db": 2, "web": 2},
		},
		{
			name:   "NoExecute, other value",
			taint:  seed.DrainKey + "=other:NoExecute",
			kinds:  map[seed.Kind]int64{seed.KindAgent: 0, seed.KindWeb: 0, seed.KindExact: 0, seed.KindSlow: slow, seed.KindDB: 0, seed.KindNoSchedule: 0},
			budget: map[string]int{"db": 2, "web": 2},
		},
		{
			name:   "NoExecute, other key",
			taint:  "example.com/maintenance:NoExecute",
			kinds:  map[seed.Kind]int64{seed.KindAgent: 0, seed.KindWeb: 0, seed.KindExact: 0, seed.KindExists: 0, seed.KindSlow: 0, seed.KindDB: 0, seed.KindNoSchedule: 0},
			budget: map[string]int{"db": 2, "web": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pv batch.Preview
			body := map[string]any{"taints": []string{tt.taint}, "selector": selector(prefix)}
			if code, raw := p.do(t, http.MethodPost, "/v1/batches:preview", alice, body, &pv); code != http.StatusOK {
				t.Fatalf("preview = %d %s", code, raw)
			}
			im := pv.Impact
			if im == nil {
				t.Fatalf("preview has no impact (error %q)", pv.ImpactError)
			}
			if diff := cmp.Diff(evicted(ns, names[:2], tt.kinds), im.Nodes); diff != "" {
				t.Errorf("evicted pods (-want +got):\n%s", diff)
			}
			perNode := len(tt.kinds)
			if !im.NoExecute || im.TaintedNodes != 3 || im.NodesWithEvictions != 2 || im.Evictions != 2*perNode || im.DaemonSetPods != 2 {
				t.Errorf("impact = %+v, want 3 tainted nodes, %d evictions on 2, 2 DaemonSet pods", im, 2*perNode)
			}
			want := []impact.Budget{
				{Namespace: ns, Name: "db", DisruptionsAllowed: seed.DBDisruptionsAllowed, Evictions: tt.budget["db"]},
				{Namespace: ns, Name: "web", DisruptionsAllowed: seed.WebDisruptionsAllowed, Evictions: tt.budget["web"], Violated: true},
			}
			var mine []impact.Budget
			for _, b := range im.Budgets {
				if b.Namespace == ns {
					mine = append(mine, b)
				}
			}
			if diff := cmp.Diff(want, mine); diff != "" || im.BudgetsViolated < 1 {
				t.Errorf("budgets (-want +got), %d violated:\n%s", im.BudgetsViolated, diff)
			}
		})
	}

	// A dry run changes nothing: no confirmation, and its answer carries
	// the same impact.
	c := p.submit(t, alice, map[string]any{"taints": []string{tests[0].taint}, "selector": selector(prefix), "dry_run": true})
	if c.Preview == nil || c.Preview.Impact == nil || c.Preview.Impact.Evictions != 10 {
		t.Errorf("dry-run answer preview = %+v, want an impact of 10 evictions", c.Preview)
	}

	var pv batch.Preview
	body := map[string]any{"taints": []string{seed.DrainKey + "=x:NoSchedule"}, "selector": selector(prefix)}
	if code, raw := p.do(t, http.MethodPost, "/v1/batches:preview", alice, body, &pv); code != http.StatusOK {
		t.Fatalf("preview = %d %s", code, raw)
	}
	if pv.Impact == nil || pv.Impact.NoExecute || pv.Impact.Evictions != 0 || len(pv.Impact.Notes) != 1 {
		t.Errorf("NoSchedule impact = %+v, want no eviction and a note", pv.Impact)
	}
}

// refusal is the 409 body the tests read.
type refusal struct {
	Error struct {
		Code   string `json:"code"`
		Fields []struct {
			Field string `json:"field"`
		} `json:"fields"`
		Nodes   int            `json:"nodes"`
		Reasons []string       `json:"reasons"`
		Impact  *impact.Impact `json:"impact"`
	} `json:"error"`
}

// TestGuardRefuses submits a NoExecute taint on three nodes (pods on two):
// without confirm or max_nodes, with a wrong count, and with max_nodes below
// the match it answers 409 confirmation_required and writes nothing; with
// the right count it runs.
func TestGuardRefuses(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true, inlineMax: 5})
	prefix, names := p.env.SeedNodes(t, 3)
	seedWorkloads(t, p, names[:2])
	alice := p.token(t, "alice")
	start := p.nodes(t, prefix)
	taint := seed.DrainKey + "=" + seed.DrainValue + ":NoExecute"
	tests := []struct {
		name      string
		extra     map[string]any
		wantField string
	}{
		{"neither", nil, "confirm"},
		{"wrong count", map[string]any{"confirm": 2}, "confirm"},
		{"max_nodes below the match", map[string]any{"max_nodes": 2}, "max_nodes"},
		{"right count, max_nodes below", map[string]any{"confirm": 3, "max_nodes": 2}, "max_nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := map[string]any{"taints": []string{taint}, "selector": selector(prefix)}
			for k, v := range tt.extra {
				body[k] = v
			}
			code, raw := p.do(t, http.MethodPost, "/v1/batches", alice, body, nil)
			var r refusal
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			if code != http.StatusConflict || r.Error.Code != "confirmation_required" || r.Error.Nodes != 3 {
				t.Fatalf("POST = %d %s, want 409 confirmation_required for 3 nodes", code, raw)
			}
			if len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != tt.wantField {
				t.Errorf("fields = %+v, want %s", r.Error.Fields, tt.wantField)
			}
			if im := r.Error.Impact; im == nil || im.Evictions != 10 || im.BudgetsViolated < 1 {
				t.Errorf("impact = %+v, want 10 evictions and a violated budget", im)
			}
		})
	}
	// The seed endpoint names nodes: NoExecute needs confirmation there too.
	seedBody := map[string]any{"nodes": names, "taints": []map[string]string{{"key": seed.DrainKey, "value": seed.DrainValue, "effect": "NoExecute"}}}
	if code, raw := p.do(t, http.MethodPost, "/api/v1/nodes/taints/batch-add-progress", alice, seedBody, nil); code != http.StatusConflict {
		t.Errorf("seed endpoint without confirm = %d %s, want 409", code, raw)
	}
	if diff := cmp.Diff(start, p.nodes(t, prefix)); diff != "" {
		t.Errorf("nodes after refusals (-want +got):\n%s", diff)
	}
	var hist batch.HistoryPage
	if code, raw := p.do(t, http.MethodGet, "/v1/batches", alice, nil, &hist); code != http.StatusOK || len(hist.Batches) != 0 {
		t.Errorf("history after refusals = %d %s, want no batch", code, raw)
	}
	assertNothingPublished(t, p)

	body := map[string]any{"taints": []string{taint}, "selector": selector(prefix), "confirm": 3}
	var st status
	if code, raw := p.do(t, http.MethodPost, "/v1/batches", alice, body, &st); code != http.StatusOK || st.State != "succeeded" {
		t.Fatalf("POST with confirm 3 = %d %s, want 200 succeeded", code, raw)
	}
	for name, n := range p.nodes(t, prefix) {
		if !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == seed.DrainKey && t.Effect == corev1.TaintEffectNoExecute
		}) {
			t.Errorf("node %s has no %s taint after the confirmed batch", name, seed.DrainKey)
		}
	}
}
