package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

// batchTimeout bounds how long any one batch of these tests may take; a
// 1,000-node batch with faults takes well under a minute here.
const batchTimeout = 5 * time.Minute

// startProduct starts the whole product on the shared stack; o.Project,
// o.APIKube and o.PatchKube default to a fresh project and the harness'
// identities.
func startProduct(t *testing.T, env *harness.Env, o product.Options) *product.Product {
	t.Helper()
	if o.Project == "" {
		o.Project = env.ProjectID(t)
	}
	if o.APIKube == nil {
		o.APIKube = env.PatcherConfig // nodebatch's identity: it only impersonates
	}
	if o.PatchKube == nil {
		o.PatchKube = env.PatcherConfig
	}
	p, err := product.Start(t.Context(), o)
	if err != nil {
		t.Fatalf("product.Start: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func mustToken(t *testing.T, p *product.Product, user string, admin bool) string {
	t.Helper()
	tok, err := p.Token(user, admin)
	if err != nil {
		t.Fatalf("mint token for %s: %v", user, err)
	}
	return tok
}

// call sends one request and returns the status and body.
func call(t *testing.T, method, url, token, body string, header ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// submit posts a batch and returns its id; anything but 202 fails the test.
func submit(t *testing.T, p *product.Product, token, body string) string {
	t.Helper()
	code, b := call(t, http.MethodPost, p.APIURL+"/v1/batches", token, body)
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/batches = %d %s, want 202", code, b)
	}
	var c struct {
		BatchID string `json:"batch_id"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.BatchID == "" {
		t.Fatalf("POST /v1/batches answer %s: no batch_id (%v)", b, err)
	}
	return c.BatchID
}

// wsURL is the relay's progress WebSocket URL.
func wsURL(relayURL string) string {
	return "ws" + strings.TrimPrefix(relayURL, "http") + "/v1/progress/ws"
}

// dial opens a progress WebSocket with the token as a subprotocol.
func dial(ctx context.Context, relayURL, token string, header http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{Subprotocols: []string{"nodebatch.v1", "bearer." + token}, HandshakeTimeout: 10 * time.Second}
	return d.DialContext(ctx, wsURL(relayURL), header)
}

// watcher follows one batch over the relay like a browser tab does:
// subscribe, read, and on any disconnect (a relay restart) reconnect and
// subscribe again, until the final message.
type watcher struct {
	id    string
	done  chan struct{}
	seen  chan struct{} // closed at the first message of the batch
	once  sync.Once
	mu    sync.Mutex
	final progress.Message
	err   error
	// reconnects counts connections after the first; messages counts
	// messages of the batch received.
	reconnects, messages int
}

func startWatcher(t *testing.T, relayURL, token, id string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	w := &watcher{id: id, done: make(chan struct{}), seen: make(chan struct{})}
	t.Cleanup(func() { cancel(); <-w.done })
	go func() {
		defer close(w.done)
		w.set(w.run(ctx, relayURL, token))
	}()
	return w
}

func (w *watcher) set(final progress.Message, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.final, w.err = final, err
}

// run returns the batch's final message, or why there is none.
func (w *watcher) run(ctx context.Context, relayURL, token string) (progress.Message, error) {
	last := -1
	for conns := 0; ; {
		conn, resp, err := dial(ctx, relayURL, token, nil)
		if err != nil {
			if ctx.Err() != nil {
				return progress.Message{}, fmt.Errorf("dial relay: %w (last current %d)", err, last)
			}
			if resp != nil && resp.StatusCode == http.StatusUnauthorized {
				return progress.Message{}, fmt.Errorf("dial relay: %w: 401", err)
			}
			time.Sleep(50 * time.Millisecond) // relay restarting: try again
			continue
		}
		if conns++; conns > 1 {
			w.mu.Lock()
			w.reconnects++
			w.mu.Unlock()
		}
		m, err := w.read(ctx, conn, &last)
		conn.Close()
		if err == nil {
			return m, nil
		}
		var ce *websocket.CloseError
		if ctx.Err() != nil || (!errors.As(err, &ce) && !isNetErr(err)) {
			return progress.Message{}, err
		}
	}
}

func isNetErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "use of closed network connection")
}

// read subscribes on conn and reads until the final message. Current must
// never go backwards, across reconnects too.
func (w *watcher) read(ctx context.Context, conn *websocket.Conn, last *int) (progress.Message, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.WriteJSON(map[string]string{"type": "subscribe", "task_id": w.id}); err != nil {
		return progress.Message{}, err
	}
	for {
		var m progress.Message
		if err := conn.ReadJSON(&m); err != nil {
			return progress.Message{}, err
		}
		if m.TaskID != w.id {
			continue
		}
		if m.Type == progress.TypeError && m.State == "" {
			return progress.Message{}, fmt.Errorf("subscription refused: %s", m.Message)
		}
		w.mu.Lock()
		w.messages++
		w.mu.Unlock()
		w.once.Do(func() { close(w.seen) })
		if m.Current < *last {
			return progress.Message{}, fmt.Errorf("current went backwards: %d after %d", m.Current, *last)
		}
		*last = m.Current
		if m.Final() {
			return m, nil
		}
	}
}

// waitSubscribed waits until the watcher has a subscription: it got a first
// message of the batch. It fails if the watcher has already ended.
func (w *watcher) waitSubscribed(t *testing.T) {
	t.Helper()
	select {
	case <-w.seen:
	case <-w.done:
	}
	select {
	case <-w.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		t.Fatalf("watcher of %s ended before the test could act (final %s %s, error %v)", w.id, w.final.Type, w.final.State, w.err)
	default:
	}
}

// wait returns the final message the watcher saw.
func (w *watcher) wait(t *testing.T) progress.Message {
	t.Helper()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("watcher of %s: %v", w.id, w.err)
	}
	return w.final
}

// newGate returns a kubeproxy gate that lets n mutations through and then
// holds the rest, to put a fault in the middle of a batch by construction
// rather than by timing: a node whose write is held cannot finish, so
// neither can its batch, however fast the pipeline is. It is opened when
// the test ends, so nothing stays stuck.
func newGate(t *testing.T, n int) *kubeproxy.Gate {
	t.Helper()
	g := kubeproxy.NewGate()
	g.CloseAfter(n)
	t.Cleanup(g.Open)
	return g
}

// waitHeld waits until n patches are held at the gate.
func waitHeld(t *testing.T, g *kubeproxy.Gate, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), batchTimeout)
	defer cancel()
	if err := g.WaitHeld(ctx, n); err != nil {
		t.Fatalf("batch never reached the gate: %v", err)
	}
}

// requireRunning fails the test unless batch id is still running: a fault
// meant for the middle of a batch must not silently land after its end.
func requireRunning(t *testing.T, p *product.Product, id string) {
	t.Helper()
	b, err := p.Store.Batch(t.Context(), id)
	if err != nil {
		t.Fatalf("read batch %s: %v", id, err)
	}
	if b.State.Final() {
		t.Fatalf("batch %s is already %s: the fault would not land mid-batch", id, b.State)
	}
}

// outcome is what a batch must end with.
type outcome struct {
	state  model.State
	counts model.Counts
	// nodeStates is the expected state of particular nodes (the rest:
	// succeeded).
	nodeStates map[string]model.NodeState
	// maxUnchanged allows up to this many nodes to be found already in the
	// target state (counts.Unchanged is then not compared exactly): a
	// patch function killed after its write to the API server but before
	// recording it leaves such nodes, and their redelivery rightly records
	// them succeeded and unchanged.
	maxUnchanged int
}

// checkCounts compares counts against want.counts (see maxUnchanged).
func checkCounts(t *testing.T, what string, want outcome, got model.Counts) {
	t.Helper()
	w := want.counts
	if want.maxUnchanged > 0 {
		if got.Unchanged > want.maxUnchanged {
			t.Errorf("%s: unchanged = %d, want at most %d", what, got.Unchanged, want.maxUnchanged)
		}
		w.Unchanged = got.Unchanged
	}
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, diff)
	}
}

// verifyBatch checks the stored truth of a finished batch: its final state
// and counts, lanes that count every node exactly once (bits and counts),
// and exactly one result document per node, in the expected state.
func verifyBatch(t *testing.T, p *product.Product, id string, names []string, want outcome) []store.NodeDoc {
	t.Helper()
	ctx := t.Context()
	b, err := p.Store.Batch(ctx, id)
	if err != nil {
		t.Fatalf("read batch %s: %v", id, err)
	}
	if b.State != want.state {
		t.Errorf("batch state = %s (reason %q), want %s", b.State, b.Reason, want.state)
	}
	checkCounts(t, "batch counts", want, b.Counts)
	lanes, err := p.Store.Lanes(ctx, id, 0)
	if err != nil {
		t.Fatalf("read lanes of %s: %v", id, err)
	}
	var sum model.Counts
	bitsSet, size := 0, 0
	for _, l := range lanes {
		sum = sum.Add(l.Counts)
		size += l.Size
		for _, by := range l.DoneBits {
			bitsSet += bits.OnesCount8(by)
		}
		if l.Counts.Done() != l.Size {
			t.Errorf("lane %d: done %d, want its size %d", l.Lane, l.Counts.Done(), l.Size)
		}
	}
	if size != len(names) || bitsSet != len(names) || sum.Done() != len(names) {
		t.Errorf("lanes: size %d, bits set %d, counted %d; want %d each (every node counted exactly once)", size, bitsSet, sum.Done(), len(names))
	}
	checkCounts(t, "sum of lane counts", want, sum)
	var docs []store.NodeDoc
	after := ""
	for {
		page, next, err := p.Store.Nodes(ctx, id, after, 1000)
		if err != nil {
			t.Fatalf("read node results of %s: %v", id, err)
		}
		docs = append(docs, page...)
		if next == "" {
			break
		}
		after = next
	}
	got := make([]string, len(docs))
	states := map[string]model.NodeState{}
	for i, d := range docs {
		got[i] = d.Node
		states[d.Node] = d.State
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(names)), got); diff != "" {
		t.Errorf("node result documents mismatch (-want +got):\n%s", diff)
	}
	wantStates := map[string]model.NodeState{}
	for _, n := range names {
		wantStates[n] = model.NodeSucceeded
		if s, ok := want.nodeStates[n]; ok {
			wantStates[n] = s
		}
	}
	if diff := cmp.Diff(wantStates, states); diff != "" {
		t.Errorf("node result states mismatch (-want +got):\n%s", diff)
	}
	return docs
}

// verifyFinal checks what a watching client saw last.
func verifyFinal(t *testing.T, who string, m progress.Message, total int, want outcome) {
	t.Helper()
	wantType := progress.TypeComplete
	if want.state == model.StateFailed {
		wantType = progress.TypeError
	}
	if m.Type != wantType || m.State != want.state || m.Current != total || m.Total != total {
		t.Errorf("%s: final message type %s state %s current %d/%d, want %s %s %d/%d", who, m.Type, m.State, m.Current, m.Total, wantType, want.state, total, total)
	}
	checkCounts(t, who+": final counts", want, m.Counts)
}

// taintsOf reads the taints of every node.
func taintsOf(t *testing.T, kube kubernetes.Interface, prefix string) map[string][]corev1.Taint {
	t.Helper()
	list, err := kube.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: harness.TestLabel + "=" + prefix})
	if err != nil {
		t.Fatalf("list nodes %s: %v", prefix, err)
	}
	out := map[string][]corev1.Taint{}
	for _, n := range list.Items {
		out[n.Name] = n.Spec.Taints
	}
	return out
}

// verifyNodes checks the nodes on the API server: every node of names
// except the skipped ones has label key=value, and exactly the taints it had
// before plus the batch's taint (nothing another writer added is lost:
// extra lists those per node).
func verifyNodes(t *testing.T, kube kubernetes.Interface, prefix string, names []string, label [2]string, taint corev1.Taint,
	before map[string][]corev1.Taint, extra map[string][]corev1.Taint, skip map[string]bool) {
	t.Helper()
	list, err := kube.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: harness.TestLabel + "=" + prefix})
	if err != nil {
		t.Fatalf("list nodes %s: %v", prefix, err)
	}
	have := map[string]*corev1.Node{}
	for i := range list.Items {
		have[list.Items[i].Name] = &list.Items[i]
	}
	key := func(tn corev1.Taint) string { return tn.Key + "=" + tn.Value + ":" + string(tn.Effect) }
	bad := 0
	for _, name := range names {
		if skip[name] {
			continue
		}
		n := have[name]
		if n == nil {
			t.Errorf("node %s is missing", name)
			continue
		}
		if got := n.Labels[label[0]]; got != label[1] {
			bad++
			if bad <= 5 {
				t.Errorf("node %s label %s = %q, want %q", name, label[0], got, label[1])
			}
		}
		var want, got []string
		for _, tn := range before[name] {
			want = append(want, key(tn))
		}
		for _, tn := range extra[name] {
			want = append(want, key(tn))
		}
		want = append(want, key(taint))
		for _, tn := range n.Spec.Taints {
			got = append(got, key(tn))
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			bad++
			if bad <= 5 {
				t.Errorf("node %s taints mismatch (-want +got):\n%s", name, diff)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d nodes wrong in all", bad)
	}
}

// prettyJSON is for failure messages.
func prettyJSON(b []byte) string {
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		return string(b)
	}
	return buf.String()
}
