package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/shared/telemetry"

	dto "github.com/prometheus/client_model/go"
)

// otlpReceiver is an in-process OTLP trace receiver (the collector's gRPC
// trace service): it keeps every span exported to it.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// named returns the spans called name whose string attribute key is value.
func (r *otlpReceiver) named(name, key, value string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.GetName() == name && attr(s, key) == value {
			out = append(out, s)
		}
	}
	return out
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			if v := kv.GetValue(); v.GetStringValue() != "" {
				return v.GetStringValue()
			} else {
				return fmt.Sprint(v.GetIntValue())
			}
		}
	}
	return ""
}

func startReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rcv := &otlpReceiver{}
	collectortrace.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return rcv, ln.Addr().String()
}

// scrape reads url's Prometheus text with the Prometheus parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, want 200", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// sum adds the values of family name's series whose labels include want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	f := fams[name]
	if f == nil {
		return 0
	}
series:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue series
			}
		}
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func familyNames(fams map[string]*dto.MetricFamily) string {
	var names []string
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

const telemetryNodes = 200

// TestTelemetry: a 200-node batch with tracing exported over OTLP to an
// in-process receiver and the API server answering some first writes 409
// or 503 and some nodes' writes 422. The submit is one trace; every node's
// patch span is linked to it across the Pub/Sub hop; a retry links to the
// batch; /metrics, parsed with the Prometheus parser, counts exactly the
// batch's results, the injected answers and the redeliveries.
func TestTelemetry(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, telemetryNodes)
	rcv, addr := startReceiver(t)
	getenv := func(k string) string {
		return map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + addr,
			"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
			"OTEL_METRICS_EXPORTER":              "prometheus",
			"OTEL_SERVICE_NAME":                  "nodebatch-e2e",
		}[k]
	}
	tel, err := telemetry.Setup(t.Context(), getenv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	if !tel.Tracing() {
		t.Fatal("tracing is off with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set")
	}

	var failing atomic.Bool
	failing.Store(true)
	var injected sync.Map // status code → *atomic.Int64
	count := func(code int) {
		v, _ := injected.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	var requests requestCounter
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Fault: func(r *http.Request) *kubeproxy.Fault {
		node := kubeproxy.NodeName(r.URL.Path)
		if node == "" || (r.Method != http.MethodPatch && r.Method != http.MethodPut) {
			return nil
		}
		i := requests.next(r, node)
		switch h := hashOf(node) % 10; {
		case h == 0 && i == 0:
			count(http.StatusConflict)
			return &kubeproxy.Fault{Status: http.StatusConflict}
		case h == 1 && i == 0:
			count(http.StatusServiceUnavailable)
			return &kubeproxy.Fault{Status: http.StatusServiceUnavailable}
		case h == 2 && failing.Load():
			count(http.StatusUnprocessableEntity)
			return &kubeproxy.Fault{Status: http.StatusUnprocessableEntity, Message: "injected: invalid"}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	p := startProduct(t, env, product.Options{PatchKube: proxy.RestConfig(env.PatcherConfig), Telemetry: tel, MaxAttempts: 10})
	alice := mustToken(t, p, "alice", false)

	body := fmt.Sprintf(`{"labels":["obs=%s"],"selector":"%s=%s","concurrency":10,"max_nodes":%d}`, prefix, harness.TestLabel, prefix, telemetryNodes)
	id := submit(t, p, alice, body)
	b := waitFinal(t, p, id)
	injectedN := func(code int) int64 {
		v, ok := injected.Load(code)
		if !ok {
			return 0
		}
		return v.(*atomic.Int64).Load()
	}
	failed := int(injectedN(http.StatusUnprocessableEntity))
	if failed == 0 || injectedN(http.StatusConflict) == 0 || injectedN(http.StatusServiceUnavailable) == 0 {
		t.Fatalf("the faults hit no node (409: %d, 503: %d, 422: %d): pick other hashes", injectedN(409), injectedN(503), failed)
	}
	if b.Counts.Failed != failed || b.Counts.Succeeded != len(names)-failed {
		t.Fatalf("batch counts = %+v, want %d failed, %d succeeded", b.Counts, failed, len(names)-failed)
	}

	// The submit trace: the publish span, and one patch span per node
	// (more for redelivered ones), each linked to the submit's trace.
	var publish []*tracepb.Span
	wait.For(waitCtx(t), t, "the submit's publish span", func() error {
		publish = rcv.named("publish node events", "", "")
		return wantCount("publish spans", len(publish), 1)
	})
	submitTrace := publish[0].GetTraceId()
	linkedTo := func(s *tracepb.Span, traceID []byte) bool {
		return slices.ContainsFunc(s.GetLinks(), func(l *tracepb.Span_Link) bool { return bytes.Equal(l.GetTraceId(), traceID) })
	}
	nodesLinked := func(attempt int, traceID []byte) (map[string]bool, []string) {
		seen := map[string]bool{}
		var bad []string
		for _, s := range rcv.named("patch node", "nodebatch.batch.id", id) {
			if attr(s, "nodebatch.attempt") != fmt.Sprint(attempt) {
				continue
			}
			if !linkedTo(s, traceID) || bytes.Equal(s.GetTraceId(), traceID) {
				bad = append(bad, attr(s, "nodebatch.node"))
			}
			seen[attr(s, "nodebatch.node")] = true
		}
		return seen, bad
	}
	wait.For(waitCtx(t), t, "a patch span of every node", func() error {
		seen, _ := nodesLinked(1, submitTrace)
		return wantCount("nodes with a linked patch span", len(seen), len(names))
	})
	if _, bad := nodesLinked(1, submitTrace); len(bad) > 0 {
		t.Errorf("%d patch spans are not linked to the submit trace %s (or are in it): %v", len(bad), hex.EncodeToString(submitTrace), bad[:min(len(bad), 5)])
	}
	if n := len(rcv.named("list nodes", "", "")); n != 1 {
		t.Errorf("list nodes spans = %d, want 1", n)
	}

	// Metrics: the batch's counts, the injected answers, the redeliveries
	// (waited for: a redelivery may still be counted after the batch ended).
	var fams map[string]*dto.MetricFamily
	wait.For(waitCtx(t), t, "/metrics to count the batch", func() error {
		fams = scrape(t, p.PatchURL+telemetry.MetricsPath)
		st := p.Deliverer.Stats()
		checks := []struct {
			what string
			got  float64
			want float64
		}{
			{"succeeded", sum(fams, "nodebatch_node_patches_total", map[string]string{"nodebatch_outcome": "succeeded"}), float64(b.Counts.Succeeded - b.Counts.Unchanged)},
			{"unchanged", sum(fams, "nodebatch_node_patches_total", map[string]string{"nodebatch_outcome": "unchanged"}), float64(b.Counts.Unchanged)},
			{"failed invalid", sum(fams, "nodebatch_node_patches_total", map[string]string{"nodebatch_outcome": "failed", "nodebatch_reason_class": "invalid"}), float64(failed)},
			{"all recorded", sum(fams, "nodebatch_node_patches_total", nil), float64(len(names))},
			{"latencies", sum(fams, "nodebatch_node_patch_duration_seconds", nil), float64(len(names))},
			{"409 answers", sum(fams, "nodebatch_kube_error_responses_total", map[string]string{"http_response_status_code": "409"}), float64(injectedN(http.StatusConflict))},
			{"503 answers", sum(fams, "nodebatch_kube_error_responses_total", map[string]string{"http_response_status_code": "503"}), float64(injectedN(http.StatusServiceUnavailable))},
			{"422 answers", sum(fams, "nodebatch_kube_error_responses_total", map[string]string{"http_response_status_code": "422"}), 0}, // not counted: only 409, 429, 5xx
			{"conflicts", sum(fams, "nodebatch_kube_conflicts_total", nil), float64(injectedN(http.StatusConflict))},
			{"redeliveries", sum(fams, "nodebatch_node_redeliveries_total", nil), float64(st.Retried)},
			{"dead letters", sum(fams, "nodebatch_events_dead_lettered_total", nil), float64(st.DeadLettered)},
			{"published", sum(fams, "nodebatch_events_published_total", nil), float64(len(names))},
			{"started fanout", sum(fams, "nodebatch_batches_started_total", map[string]string{"nodebatch_batch_mode": "fanout", "nodebatch_batch_kind": "new"}), 1},
			{"finished", sum(fams, "nodebatch_batches_finished_total", map[string]string{"nodebatch_batch_state": string(b.State)}), 1},
			{"batch durations", sum(fams, "nodebatch_batch_duration_seconds", nil), 1},
		}
		var bad []string
		for _, c := range checks {
			if c.got != c.want {
				bad = append(bad, fmt.Sprintf("%s = %v, want %v", c.what, c.got, c.want))
			}
		}
		if st.Retried < injectedN(http.StatusServiceUnavailable) {
			bad = append(bad, fmt.Sprintf("deliverer retried %d pushes, want at least the %d injected 503s", st.Retried, injectedN(http.StatusServiceUnavailable)))
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s (metric families: %s)", strings.Join(bad, "; "), familyNames(fams))
		}
		return nil
	})

	// A retry of the failed nodes links to the batch's trace; its nodes
	// link to the retry.
	failing.Store(false)
	if code, out := call(t, http.MethodPost, p.APIURL+"/v1/batches/"+id+":retry", alice, "{}"); code != http.StatusAccepted {
		t.Fatalf("POST :retry = %d %s, want 202", code, out)
	}
	wait.For(waitCtx(t), t, "the retry to end", func() error {
		if b, err = p.Store.Batch(t.Context(), id); err != nil {
			return err
		}
		if b.Attempt != 2 || !b.State.Final() {
			return fmt.Errorf("attempt %d, state %s", b.Attempt, b.State)
		}
		return nil
	})
	var retry []*tracepb.Span
	wait.For(waitCtx(t), t, "the retry span", func() error {
		retry = rcv.named("retry", "nodebatch.batch.id", id)
		return wantCount("retry spans", len(retry), 1)
	})
	if !linkedTo(retry[0], submitTrace) {
		t.Errorf("the retry span is not linked to the batch's trace %s", hex.EncodeToString(submitTrace))
	}
	wait.For(waitCtx(t), t, "a patch span of every retried node", func() error {
		seen, _ := nodesLinked(2, retry[0].GetTraceId())
		return wantCount("retried nodes with a linked patch span", len(seen), failed)
	})
	if _, bad := nodesLinked(2, retry[0].GetTraceId()); len(bad) > 0 {
		t.Errorf("retried nodes not linked to the retry: %v", bad)
	}
	wait.For(waitCtx(t), t, "/metrics to count the retry", func() error {
		fams = scrape(t, p.RelayURL+telemetry.MetricsPath) // one process here: the same registry
		if got := sum(fams, "nodebatch_batches_finished_total", nil); got != 2 {
			return fmt.Errorf("finished batches = %v after the retry, want 2", got)
		}
		ok := sum(fams, "nodebatch_node_patches_total", map[string]string{"nodebatch_outcome": "succeeded"}) + sum(fams, "nodebatch_node_patches_total", map[string]string{"nodebatch_outcome": "unchanged"})
		return wait.True(ok == float64(len(names)), "succeeded nodes = %v after the retry, want %d", ok, len(names))
	})
}

// wantCount is nil when got is want, else what was seen, for wait.For.
func wantCount(what string, got, want int) error {
	if got != want {
		return fmt.Errorf("%s: %d, want %d", what, got, want)
	}
	return nil
}
