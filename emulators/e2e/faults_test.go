package e2e

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/shared/model"
)

// Batch sizes. The issue asks for 1,000 nodes; on this 2-core machine the
// API-fault test runs 1,000 and the others 300 (docs/reliability.md).
const (
	apiFaultNodes = 1000
	faultNodes    = 300
)

// batchBody is the batch every fault test submits: a label and a taint,
// so both the merge-patch and the read-modify-update path run.
func batchBody(prefix string, concurrency int) string {
	return fmt.Sprintf(`{"labels":["fault=%s"],"taints":["fault=yes:NoSchedule"],"selector":"%s=%s","concurrency":%d,"max_nodes":%d}`,
		prefix, harness.TestLabel, prefix, concurrency, apiFaultNodes)
}

var faultTaint = corev1.Taint{Key: "fault", Value: "yes", Effect: corev1.TaintEffectNoSchedule}

func succeeded(n int) outcome {
	return outcome{state: model.StateSucceeded, counts: model.Counts{Succeeded: n}}
}

// hashOf is a deterministic hash of its parts.
func hashOf(parts ...string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(strings.Join(parts, "/")))
	return h.Sum32()
}

// requestCounter numbers the requests per node and verb, so that a fault
// can depend on (node, verb, attempt) and the run is reproducible.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCounter) next(r *http.Request, node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	k := r.Method + " " + node
	i := c.n[k]
	c.n[k]++
	return i
}

// TestFaultAPIServer: the API server answers 409, 429 with Retry-After,
// 500 and timeouts for a deterministic ~40% of the first two requests of
// each node and verb (reads and writes). Every node still ends changed,
// counted once, and the watcher sees the exact final counts.
func TestFaultAPIServer(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, apiFaultNodes)
	kube := env.Kube(t)
	before := taintsOf(t, kube, prefix)

	var counter requestCounter
	var injected [4]atomic.Int64 // 409, 429, 500, timeout
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		node := kubeproxy.NodeName(r.URL.Path)
		if node == "" || !strings.HasPrefix(node, prefix) {
			return nil
		}
		k := counter.next(r, node)
		if k >= 2 {
			return nil
		}
		switch hashOf(node, r.Method, fmt.Sprint(k)) % 10 {
		case 0:
			if r.Method == http.MethodGet {
				return nil // a read never conflicts
			}
			injected[0].Add(1)
			return &kubeproxy.Fault{Status: http.StatusConflict}
		case 1:
			injected[1].Add(1)
			return &kubeproxy.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second}
		case 2:
			injected[2].Add(1)
			return &kubeproxy.Fault{Status: http.StatusInternalServerError}
		case 3:
			injected[3].Add(1)
			return &kubeproxy.Fault{Delay: 10 * time.Second} // the client gives up after 2 s
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	patchKube := proxy.RestConfig(env.PatcherConfig)
	patchKube.Timeout = 2 * time.Second
	// Up to four deliveries of a node can fail (two faulted reads, two
	// faulted writes); the default of 5 attempts would leave no margin.
	p := startProduct(t, env, product.Options{PatchKube: patchKube, MaxAttempts: 10})
	alice := mustToken(t, p, "alice", false)

	start := time.Now()
	id := submit(t, p, alice, batchBody(prefix, 20))
	w := startWatcher(t, p.RelayURL, alice, id)
	final := w.wait(t)
	elapsed := time.Since(start)

	want := succeeded(len(names))
	verifyFinal(t, "watcher", final, len(names), want)
	verifyBatch(t, p, id, names, want)
	verifyNodes(t, kube, prefix, names, [2]string{"fault", prefix}, faultTaint, before, nil, nil)

	total := injected[0].Load() + injected[1].Load() + injected[2].Load() + injected[3].Load()
	if injected[0].Load() == 0 || injected[1].Load() == 0 || injected[2].Load() == 0 || injected[3].Load() == 0 {
		t.Errorf("injected 409/429/500/timeout = %d/%d/%d/%d, want each > 0", injected[0].Load(), injected[1].Load(), injected[2].Load(), injected[3].Load())
	}
	st := p.Deliverer.Stats()
	t.Logf("RELIABILITY api-faults nodes=%d injected=%d (409:%d 429:%d 500:%d timeout:%d) proxy_requests=%d deliveries=%d retried=%d dead=%d elapsed=%s",
		len(names), total, injected[0].Load(), injected[1].Load(), injected[2].Load(), injected[3].Load(),
		proxy.Stats().Requests, st.Delivered, st.Retried, st.DeadLettered, elapsed.Round(time.Millisecond))
}

