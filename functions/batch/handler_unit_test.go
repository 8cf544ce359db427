package batch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/api"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/impact"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/store/memstore"
)

// The tests in this file are the handlers' logic on the in-memory store
// (shared/store/memstore, which passes the Firestore store's conformance
// suite), a fake clientset and a publisher that keeps what it is given:
// no local stack, milliseconds each. The emulator tests (pipeline_test.go
// and the rest) keep contention and the whole product.

// keeper is a Publisher that keeps every message, for the test to deliver.
type keeper struct {
	mu   sync.Mutex
	msgs []*pubsub.Message
}

func (k *keeper) Publish(_ context.Context, msgs []*pubsub.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.msgs = append(k.msgs, msgs...)
	return nil
}

// take returns the events published since the last take.
func (k *keeper) take(t *testing.T) []events.Node {
	t.Helper()
	k.mu.Lock()
	msgs := k.msgs
	k.msgs = nil
	k.mu.Unlock()
	evs := make([]events.Node, len(msgs))
	for i, m := range msgs {
		ev, err := events.FromMessage(m.Data, m.Attributes)
		if err != nil {
			t.Fatalf("published message %d: %v", i, err)
		}
		if want := events.OrderingKey(ev.BatchID, ev.Lane); m.OrderingKey != want {
			t.Errorf("message %d ordering key = %q, want %q", i, m.OrderingKey, want)
		}
		evs[i] = ev
	}
	return evs
}

// cancelHook tells the test when a cancel is recorded, so the events still
// queued are delivered after it, while the cancel settles.
type cancelHook struct {
	*memstore.Store
	recorded chan struct{}
	once     sync.Once
}

func (c *cancelHook) RecordCancel(ctx context.Context, id string, cn store.Cancel) (*store.BatchDoc, bool, error) {
	b, did, err := c.Store.RecordCancel(ctx, id, cn)
	c.once.Do(func() { close(c.recorded) })
	return b, did, err
}

// unit is the API on the in-memory store and a fake cluster.
type unit struct {
	st   *memstore.Store
	kube *fake.Clientset
	pub  *keeper
	run  *runner.Runner
	h    *batch.Handler
}

var (
	alice = auth.Principal{Subject: "alice@example.com", KubeUser: "alice"}
	bob   = auth.Principal{Subject: "bob@example.com", KubeUser: "bob"}
)

// newUnit returns the API over a fake cluster of nodes (unlabelled).
func newUnit(t *testing.T, nodes ...string) *unit {
	t.Helper()
	var objs []runtime.Object
	for _, n := range nodes {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{}}})
	}
	u := &unit{st: memstore.New(), kube: fake.NewClientset(objs...), pub: &keeper{}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	u.run = &runner.Runner{Store: u.st, Patcher: &nodepatch.Patcher{Client: u.kube}, Logger: logger}
	var clock atomic.Int64 // every call a second later: history's order is creation order
	start := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	now := func() time.Time { return start.Add(time.Duration(clock.Add(1)) * time.Second) }
	u.run.Now = now
	u.h = &batch.Handler{Store: u.st, Kube: u.kube, Publisher: u.pub, Runner: u.run, Protection: change.DefaultProtection(), Now: now, Logger: logger}
	return u
}

// do sends method path with body (JSON, nil: none) as p and returns the
// status and the decoded answer.
func (u *unit) do(t *testing.T, p auth.Principal, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	r := httptest.NewRequestWithContext(auth.WithPrincipal(t.Context(), p), method, path, rd)
	w := httptest.NewRecorder()
	u.h.ServeHTTP(w, r)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: answer %d %q is not a JSON object: %v", method, path, w.Code, w.Body, err)
	}
	return w.Code, out
}

// deliver runs evs through the per-node path, lane by lane in order (what
// ordered delivery does), and returns the results.
func (u *unit) deliver(t *testing.T, evs []events.Node) []runner.Result {
	t.Helper()
	var out []runner.Result
	for _, ev := range slices.SortedFunc(slices.Values(evs), func(a, b events.Node) int {
		if a.Lane != b.Lane {
			return a.Lane - b.Lane
		}
		return a.Position - b.Position
	}) {
		res, err := u.run.Run(t.Context(), ev)
		if err != nil {
			t.Fatalf("Run(%s) error = %v", ev.ID(), err)
		}
		out = append(out, res)
	}
	return out
}

// submit posts body as p and returns the new batch's id (202 expected).
func (u *unit) submit(t *testing.T, p auth.Principal, body map[string]any) string {
	t.Helper()
	code, out := u.do(t, p, "POST", "/v1/batches", body)
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/batches = %d %v, want 202", code, out)
	}
	return out["batch_id"].(string)
}

