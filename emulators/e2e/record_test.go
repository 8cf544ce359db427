package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// waitCtx bounds a wait of the whole-product tests (batchTimeout).
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), batchTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFinal waits until batch id is final and returns it.
func waitFinal(t *testing.T, p *product.Product, id string) *store.BatchDoc {
	t.Helper()
	var b *store.BatchDoc
	wait.For(waitCtx(t), t, "batch "+id+" to end", func() error {
		var err error
		if b, err = p.Store.Batch(t.Context(), id); err != nil {
			return err
		}
		return wait.True(b.State.Final(), "state %s", b.State)
	})
	return b
}

// cancelAnswer is a cancel's answer and what the gate held when it came.
type cancelAnswer struct {
	code int
	body batch.Cancelled
	held int
	at   time.Time
	err  error
}

// cancelAsync posts a cancel of id and sends its answer on the returned
// channel (t.Fatal cannot be called off the test goroutine).
func cancelAsync(ctx context.Context, p *product.Product, token, id string, g *kubeproxy.Gate) <-chan cancelAnswer {
	ch := make(chan cancelAnswer, 1)
	go func() {
		var a cancelAnswer
		defer func() { ch <- a }()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.APIURL+"/v1/batches/"+id+":cancel", nil)
		if err != nil {
			a.err = err
			return
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		a.at = time.Now()
		if g != nil {
			a.held = g.Held()
		}
		if err != nil {
			a.err = err
			return
		}
		defer resp.Body.Close()
		a.code = resp.StatusCode
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			err = json.Unmarshal(b, &a.body)
		}
		a.err = err
	}()
	return ch
}