// TestFaultPatchKilled: the patch function's server is killed (listener and
// open connections closed, requests in flight cut off) a quarter of the way
// through, stays down a second, and is started again on the same port.
// "A quarter of the way" is by construction: a gate lets a quarter of the
// writes through and holds every lane's next one, so at the kill each lane
// has a push in flight whose answer never comes.
func TestFaultPatchKilled(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, faultNodes)
	kube := env.Kube(t)
	before := taintsOf(t, kube, prefix)
	const lanes = 10
	gate := newGate(t, len(names)/4)
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	p := startProduct(t, env, product.Options{PatchKube: proxy.RestConfig(env.PatcherConfig), MaxAttempts: 1000})
	alice := mustToken(t, p, "alice", false)

	start := time.Now()
	id := submit(t, p, alice, batchBody(prefix, lanes))
	w := startWatcher(t, p.RelayURL, alice, id)
	waitHeld(t, gate, lanes)
	requireRunning(t, p, id)
	p.StopPatch()
	retriedAtKill := p.Deliverer.Stats().Retried
	// The cut-off handlers go on in the background, as a killed process's
	// last writes may have landed: their held writes are forwarded, or
	// dropped where the handler already gave up.
	gate.Open()
	// Down for a while: twice as many failed pushes as lanes (each lane's
	// push in flight is cut off, then retries meet the closed port), so
	// the deliverer is backing off when the function comes back.
	wait.For(waitCtx(t), t, "pushes to fail against the stopped patch function", func() error {
		st := p.Deliverer.Stats()
		return wait.True(st.Retried >= retriedAtKill+2*lanes, "retried %d (at kill %d), want %d more", st.Retried, retriedAtKill, 2*lanes)
	})
	if err := p.StartPatch(); err != nil {
		t.Fatal(err)
	}
	final := w.wait(t)
	elapsed := time.Since(start)

	// A node whose write reached the API server just before the kill, but
	// whose result was not recorded, is found already changed on
	// redelivery: succeeded, unchanged. At most one per lane was in flight.
	want := succeeded(len(names))
	want.maxUnchanged = lanes
	verifyFinal(t, "watcher", final, len(names), want)
	verifyBatch(t, p, id, names, want)
	verifyNodes(t, kube, prefix, names, [2]string{"fault", prefix}, faultTaint, before, nil, nil)
	st := p.Deliverer.Stats()
	if st.Retried == 0 {
		t.Errorf("deliverer retried %d pushes, want > 0: the kill was not felt", st.Retried)
	}
	t.Logf("RELIABILITY patch-killed nodes=%d retried=%d (at kill %d) delivered=%d dead=%d written_unrecorded=%d elapsed=%s",
		len(names), st.Retried, retriedAtKill, st.Delivered, st.DeadLettered, final.Counts.Unchanged, elapsed.Round(time.Millisecond))
}