// status is GET /v1/batches/{id}: the state, the counts and each node's
// state.
func (u *unit) status(t *testing.T, p auth.Principal, id string) (model.State, map[string]any, map[string]string) {
	t.Helper()
	code, out := u.do(t, p, "GET", "/v1/batches/"+id, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/batches/%s = %d %v", id, code, out)
	}
	nodes := map[string]string{}
	results, _ := out["results"].([]any)
	for _, r := range results {
		m := r.(map[string]any)
		nodes[m["node"].(string)] = m["state"].(string)
	}
	counts, _ := out["counts"].(map[string]any)
	return model.State(fmt.Sprint(out["state"])), counts, nodes
}

// labels returns node's labels on the fake cluster.
func (u *unit) labels(t *testing.T, node string) map[string]string {
	t.Helper()
	n, err := u.kube.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", node, err)
	}
	return n.Labels
}

func TestUnitSubmitRunsEveryNodeOnce(t *testing.T) {
	t.Parallel()
	u := newUnit(t, "n1", "n2", "n3", "n4", "n5")
	id := u.submit(t, alice, map[string]any{"labels": []string{"team=ml"}, "nodes": []string{"n1", "n2", "n3", "n4"}, "concurrency": 2})
	evs := u.pub.take(t)
	if len(evs) != 4 {
		t.Fatalf("published %d events, want 4", len(evs))
	}
	if st, _, _ := u.status(t, alice, id); st != model.StateRunning {
		t.Errorf("state before delivery = %s, want running", st)
	}
	finished := 0
	for _, res := range u.deliver(t, evs) {
		if res.Finished {
			finished++
		}
	}
	if finished != 1 {
		t.Errorf("%d deliveries finished the batch, want 1", finished)
	}
	st, counts, nodes := u.status(t, alice, id)
	if st != model.StateSucceeded || counts["succeeded"] != 4.0 {
		t.Errorf("after delivery: state %s, counts %v; want succeeded, 4", st, counts)
	}
	want := map[string]string{"n1": "succeeded", "n2": "succeeded", "n3": "succeeded", "n4": "succeeded"}
	if diff := cmp.Diff(want, nodes); diff != "" {
		t.Errorf("node results (-want +got):\n%s", diff)
	}
	for _, n := range []string{"n1", "n4"} {
		if got := u.labels(t, n)["team"]; got != "ml" {
			t.Errorf("node %s label team = %q, want ml", n, got)
		}
	}
	if _, ok := u.labels(t, "n5")["team"]; ok {
		t.Errorf("node n5, not in the batch, got the label")
	}
	// Every event delivered again (Pub/Sub redelivers a key's later
	// messages after a nack): nothing is counted twice.
	for _, res := range u.deliver(t, evs) {
		if !res.Duplicate {
			t.Errorf("redelivery of %s = %+v, want already counted", res.Node.Node, res)
		}
	}
	if _, counts, _ := u.status(t, alice, id); counts["succeeded"] != 4.0 {
		t.Errorf("counts after redelivery = %v, want 4 succeeded", counts)
	}
	// Bob does not see alice's batch.
	if code, _ := u.do(t, bob, "GET", "/v1/batches/"+id, nil); code != http.StatusNotFound {
		t.Errorf("GET alice's batch as bob = %d, want 404", code)
	}
}

func TestUnitSubmitIdempotency(t *testing.T) {
	t.Parallel()
	u := newUnit(t, "n1", "n2")
	body := map[string]any{"labels": []string{"team=ml"}, "nodes": []string{"n1", "n2"}, "idempotency_key": "nightly-1"}
	id := u.submit(t, alice, body)
	if n := len(u.pub.take(t)); n != 2 {
		t.Fatalf("published %d events, want 2", n)
	}
	tests := []struct {
		name     string
		p        auth.Principal
		body     map[string]any
		code     int
		existing bool   // the answer names the first batch
		errCode  string // the error code, when refused
		events   int    // events published by the request
	}{
		{"same request", alice, body, http.StatusOK, true, "", 0},
		{"another request with the key", alice, map[string]any{"labels": []string{"team=other"}, "nodes": []string{"n1", "n2"}, "idempotency_key": "nightly-1"},
			http.StatusConflict, false, "idempotency_mismatch", 0},
		{"the key of another owner", bob, body, http.StatusAccepted, false, "", 2},
	}
	for _, tc := range tests {
		code, out := u.do(t, tc.p, "POST", "/v1/batches", tc.body)
		if code != tc.code {
			t.Errorf("%s: POST = %d %v, want %d", tc.name, code, out, tc.code)
			continue
		}
		if got := out["batch_id"] == id; got != tc.existing {
			t.Errorf("%s: batch_id %v, first batch %s: same = %v, want %v", tc.name, out["batch_id"], id, got, tc.existing)
		}
		if tc.existing && out["existing"] != true {
			t.Errorf("%s: existing = %v, want true", tc.name, out["existing"])
		}
		if tc.errCode != "" {
			e, _ := out["error"].(map[string]any)
			if e["code"] != tc.errCode {
				t.Errorf("%s: error %v, want code %s", tc.name, out["error"], tc.errCode)
			}
		}
		if n := len(u.pub.take(t)); n != tc.events {
			t.Errorf("%s: published %d events, want %d", tc.name, n, tc.events)
		}
	}
}

