package kubeproxy_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/wait"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

func TestNodeName(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"/api/v1/nodes/node-1":        "node-1",
		"/api/v1/nodes/node-1/status": "node-1",
		"/api/v1/nodes":               "",
		"/api/v1/namespaces/x/pods/y": "",
		"/apis/x/v1/nodes/n":          "",
	}
	for in, want := range tests {
		if got := kubeproxy.NodeName(in); got != want {
			t.Errorf("NodeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func newProxy(t *testing.T, env *harness.Env, opts kubeproxy.Options) (*kubeproxy.Proxy, kubernetes.Interface) {
	t.Helper()
	p, err := kubeproxy.New(env.APIServerURL, opts)
	if err != nil {
		t.Fatalf("kubeproxy.New: %v", err)
	}
	t.Cleanup(p.Close)
	cfg := p.RestConfig(env.AdminConfig)
	cfg.QPS, cfg.Burst = 200, 400
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset through proxy: %v", err)
	}
	return p, c
}

func labelPatch(v string) []byte {
	return []byte(fmt.Sprintf(`{"metadata":{"labels":{"nodebatch.dev/proxy":%q}}}`, v))
}

// TestCountsAndConcurrency: 5 workers patch 20 nodes through the proxy. The
// first 5 mutations are held at a barrier until all 5 have arrived, so the
// proxy must see exactly 5 in flight at once, and never more.
func TestCountsAndConcurrency(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, 20)
	const workers = 5
	var arrived atomic.Int32
	barrier := make(chan struct{})
	p, c := newProxy(t, env, kubeproxy.Options{
		Latency: 10 * time.Millisecond,
		Group: func(r *http.Request) string {
			if strings.HasPrefix(kubeproxy.NodeName(r.URL.Path), prefix) {
				return prefix
			}
			return "other"
		},
		Fault: func(r *http.Request) *kubeproxy.Fault {
			if r.Method == http.MethodPatch {
				if n := arrived.Add(1); n == workers {
					close(barrier)
				} else if n < workers {
					select { // bounded, so a broken proxy fails the test instead of hanging it
					case <-barrier:
					case <-time.After(time.Minute):
					}
				}
			}
			return nil
		},
	})
	jobs := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				if _, err := c.CoreV1().Nodes().Patch(context.Background(), n, types.MergePatchType, labelPatch("a"), metav1.PatchOptions{}); err != nil {
					errs <- fmt.Errorf("patch %s: %w", n, err)
				}
			}
		}()
	}
	for _, n := range names {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	s := p.Stats()
	want := map[string]int{}
	for _, n := range names {
		want[n] = 1
	}
	if diff := cmp.Diff(want, s.Mutations); diff != "" {
		t.Errorf("Mutations mismatch (-want +got):\n%s", diff)
	}
	if s.MaxInFlight != workers {
		t.Errorf("MaxInFlight = %d, want %d", s.MaxInFlight, workers)
	}
	if diff := cmp.Diff(map[string]int{prefix: workers}, s.MaxInFlightByGroup); diff != "" {
		t.Errorf("MaxInFlightByGroup mismatch (-want +got):\n%s", diff)
	}
	if len(s.Log) != len(names) {
		t.Fatalf("Log has %d entries, want %d", len(s.Log), len(names))
	}
	for _, r := range s.Log {
		if r.Method != http.MethodPatch || r.Status != http.StatusOK || r.Fault || r.End.Before(r.Start) || r.Group != prefix {
			t.Errorf("log entry %+v, want a PATCH answered 200 by the API server in group %s", r, prefix)
		}
		if d := r.End.Sub(r.Start); d < 10*time.Millisecond {
			t.Errorf("request %s took %v through a proxy adding 10ms latency", r.Path, d)
		}
	}
	if s.Requests < len(names) {
		t.Errorf("Requests = %d, want at least %d", s.Requests, len(names))
	}
}