// TestFaultDuplicateDelivery: every message is pushed twice, and lanes
// run at different speeds (a per-node delay from a hash on every request
// naming the node, so it holds whether the patcher reads first or sends
// one write), so nodes finish out of their global order across lanes.
func TestFaultDuplicateDelivery(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, faultNodes)
	kube := env.Kube(t)
	before := taintsOf(t, kube, prefix)
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		node := kubeproxy.NodeName(r.URL.Path)
		if node == "" {
			return nil
		}
		return &kubeproxy.Fault{Delay: time.Duration(hashOf(node)%30) * time.Millisecond}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	p := startProduct(t, env, product.Options{PatchKube: proxy.RestConfig(env.PatcherConfig), Duplicate: true})
	alice := mustToken(t, p, "alice", false)

	start := time.Now()
	id := submit(t, p, alice, batchBody(prefix, 15))
	w := startWatcher(t, p.RelayURL, alice, id)
	final := w.wait(t)
	elapsed := time.Since(start)

	want := succeeded(len(names))
	verifyFinal(t, "watcher", final, len(names), want)
	docs := verifyBatch(t, p, id, names, want)
	verifyNodes(t, kube, prefix, names, [2]string{"fault", prefix}, faultTaint, before, nil, nil)

	// Wait for the deliverer to have pushed every duplicate: the second push
	// of the last messages may still be on the wire when the batch is final.
	wait.For(waitCtx(t), t, "every message to be pushed twice", func() error {
		st := p.Deliverer.Stats()
		return wait.True(st.Duplicates >= int64(len(names)), "duplicate pushes %d, want >= %d; deliverer stats %+v", st.Duplicates, len(names), st)
	})
	st := p.Deliverer.Stats()
	// Out of order: sorted by finish time, nodes are not in name order.
	byFinish := slices.Clone(docs)
	sort.SliceStable(byFinish, func(i, j int) bool { return byFinish[i].FinishedAt.Before(byFinish[j].FinishedAt) })
	inversions := 0
	for i := 1; i < len(byFinish); i++ {
		if byFinish[i].Node < byFinish[i-1].Node {
			inversions++
		}
	}
	if inversions == 0 {
		t.Errorf("nodes finished in name order: no out-of-order delivery across lanes was exercised")
	}
	t.Logf("RELIABILITY duplicates nodes=%d delivered=%d duplicates=%d out_of_order=%d elapsed=%s",
		len(names), st.Delivered, st.Duplicates, inversions, elapsed.Round(time.Millisecond))
}