// TestFaultRecordLostAfterPatch: the first node's write lands on the API
// server, then the commit that records it fails (the patch function's
// Firestore answers Unavailable, held until a cancel is recorded). The
// redelivery finds the cancel. The node must not be recorded "cancelled
// before this node was reached" (it was changed): it is recorded failed
// with its before-value unknown, the cancel settles, and a revert after it
// skips the node with a reason instead of skipping it silently or
// restoring a guess.
func TestFaultRecordLostAfterPatch(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, 3)
	x := names[0] // lane 0, position 0: the others queue behind it
	var armed atomic.Bool
	armed.Store(true)
	failing, release := make(chan struct{}), make(chan struct{})
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if cr, ok := req.(*firestorepb.CommitRequest); ok && createsNode(cr, x) && armed.CompareAndSwap(true, false) {
			close(failing)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return status.Error(codes.DeadlineExceeded, "injected: the record of a landed patch is lost") // not retried by the client library (Unavailable is)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	p := startProduct(t, env, product.Options{PatchFirestore: icpt, InlineMax: -1})
	alice := mustToken(t, p, "alice", false)
	id := submit(t, p, alice, fmt.Sprintf(`{"labels":["record=lost"],"selector":"%s=%s","concurrency":1}`, harness.TestLabel, prefix))

	select {
	case <-failing:
	case <-time.After(batchTimeout):
		t.Fatal("the record of the first node was never attempted")
	}
	kube := env.Kube(t)
	n, err := kube.CoreV1().Nodes().Get(t.Context(), x, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["record"] != "lost" {
		t.Fatalf("label of %s before its record = %q, want the landed write's value", x, n.Labels["record"])
	}
	answered := cancelAsync(t.Context(), p, alice, id, nil)
	wait.For(waitCtx(t), t, "the cancel to be recorded", func() error {
		b, err := p.Store.Batch(t.Context(), id)
		if err != nil {
			return err
		}
		return wait.True(b.Cancel != nil, "no cancel on batch %s (state %s)", id, b.State)
	})
	close(release)
	a := <-answered
	if a.err != nil || a.code != http.StatusOK || !a.body.Settled {
		t.Errorf("cancel = %d %+v (%v), want 200 settled", a.code, a.body, a.err)
	}
	b := waitFinal(t, p, id)
	if b.State != model.StateCancelled {
		t.Errorf("batch state = %s, want cancelled", b.State)
	}
	doc, err := p.Store.Node(t.Context(), id, x)
	if err != nil {
		t.Fatal(err)
	}
	if doc.State == model.NodeCancelled || !doc.Changed || len(doc.Unknown) != 1 || doc.Unknown[0] != "label:record" {
		t.Errorf("result of the changed node = %s changed %v unknown %v (%s), want not cancelled, changed, label:record unknown",
			doc.State, doc.Changed, doc.Unknown, doc.Reason)
	}
	for _, name := range names[1:] {
		if d, err := p.Store.Node(t.Context(), id, name); err != nil || d.State != model.NodeCancelled {
			t.Errorf("result of %s = %+v, %v, want cancelled", name, d, err)
		}
	}

	code, body := call(t, http.MethodPost, p.APIURL+"/v1/batches/"+id+":revert", alice, "")
	if code != http.StatusAccepted {
		t.Fatalf("revert = %d %s, want 202: the changed node must be in the revert", code, body)
	}
	var created struct {
		BatchID string `json:"batch_id"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	rb := waitFinal(t, p, created.BatchID)
	rdoc, err := p.Store.Node(t.Context(), created.BatchID, x)
	if err != nil {
		t.Fatal(err)
	}
	if rdoc.State != model.NodeSkipped || !strings.Contains(rdoc.Reason, "unknown") || rb.Total != 1 {
		t.Errorf("revert of %s = %s (%q), revert total %d, want skipped naming the unknown value, 1 node", x, rdoc.State, rdoc.Reason, rb.Total)
	}
	if n, err = kube.CoreV1().Nodes().Get(t.Context(), x, metav1.GetOptions{}); err != nil || n.Labels["record"] != "lost" {
		t.Errorf("label of %s after the revert = %q (%v): a skipped node must be left as it is", x, n.Labels["record"], err)
	}
}

// createsNode reports whether a commit creates the result document of node.
func createsNode(cr *firestorepb.CommitRequest, node string) bool {
	for _, w := range cr.GetWrites() {
		if u := w.GetUpdate(); u != nil && strings.HasSuffix(u.GetName(), "/nodes/"+node) {
			return true
		}
	}
	return false
}

// TestCancelSettleDeadLetter: the lane's first node fails every delivery
// and is dead-lettered; its next node's write is in flight (held at the
// gate) when the cancel comes; then the dead letter is recorded and moves
// the lane's count. The cancel must not answer settled while that write
// is in flight: it answers settled only once no write of the batch is in
// flight, and none starts after it.
func TestCancelSettleDeadLetter(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, 3)
	dead := names[0]
	gate := newGate(t, 2) // the dead node's two writes pass; the next one is held
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Gate: gate, Fault: func(r *http.Request) *kubeproxy.Fault {
		if r.Method != http.MethodGet && kubeproxy.NodeName(r.URL.Path) == dead {
			return &kubeproxy.Fault{Status: http.StatusInternalServerError}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	hold := make(chan struct{})
	p := startProduct(t, env, product.Options{
		PatchKube: proxy.RestConfig(env.PatcherConfig), MaxAttempts: 2, InlineMax: -1, CancelWait: 3 * time.Second,
		BeforeDeadLetter: func(ctx context.Context) error {
			select {
			case <-hold:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	alice := mustToken(t, p, "alice", false)
	id := submit(t, p, alice, fmt.Sprintf(`{"labels":["settle=yes"],"selector":"%s=%s","concurrency":1}`, harness.TestLabel, prefix))
	waitHeld(t, gate, 1) // the dead node was given up; the next node's write is in flight

	answered := cancelAsync(t.Context(), p, alice, id, gate)
	wait.For(waitCtx(t), t, "the cancel to be recorded", func() error {
		b, err := p.Store.Batch(t.Context(), id)
		if err != nil {
			return err
		}
		return wait.True(b.Cancel != nil, "no cancel on batch %s (state %s)", id, b.State)
	})
	close(hold)
	wait.For(waitCtx(t), t, "the dead letter to be counted", func() error {
		lanes, err := p.Store.Lanes(t.Context(), id, 1)
		if err != nil {
			return err
		}
		return wait.True(len(lanes) == 1 && lanes[0].Counts.Done() >= 1, "lanes %+v", lanes)
	})
	a := <-answered
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.body.Settled && a.held > 0 {
		t.Errorf("cancel answered %d settled while %d write(s) of the batch were in flight", a.code, a.held)
	}
	gate.Open()
	code, body := call(t, http.MethodPost, p.APIURL+"/v1/batches/"+id+":cancel", alice, "")
	var second batch.Cancelled
	if err := json.Unmarshal(body, &second); err != nil || code != http.StatusOK || !second.Settled {
		t.Errorf("second cancel = %d %s, want 200 settled once the held write finished", code, body)
	}
	answeredAt := time.Now()
	waitFinal(t, p, id)
	for _, r := range proxy.Stats().Log {
		if r.Start.After(answeredAt) || r.End.After(answeredAt) {
			t.Errorf("%s %s ran %s-%s, after the settled answer at %s", r.Method, r.Path, r.Start.Format(time.StampMicro), r.End.Format(time.StampMicro), answeredAt.Format(time.StampMicro))
		}
	}
	want := map[string]model.NodeState{dead: model.NodeFailed, names[1]: model.NodeSucceeded, names[2]: model.NodeCancelled}
	for name, st := range want {
		d, err := p.Store.Node(t.Context(), id, name)
		if err != nil || d.State != st || len(d.Unknown) != 0 {
			t.Errorf("result of %s = %+v, %v, want %s with nothing unknown", name, d, err, st)
		}
	}
}

// TestForgedEventsPosted: events posted straight to the patch function
// that the batch does not vouch for — another change set, a node not in
// the batch, an attempt it does not have — change no node, count nothing,
// and are recorded on the batch as refused; the batch's own events still
// finish it.
func TestForgedEventsPosted(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 3)
	inBatch, outside := names[:2], names[2]
	gate := newGate(t, 0) // hold the batch's own writes while the forgeries arrive
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	p := startProduct(t, env, product.Options{PatchKube: proxy.RestConfig(env.PatcherConfig), InlineMax: -1})
	alice := mustToken(t, p, "alice", false)
	id := submit(t, p, alice, fmt.Sprintf(`{"labels":["forged=no"],"nodes":["%s","%s"],"concurrency":1}`, inBatch[0], inBatch[1]))
	waitHeld(t, gate, 1)

	evil := change.Set{Labels: []change.Label{{Key: "forged", Value: "yes"}}}
	good := change.Set{Labels: []change.Label{{Key: "forged", Value: "no"}}}
	base := events.Node{BatchID: id, Attempt: 1, Node: inBatch[1], Lane: 0, Position: 1, LaneSize: 2, Lanes: 1, Total: 2, Changes: good}
	forgeries := map[string]func(*events.Node){
		"another change set":          func(e *events.Node) { e.Changes = evil },
		"a node not in the batch":     func(e *events.Node) { e.Node = outside },
		"an attempt it does not have": func(e *events.Node) { e.Attempt = 2; e.Changes = evil },
	}
	for name, mutate := range forgeries {
		ev := base
		mutate(&ev)
		for _, path := range []string{"/", "/deadletter"} {
			if code := postForged(t, p.PatchURL+path, ev, gate); code != http.StatusOK {
				t.Errorf("%s posted to %s: %d, want 200 (acknowledged, refused)", name, path, code)
			}
		}
	}
	b, err := p.Store.Batch(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if b.Refused != 2*len(forgeries) || b.LastRefusal == nil {
		t.Errorf("batch refused = %d (last %+v), want %d", b.Refused, b.LastRefusal, 2*len(forgeries))
	}
	lanes, err := p.Store.Lanes(t.Context(), id, 0)
	if err != nil || len(lanes) != 1 || lanes[0].Counts.Done() != 0 {
		t.Errorf("lanes = %+v, %v: a forged event was counted", lanes, err)
	}
	gate.Open()
	if fb := waitFinal(t, p, id); fb.State != model.StateSucceeded || fb.Counts.Succeeded != 2 {
		t.Errorf("batch = %s %+v, want succeeded with 2", fb.State, fb.Counts)
	}
	kube := env.Kube(t)
	for _, name := range names {
		n, err := kube.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := "no"
		if name == outside {
			want = ""
		}
		if n.Labels["forged"] != want {
			t.Errorf("label forged of %s = %q, want %q", name, n.Labels["forged"], want)
		}
	}
}

// postForged posts ev to url (postEvent) and returns its status, or fails
// the test as soon as a write beyond the batch's own held one reaches the
// gate: the forged event is being applied.
func postForged(t *testing.T, url string, ev events.Node, g *kubeproxy.Gate) int {
	t.Helper()
	body := envelope(t, ev)
	done := make(chan int, 1)
	go func() {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case code := <-done:
			return code
		case <-tick.C:
			if g.Held() > 1 {
				t.Fatalf("forged event %s posted to %s sent a write to the API server", ev.ID(), url)
			}
		}
	}
}

// envelope is ev as Pub/Sub's push envelope.
func envelope(t *testing.T, ev events.Node) []byte {
	t.Helper()
	m, err := events.Message(ev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env := events.MessagePublishedData{
		Message:      events.PubSubMessage{Data: m.Data, Attributes: m.Attributes, MessageID: "forged-" + ev.ID()},
		Subscription: "projects/p/subscriptions/forged",
	}
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