func TestUnitRetryRerunsOnlyTheFailed(t *testing.T) {
	t.Parallel()
	u := newUnit(t, "n1", "n2", "n3")
	id := u.submit(t, alice, map[string]any{"labels": []string{"team=ml"}, "nodes": []string{"n1", "n2", "n3"}, "concurrency": 2})
	evs := u.pub.take(t)
	if code, out := u.do(t, alice, "POST", "/v1/batches/"+id+":retry", nil); code != http.StatusConflict {
		t.Errorf("retry of a running batch = %d %v, want 409", code, out)
	}
	// n2 disappears before its event arrives: a permanent failure.
	gone, err := u.kube.CoreV1().Nodes().Get(t.Context(), "n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.kube.CoreV1().Nodes().Delete(t.Context(), "n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	u.deliver(t, evs)
	st, counts, nodes := u.status(t, alice, id)
	if st != model.StatePartiallyFailed || nodes["n2"] != "failed" || counts["failed"] != 1.0 {
		t.Fatalf("after delivery: state %s, counts %v, nodes %v; want partially_failed with n2 failed", st, counts, nodes)
	}
	gone.ResourceVersion = ""
	if _, err := u.kube.CoreV1().Nodes().Create(t.Context(), gone, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, out := u.do(t, alice, "POST", "/v1/batches/"+id+":retry", nil)
	if code != http.StatusAccepted || out["attempt"] != 2.0 || !cmp.Equal(out["nodes"], []any{"n2"}) {
		t.Fatalf("retry = %d %v, want 202, attempt 2 of n2 only", code, out)
	}
	evs = u.pub.take(t)
	if len(evs) != 1 || evs[0].Node != "n2" || evs[0].Attempt != 2 {
		t.Fatalf("retry published %+v, want one event of n2 attempt 2", evs)
	}
	u.deliver(t, evs)
	st, counts, nodes = u.status(t, alice, id)
	if st != model.StateSucceeded || counts["succeeded"] != 3.0 || counts["failed"] != 0.0 || nodes["n2"] != "succeeded" {
		t.Errorf("after the retry: state %s, counts %v, nodes %v; want succeeded, 3, 0 failed", st, counts, nodes)
	}
	if got := u.labels(t, "n2")["team"]; got != "ml" {
		t.Errorf("n2 label team = %q after the retry, want ml", got)
	}
	doc, err := u.st.Node(t.Context(), id, "n2")
	if err != nil || len(doc.History) != 1 || doc.History[0].State != model.NodeFailed {
		t.Errorf("n2's result = %+v, %v; want attempt 1's failure in its history", doc, err)
	}
	if r, ok := readBatch(t, u, id).RequesterOf(2); !ok || r.Subject != alice.Subject {
		t.Errorf("attempt 2 requester = %+v, %v; want alice", r, ok)
	}
	if code, out := u.do(t, alice, "POST", "/v1/batches/"+id+":retry", nil); code != http.StatusConflict {
		t.Errorf("retry with no failed node = %d %v, want 409", code, out)
	}
}

func readBatch(t *testing.T, u *unit, id string) *store.BatchDoc {
	t.Helper()
	b, err := u.st.Batch(t.Context(), id)
	if err != nil {
		t.Fatalf("Batch(%s) error = %v", id, err)
	}
	return b
}

func TestUnitRevertRestoresWhatNobodyChanged(t *testing.T) {
	t.Parallel()
	u := newUnit(t, "n1", "n2")
	id := u.submit(t, alice, map[string]any{"labels": []string{"team=ml"}, "nodes": []string{"n1", "n2"}})
	u.deliver(t, u.pub.take(t))
	if st, _, _ := u.status(t, alice, id); st != model.StateSucceeded {
		t.Fatalf("state = %s, want succeeded", st)
	}
	// Someone changes n2 since: the revert must leave it.
	n2, err := u.kube.CoreV1().Nodes().Get(t.Context(), "n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n2.Labels["team"] = "other"
	if _, err := u.kube.CoreV1().Nodes().Update(t.Context(), n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, out := u.do(t, alice, "POST", "/v1/batches/"+id+":revert", nil)
	if code != http.StatusAccepted || out["reverts"] != id {
		t.Fatalf("revert = %d %v, want 202 reverting %s", code, out, id)
	}
	rv := out["batch_id"].(string)
	u.deliver(t, u.pub.take(t))
	_, _, nodes := u.status(t, alice, rv)
	if diff := cmp.Diff(map[string]string{"n1": "succeeded", "n2": "skipped"}, nodes); diff != "" {
		t.Errorf("revert's node results (-want +got):\n%s", diff)
	}
	if _, ok := u.labels(t, "n1")["team"]; ok {
		t.Errorf("n1 still has label team after the revert: %v", u.labels(t, "n1"))
	}
	if got := u.labels(t, "n2")["team"]; got != "other" {
		t.Errorf("n2 label team = %q after the revert, want other (changed by someone since)", got)
	}
	code, out = u.do(t, alice, "POST", "/v1/batches/"+id+":revert", nil)
	if code != http.StatusOK || out["batch_id"] != rv || out["existing"] != true {
		t.Errorf("second revert = %d %v, want 200 naming the first revert %s", code, out, rv)
	}
	if n := len(u.pub.take(t)); n != 0 {
		t.Errorf("second revert published %d events, want none", n)
	}
}

func TestUnitCancelSettlesAndStopsTheRest(t *testing.T) {
	t.Parallel()
	u := newUnit(t, "n1", "n2", "n3", "n4")
	hook := &cancelHook{Store: u.st, recorded: make(chan struct{})}
	u.h.Store = hook
	id := u.submit(t, alice, map[string]any{"labels": []string{"team=ml"}, "nodes": []string{"n1", "n2", "n3", "n4"}, "concurrency": 1})
	evs := u.pub.take(t)
	u.deliver(t, evs[:1])
	// The rest of the lane is delivered once the cancel is recorded, while
	// the cancel waits for the lane to settle.
	var wg sync.WaitGroup
	wg.Go(func() {
		<-hook.recorded
		for _, ev := range evs[1:] {
			if _, err := u.run.Run(context.Background(), ev); err != nil {
				t.Errorf("Run(%s) error = %v", ev.ID(), err)
			}
		}
	})
	code, out := u.do(t, alice, "POST", "/v1/batches/"+id+":cancel", map[string]any{"reason": "wrong label"})
	wg.Wait()
	if code != http.StatusOK || out["settled"] != true || out["state"] != "cancelled" {
		t.Errorf("cancel = %d %v, want 200, settled, cancelled", code, out)
	}
	st, counts, nodes := u.status(t, alice, id)
	want := map[string]string{"n1": "succeeded", "n2": "cancelled", "n3": "cancelled", "n4": "cancelled"}
	if st != model.StateCancelled || counts["cancelled"] != 3.0 || !cmp.Equal(want, nodes) {
		t.Errorf("after cancel: state %s, counts %v, nodes %v; want cancelled with %v", st, counts, nodes, want)
	}
	for _, n := range []string{"n2", "n3", "n4"} {
		if _, ok := u.labels(t, n)["team"]; ok {
			t.Errorf("node %s was patched after the cancel", n)
		}
	}
	if code, out := u.do(t, bob, "POST", "/v1/batches/"+id+":cancel", nil); code != http.StatusNotFound {
		t.Errorf("cancel of alice's batch by bob = %d %v, want 404", code, out)
	}
}

func TestUnitHistoryPages(t *testing.T) {
	t.Parallel()
	u := newUnit(t, "n1")
	var ids []string
	for i := range 5 {
		ids = append(ids, u.submit(t, alice, map[string]any{"labels": []string{fmt.Sprintf("k%d=v", i)}, "nodes": []string{"n1"}}))
	}
	u.submit(t, bob, map[string]any{"labels": []string{"b=v"}, "nodes": []string{"n1"}})
	slices.Reverse(ids) // newest first
	var pages [][]string
	token := ""
	for range 5 {
		path := "/v1/batches?limit=2"
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		code, out := u.do(t, alice, "GET", path, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %v", path, code, out)
		}
		var page []string
		list, _ := out["batches"].([]any)
		for _, b := range list {
			page = append(page, b.(map[string]any)["batch_id"].(string))
		}
		pages = append(pages, page)
		token, _ = out["next_page_token"].(string)
		if token == "" {
			break
		}
	}
	if diff := cmp.Diff([][]string{ids[:2], ids[2:4], ids[4:]}, pages); diff != "" {
		t.Errorf("alice's history pages (-want +got):\n%s", diff)
	}
	code, out := u.do(t, alice, "GET", "/v1/batches?page_token=not-a-token", nil)
	e, _ := out["error"].(map[string]any)
	if code != http.StatusBadRequest || !bytes.Contains([]byte(fmt.Sprint(e)), []byte("page_token")) {
		t.Errorf("GET with a bad page_token = %d %v, want 400 naming page_token", code, out)
	}
}

// TestUnitSubmitRecordsImpact: a batch that adds a NoExecute taint records
// what it was predicted to evict (totals and violated budgets, no pod
// list), and GET shows it to whoever opens the batch later; a batch that
// cannot evict records none, and one whose pods may not be listed records
// why.
func TestUnitSubmitRecordsImpact(t *testing.T) {
	u := newUnit(t, "n1", "n2", "n3")
	web := map[string]string{"app": "web"}
	one := intstr.FromInt32(1)
	for _, obj := range []runtime.Object{
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "w", Name: "web-1", Labels: web}, Spec: corev1.PodSpec{NodeName: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "w", Name: "web-2", Labels: web}, Spec: corev1.PodSpec{NodeName: "n2"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "w", Name: "slow", Labels: map[string]string{"app": "slow"}}, Spec: corev1.PodSpec{NodeName: "n2",
			Tolerations: []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(60))}}}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "w", Name: "web"},
			Spec:   policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: web}},
			Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 1}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "w", Name: "slow"},
			Spec:   policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "slow"}}},
			Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 1}},
	} {
		if err := u.kube.Tracker().Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	id := u.submit(t, alice, map[string]any{"taints": []string{"drain=now:NoExecute"}, "nodes": []string{"n1", "n2", "n3"}, "confirm": 3})
	code, out := u.do(t, alice, "GET", "/v1/batches/"+id, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/batches/%s = %d %v", id, code, out)
	}
	got, _ := json.Marshal(out["impact"])
	var im api.Impact
	if err := json.Unmarshal(got, &im); err != nil {
		t.Fatalf("impact %s: %v", got, err)
	}
	want := api.Impact{NoExecute: true, Summary: "would evict 3 pods on 2 nodes (2 at once, 1 after their tolerationSeconds); 1 budget would be violated: taint eviction ignores budgets",
		TaintedNodes: 3, NodesWithEvictions: 2, Evictions: 3, EvictNow: 2, EvictLater: 1,
		Budgets: []impact.Budget{{Namespace: "w", Name: "web", DisruptionsAllowed: 1, Evictions: 2, Violated: true}}, BudgetsViolated: 1}
	if diff := cmp.Diff(want, im, cmpopts.IgnoreFields(api.Impact{}, "ComputedAt")); diff != "" {
		t.Errorf("GET impact (-want +got):\n%s", diff)
	}
	if im.ComputedAt.IsZero() {
		t.Errorf("GET impact computed_at is zero, want the submit's time")
	}
	if _, ok := out["impact_error"]; ok {
		t.Errorf("GET impact_error = %v, want none", out["impact_error"])
	}

	// Nothing a label or a NoSchedule taint does evicts: nothing recorded.
	for _, body := range []map[string]any{
		{"labels": []string{"team=ml"}, "nodes": []string{"n1"}},
		{"taints": []string{"gpu:NoSchedule"}, "nodes": []string{"n1"}},
		{"taints": []string{"drain=later:NoExecute"}, "nodes": []string{"n3"}, "dry_run": true},
	} {
		id := u.submit(t, alice, body)
		if _, out := u.do(t, alice, "GET", "/v1/batches/"+id, nil); out["impact"] != nil || out["impact_error"] != nil {
			t.Errorf("GET of %v: impact %v, impact_error %v; want neither", body, out["impact"], out["impact_error"])
		}
	}

	// Pods that may not be listed: the batch runs and records why.
	u.kube.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "", errors.New("no"))
	})
	id = u.submit(t, alice, map[string]any{"taints": []string{"drain=again:NoExecute"}, "nodes": []string{"n3"}, "confirm": 1})
	_, out = u.do(t, alice, "GET", "/v1/batches/"+id, nil)
	if msg, _ := out["impact_error"].(string); out["impact"] != nil || !strings.Contains(msg, "forbidden") {
		t.Errorf("GET with pods unlisted: impact %v, impact_error %q; want no impact and the forbidden error", out["impact"], msg)
	}
}

func ptr[T any](v T) *T { return &v }