// TestFaultRelayRestart: the relay restarts a third of the way through
// while three clients (the owner twice, an admin once) watch; each is told
// to reconnect, reconnects, resubscribes and ends with the exact counts.
// The restart lands mid-batch by construction: a gate lets a third of the
// writes through and holds the rest until the relay is back.
func TestFaultRelayRestart(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, faultNodes)
	kube := env.Kube(t)
	before := taintsOf(t, kube, prefix)
	gate := newGate(t, len(names)/3)
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	p := startProduct(t, env, product.Options{PatchKube: proxy.RestConfig(env.PatcherConfig)})
	alice := mustToken(t, p, "alice", false)
	admin := mustToken(t, p, "root", true)

	start := time.Now()
	id := submit(t, p, alice, batchBody(prefix, 10))
	watchers := []*watcher{
		startWatcher(t, p.RelayURL, alice, id),
		startWatcher(t, p.RelayURL, alice, id),
		startWatcher(t, p.RelayURL, admin, id),
	}
	waitHeld(t, gate, 1)
	for _, w := range watchers {
		w.waitSubscribed(t)
	}
	requireRunning(t, p, id)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := p.RestartRelay(ctx); err != nil {
		t.Fatal(err)
	}
	gate.Open()
	restartedAt := time.Since(start)
	want := succeeded(len(names))
	for i, w := range watchers {
		final := w.wait(t)
		verifyFinal(t, fmt.Sprintf("watcher %d", i), final, len(names), want)
		w.mu.Lock()
		if w.reconnects < 1 {
			t.Errorf("watcher %d reconnected %d times, want >= 1 (the restart was not seen)", i, w.reconnects)
		}
		t.Logf("RELIABILITY relay-restart watcher=%d reconnects=%d messages=%d", i, w.reconnects, w.messages)
		w.mu.Unlock()
	}
	verifyBatch(t, p, id, names, want)
	verifyNodes(t, kube, prefix, names, [2]string{"fault", prefix}, faultTaint, before, nil, nil)
	t.Logf("RELIABILITY relay-restart nodes=%d restarted_at=%s elapsed=%s", len(names), restartedAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestFaultOtherWriters: in the middle of a lane, when the patcher's first
// request for node Y arrives (its read, or its write if it does not read
// first), another writer adds a taint to node Z and removes one from it,
// and deletes node D (Z and D come later in the same lane, so they are not
// reached yet: the lane's order makes this mid-batch by construction);
// when the patcher first writes Y, another writer adds a taint to Y just
// before our write. Y and Z keep every other writer's change, D is recorded
// failed (node gone), the batch ends partially_failed, and each node is
// counted once.
func TestFaultOtherWriters(t *testing.T) {
	const lanes = 10
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, faultNodes)
	kube := env.Kube(t)
	before := taintsOf(t, kube, prefix)
	// Lane 0 holds names[0], names[10], names[20], … in order.
	y, z, d := names[5*lanes], names[7*lanes], names[9*lanes]
	extra := map[string][]corev1.Taint{}
	var mu sync.Mutex // guards before and extra, written by the proxy's goroutines
	var firstOnce, writeOnce sync.Once
	var hookErr atomic.Value
	racer := corev1.Taint{Key: "racer", Value: "yes", Effect: corev1.TaintEffectNoSchedule}
	other := corev1.Taint{Key: "other", Value: "writer", Effect: corev1.TaintEffectPreferNoSchedule}
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		if kubeproxy.NodeName(r.URL.Path) != y {
			return nil
		}
		firstOnce.Do(func() {
			ctx := context.Background()
			removed, err := changeTaints(ctx, kube, z, other, true)
			if err == nil {
				err = kube.CoreV1().Nodes().Delete(ctx, d, metav1.DeleteOptions{})
			}
			if err != nil {
				hookErr.Store(err)
			}
			mu.Lock()
			defer mu.Unlock()
			before[z] = slices.DeleteFunc(before[z], func(tn corev1.Taint) bool { return tn.Key == removed.Key && tn.Effect == removed.Effect })
			extra[z] = []corev1.Taint{other}
		})
		if r.Method == http.MethodPut || r.Method == http.MethodPatch {
			writeOnce.Do(func() {
				if _, err := changeTaints(context.Background(), kube, y, racer, false); err != nil {
					hookErr.Store(err)
				}
				mu.Lock()
				defer mu.Unlock()
				extra[y] = []corev1.Taint{racer}
			})
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	p := startProduct(t, env, product.Options{PatchKube: proxy.RestConfig(env.PatcherConfig)})
	alice := mustToken(t, p, "alice", false)

	id := submit(t, p, alice, batchBody(prefix, lanes))
	w := startWatcher(t, p.RelayURL, alice, id)
	final := w.wait(t)
	if err, _ := hookErr.Load().(error); err != nil {
		t.Fatalf("other writer: %v", err)
	}

	want := outcome{
		state:      model.StatePartiallyFailed,
		counts:     model.Counts{Succeeded: len(names) - 1, Failed: 1},
		nodeStates: map[string]model.NodeState{d: model.NodeFailed},
	}
	verifyFinal(t, "watcher", final, len(names), want)
	docs := verifyBatch(t, p, id, names, want)
	mu.Lock()
	verifyNodes(t, kube, prefix, names, [2]string{"fault", prefix}, faultTaint, before, extra, map[string]bool{d: true})
	mu.Unlock()
	if _, err := kube.CoreV1().Nodes().Get(t.Context(), d, metav1.GetOptions{}); err == nil {
		t.Errorf("deleted node %s exists again: the batch recreated it", d)
	}
	for _, doc := range docs {
		switch doc.Node {
		case y:
			if doc.Conflicts < 1 {
				t.Errorf("node %s: conflicts = %d, want >= 1 (another writer wrote between our read and our write)", y, doc.Conflicts)
			}
		case d:
			if !strings.Contains(doc.Reason, "not found") {
				t.Errorf("deleted node %s: reason %q, want it to say not found", d, doc.Reason)
			}
		}
	}
	if len(final.FailedNodes) != 1 || final.FailedNodes[0].Node != d {
		t.Errorf("watcher's failed nodes = %+v, want just %s", final.FailedNodes, d)
	}
	t.Logf("RELIABILITY other-writers nodes=%d deleted=%s raced=%s changed=%s", len(names), d, y, z)
}

// changeTaints adds add to node's taints as another writer would (kubectl
// taint), and when remove is set also removes the node's first taint,
// which it returns.
func changeTaints(ctx context.Context, kube kubernetes.Interface, node string, add corev1.Taint, remove bool) (corev1.Taint, error) {
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return corev1.Taint{}, fmt.Errorf("get node %s: %w", node, err)
	}
	var removed corev1.Taint
	if remove && len(n.Spec.Taints) > 0 {
		removed = n.Spec.Taints[0]
		n.Spec.Taints = n.Spec.Taints[1:]
	}
	n.Spec.Taints = append(n.Spec.Taints, add)
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{FieldManager: "other-writer"}); err != nil {
		return corev1.Taint{}, fmt.Errorf("update node %s: %w", node, err)
	}
	return removed, nil
}