// TestRetryAfterVisible: the first PATCH is answered 429 with Retry-After: 1;
// client-go waits that long, retries, and succeeds.
func TestRetryAfterVisible(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	var injected atomic.Bool
	p, c := newProxy(t, env, kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		if r.Method == http.MethodPatch && injected.CompareAndSwap(false, true) {
			return &kubeproxy.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second}
		}
		return nil
	}})
	if _, err := c.CoreV1().Nodes().Patch(context.Background(), names[0], types.MergePatchType, labelPatch("b"), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch through a 429: %v", err)
	}
	s := p.Stats()
	if len(s.Log) != 2 || s.Faults != 1 {
		t.Fatalf("log = %+v, faults = %d; want 2 requests, 1 injected", s.Log, s.Faults)
	}
	if !s.Log[0].Fault || s.Log[0].Status != http.StatusTooManyRequests || s.Log[1].Fault || s.Log[1].Status != http.StatusOK {
		t.Errorf("log = %+v, want an injected 429 then a 200", s.Log)
	}
	if gap := s.Log[1].Start.Sub(s.Log[0].End); gap < time.Second-50*time.Millisecond {
		t.Errorf("client retried %v after the 429, want it to honour Retry-After: 1", gap)
	}
	if s.Mutations[names[0]] != 2 {
		t.Errorf("Mutations[%s] = %d, want 2", names[0], s.Mutations[names[0]])
	}
}

// TestInjectedStatusErrors: injected answers decode into the apierrors a
// caller classifies (no client-side retry, to see the raw answer).
func TestInjectedStatusErrors(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	tests := []struct {
		fault kubeproxy.Fault
		check func(error) bool
		delay time.Duration
	}{
		{kubeproxy.Fault{Status: http.StatusTooManyRequests, RetryAfter: 2 * time.Second}, apierrors.IsTooManyRequests, 2 * time.Second},
		{kubeproxy.Fault{Status: http.StatusConflict}, apierrors.IsConflict, 0},
		{kubeproxy.Fault{Status: http.StatusInternalServerError}, apierrors.IsInternalError, 0},
		{kubeproxy.Fault{Status: http.StatusServiceUnavailable}, apierrors.IsServiceUnavailable, 0},
		{kubeproxy.Fault{Status: http.StatusUnprocessableEntity, Message: "=1+1 refused"}, apierrors.IsInvalid, 0},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.fault.Status), func(t *testing.T) {
			f := tt.fault
			p, c := newProxy(t, env, kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault { return &f }})
			err := c.CoreV1().RESTClient().Patch(types.MergePatchType).Resource("nodes").Name(names[0]).
				Body(labelPatch("c")).MaxRetries(0).Do(context.Background()).Error()
			if err == nil || !tt.check(err) {
				t.Fatalf("patch error = %v, want status %d", err, f.Status)
			}
			secs, ok := apierrors.SuggestsClientDelay(err)
			if got := time.Duration(secs) * time.Second; ok != (tt.delay > 0) || got != tt.delay {
				t.Errorf("SuggestsClientDelay = %v, %v; want %v", got, ok, tt.delay)
			}
			want := f.Message
			if want == "" {
				want = fmt.Sprintf("injected by kubeproxy: %d %s", f.Status, http.StatusText(f.Status))
			}
			if err.Error() != want {
				t.Errorf("patch error = %q, want the message %q", err.Error(), want)
			}
			if s := p.Stats(); s.Faults != 1 || len(s.Log) != 1 || s.Log[0].Status != f.Status {
				t.Errorf("stats = %+v, want one injected %d", s, f.Status)
			}
		})
	}
}

// TestTimeoutFault: a delay longer than the client's timeout is a timeout
// for the client; the request never reaches the API server.
func TestTimeoutFault(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	p, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		if r.Method == http.MethodPatch {
			return &kubeproxy.Fault{Delay: time.Minute}
		}
		return nil
	}})
	if err != nil {
		t.Fatalf("kubeproxy.New: %v", err)
	}
	defer p.Close()
	cfg := p.RestConfig(env.AdminConfig)
	cfg.Timeout = 300 * time.Millisecond
	c := kubernetes.NewForConfigOrDie(cfg)
	_, err = c.CoreV1().Nodes().Patch(context.Background(), names[0], types.MergePatchType, labelPatch("d"), metav1.PatchOptions{})
	if err == nil {
		t.Fatal("patch through a one-minute delay succeeded, want a timeout")
	}
	n, err := env.Kube(t).CoreV1().Nodes().Get(context.Background(), names[0], metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	if _, ok := n.Labels["nodebatch.dev/proxy"]; ok {
		t.Errorf("the delayed patch reached the API server: labels %v", n.Labels)
	}
}

// TestLatencyAndWatch: latency is added to every request, and a watch
// through the proxy streams events as they happen.
func TestLatencyAndWatch(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	const latency = 200 * time.Millisecond
	p, c := newProxy(t, env, kubeproxy.Options{Latency: latency})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	n, err := c.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get through proxy: %v", err)
	}
	if d := time.Since(start); d < latency {
		t.Errorf("GET took %v through a proxy adding %v", d, latency)
	}
	w, err := c.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + names[0], ResourceVersion: n.ResourceVersion})
	if err != nil {
		t.Fatalf("watch through proxy: %v", err)
	}
	defer w.Stop()
	if _, err := env.Kube(t).CoreV1().Nodes().Patch(ctx, names[0], types.MergePatchType, labelPatch("w"), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch directly: %v", err)
	}
	select {
	case ev, ok := <-w.ResultChan():
		if !ok || ev.Type != watch.Modified {
			t.Fatalf("watch event = %v (open %v), want Modified", ev.Type, ok)
		}
	case <-ctx.Done():
		t.Fatal("no watch event through the proxy within a minute: the watch does not stream")
	}
	if s := p.Stats(); s.Requests != 2 || len(s.Log) != 0 {
		t.Errorf("stats = %+v, want 2 reads and no mutation", s)
	}
}

// TestGate: a gate closed after 4 mutations lets exactly 4 reach the API
// server while 3 workers keep sending; each worker's next patch waits at
// the gate (in flight, logged, unanswered) until Open, then all finish.
// Reads pass a closed gate, and a held request whose client gives up is
// dropped without reaching the API server.
func TestGate(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, 10)
	const workers, pass = 3, 4
	gate := kubeproxy.NewGate()
	gate.CloseAfter(pass)
	p, c := newProxy(t, env, kubeproxy.Options{Gate: gate})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	jobs := make(chan string, len(names))
	for _, n := range names {
		jobs <- n
	}
	close(jobs)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := range jobs {
				if _, err := c.CoreV1().Nodes().Patch(ctx, n, types.MergePatchType, labelPatch("gate"), metav1.PatchOptions{}); err != nil {
					errs <- fmt.Errorf("patch %s: %w", n, err)
				}
			}
		})
	}
	if err := gate.WaitHeld(ctx, workers); err != nil {
		t.Fatalf("WaitHeld: %v", err)
	}
	labelled := func() int {
		t.Helper()
		list, err := env.Kube(t).CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: harness.TestLabel + "=" + prefix + ",nodebatch.dev/proxy=gate"})
		if err != nil {
			t.Fatalf("list nodes: %v", err)
		}
		return len(list.Items)
	}
	if got := labelled(); got != pass {
		t.Errorf("nodes patched while the gate holds = %d, want %d", got, pass)
	}
	if _, err := c.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{}); err != nil {
		t.Errorf("GET through a closed gate: %v", err)
	}
	s := p.Stats()
	unanswered := 0
	for _, r := range s.Log {
		if r.End.IsZero() {
			unanswered++
		}
	}
	if len(s.Log) != pass+workers || unanswered != workers || s.MaxInFlight != workers || gate.Held() != workers {
		t.Errorf("while held: %d mutations logged, %d unanswered, max in flight %d, held %d; want %d, %d, %d, %d",
			len(s.Log), unanswered, s.MaxInFlight, gate.Held(), pass+workers, workers, workers, workers)
	}

	gate.Open()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := labelled(); got != len(names) {
		t.Errorf("nodes patched after Open = %d, want %d", got, len(names))
	}

	// A client that gives up while held: dropped, never forwarded.
	gate.CloseAfter(0)
	short, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if _, err := c.CoreV1().Nodes().Patch(short, names[0], types.MergePatchType, labelPatch("dropped"), metav1.PatchOptions{}); err == nil {
		t.Fatal("patch through a closed gate succeeded, want the client's deadline")
	}
	if err := waitHeldZero(ctx, gate); err != nil {
		t.Fatal(err)
	}
	gate.Open()
	n, err := env.Kube(t).CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	if got := n.Labels["nodebatch.dev/proxy"]; got != "gate" {
		t.Errorf("label after a dropped held patch = %q, want %q (the dropped patch reached the API server)", got, "gate")
	}
}

// waitHeldZero waits until nothing is held (a dropped request has left).
func waitHeldZero(ctx context.Context, g *kubeproxy.Gate) error {
	return wait.Until(ctx, "no request held", func() error {
		return wait.True(g.Held() == 0, "%d requests still held", g.Held())
	})
}
