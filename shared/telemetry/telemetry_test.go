package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSignalOn(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		signal   string
		on       bool
		endpoint string
	}{
		{"nothing set", nil, "TRACES", false, ""},
		{"generic endpoint, http", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "TRACES", true, "http://c:4318/v1/traces"},
		{"generic endpoint, grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "METRICS", true, "http://c:4317"},
		{"specific endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/x"}, "TRACES", true, "http://c:4318/x"},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, "TRACES", false, ""},
		{"exporter otlp, default endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "TRACES", true, ""},
		{"metrics prometheus only", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "prometheus"}, "METRICS", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			on, endpoint := signalOn(env(tt.env), tt.signal)
			if on != tt.on || endpoint != tt.endpoint {
				t.Errorf("signalOn(%s) = %v, %q, want %v, %q", tt.signal, on, endpoint, tt.on, tt.endpoint)
			}
		})
	}
}

func TestOffIsNoop(t *testing.T) {
	tel, err := Setup(t.Context(), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Tracing() {
		t.Fatal("Tracing() = true with no exporter configured")
	}
	ctx, span := tel.Start(t.Context(), "x")
	if span.IsRecording() || trace.SpanContextFromContext(ctx).IsValid() {
		t.Errorf("Start with tracing off made a recording or valid span")
	}
	// Off, Handler adds no span and no flush: the wrapped handler sees the
	// request as sent, and /metrics is still served.
	var seen bool
	h := tel.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = !trace.SpanContextFromContext(r.Context()).IsValid()
	}), "op")
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	if !seen {
		t.Error("handler with tracing off: request has a span")
	}
	tel.Metrics().NodeRecorded(t.Context(), OutcomeFailed, "invalid", 0)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, MetricsPath, nil))
	b, _ := io.ReadAll(rec.Body)
	if want := `nodebatch_node_patches_total{nodebatch_outcome="failed",nodebatch_reason_class="invalid"} 1`; !strings.Contains(string(b), want) {
		t.Errorf("GET /metrics = %d, missing %q in:\n%s", rec.Code, want, b)
	}
}

func TestMetricsNotServedWhenExporterExcludesPrometheus(t *testing.T) {
	tel, err := Setup(t.Context(), env(map[string]string{"OTEL_METRICS_EXPORTER": "none"}))
	if err != nil {
		t.Fatal(err)
	}
	called := false
	h := tel.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }), "op")
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, MetricsPath, nil))
	if !called {
		t.Error("GET /metrics was answered by telemetry with OTEL_METRICS_EXPORTER=none")
	}
}

// TestBatchSampler: a span linked to a batch follows the batch's decision,
// whatever its parent decided; other spans are parent-based.
func TestBatchSampler(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(BatchSampler(sdktrace.NeverSample())), sdktrace.WithSyncer(exp))
	tel := &Telemetry{tp: tp, sdkTP: tp, tracer: tp.Tracer(ScopeName)}
	sc := func(sampled bool, id byte) trace.SpanContext {
		c := trace.SpanContextConfig{TraceID: trace.TraceID{id}, SpanID: trace.SpanID{id}, Remote: true}
		if sampled {
			c.TraceFlags = trace.FlagsSampled
		}
		return trace.NewSpanContext(c)
	}
	tests := []struct {
		name          string
		parent, batch trace.SpanContext
		want          bool
	}{
		{"root, no batch: root sampler (never)", trace.SpanContext{}, trace.SpanContext{}, false},
		{"sampled parent, no batch", sc(true, 1), trace.SpanContext{}, true},
		{"unsampled parent, sampled batch", sc(false, 2), sc(true, 3), true},
		{"sampled parent, unsampled batch", sc(true, 4), sc(false, 5), false},
		{"root, sampled batch", trace.SpanContext{}, sc(true, 6), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := trace.ContextWithRemoteSpanContext(context.Background(), tt.parent)
			_, span := tel.StartLinked(ctx, "n", tt.batch)
			got := span.SpanContext().IsSampled()
			span.End()
			if got != tt.want {
				t.Errorf("sampled = %v, want %v", got, tt.want)
			}
			if tt.parent.IsValid() && span.SpanContext().TraceID() != tt.parent.TraceID() {
				t.Errorf("trace id = %s, want the parent's %s (the batch is a link, not the parent)", span.SpanContext().TraceID(), tt.parent.TraceID())
			}
		})
	}
}

func TestTraceParentRoundTrip(t *testing.T) {
	want := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9, 8}, SpanID: trace.SpanID{7}, TraceFlags: trace.FlagsSampled, Remote: true})
	tp := TraceParent(trace.ContextWithSpanContext(context.Background(), want))
	if tp == "" {
		t.Fatal("TraceParent = \"\"")
	}
	got := ParseTraceParent(tp, "")
	if diff := cmp.Diff(want.TraceID().String()+want.SpanID().String(), got.TraceID().String()+got.SpanID().String()); diff != "" || !got.IsSampled() {
		t.Errorf("ParseTraceParent(TraceParent(x)) (-want +got):\n%s sampled=%v", diff, got.IsSampled())
	}
	if ParseTraceParent("garbage", "").IsValid() || TraceParent(context.Background()) != "" {
		t.Error("invalid input gave a valid span context")
	}
}

func TestNewSamplerRejectsBadArg(t *testing.T) {
	for _, e := range []map[string]string{
		{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
		{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
	} {
		if _, err := newSampler(env(e)); err == nil {
			t.Errorf("newSampler(%v) = nil error, want one", e)
		}
	}
}

// TestInstruments: the list is what the code creates, each name valid for
// Google's Telemetry API ([a-zA-Z][a-zA-Z0-9_:./]*), and the relay's
// gauges are in it.
func TestInstruments(t *testing.T) {
	got := Instruments()
	if len(got) != 16 {
		t.Errorf("Instruments() has %d entries, want 16: %v", len(got), got)
	}
	valid := regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_:./]*$`)
	kinds := map[string]string{}
	for _, in := range got {
		if !valid.MatchString(in.Name) || in.Unit == "" {
			t.Errorf("instrument %+v: name not valid for the Telemetry API, or no unit", in)
		}
		kinds[in.Name] = in.Kind
	}
	want := map[string]string{"nodebatch.node.patches": "counter", "nodebatch.node.patch.duration": "histogram", "nodebatch.relay.connections": "updowncounter", "nodebatch.relay.watchers": "updowncounter"}
	for name, kind := range want {
		if kinds[name] != kind {
			t.Errorf("instrument %s kind = %q, want %q", name, kinds[name], kind)
		}
	}
}

// fakeMetadata is a GCE metadata server (GCE_METADATA_HOST) that counts
// its requests.
func fakeMetadata(t *testing.T) *atomic.Int64 {
	t.Helper()
	var calls atomic.Int64
	values := map[string]string{
		"/computeMetadata/v1/project/project-id":         "proj-1",
		"/computeMetadata/v1/project/numeric-project-id": "123",
		"/computeMetadata/v1/instance/id":                "instance-7",
		"/computeMetadata/v1/instance/region":            "projects/123/regions/europe-west1",
		"/computeMetadata/v1/instance/zone":              "projects/123/zones/europe-west1-1",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		v, ok := values[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		io.WriteString(w, v)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srv.URL, "http://"))
	return &calls
}

// TestResourceCloudRun: on Cloud Run (K_SERVICE) the GCP detector adds
// the region and instance from the metadata server; OTEL_RESOURCE_ATTRIBUTES
// still wins. Locally (no K_SERVICE) the metadata server is not contacted.
func TestResourceCloudRun(t *testing.T) {
	calls := fakeMetadata(t)
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, err := newResource(t.Context(), getenv, "nodebatch-api", ""); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("without K_SERVICE the metadata server got %d requests, want 0", n)
	}

	for k, v := range map[string]string{"K_SERVICE": "nodebatch-api", "K_REVISION": "nodebatch-api-00007", "K_CONFIGURATION": "nodebatch-api"} {
		t.Setenv(k, v) // the detector reads the process environment
		env[k] = v
	}
	env["OTEL_RESOURCE_ATTRIBUTES"] = "deployment.environment.name=prod"
	r, err := newResource(t.Context(), getenv, "nodebatch-api", "proj-1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range r.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{
		"cloud.provider": "gcp", "cloud.platform": "gcp_cloud_run", "cloud.region": "europe-west1",
		"cloud.account.id": "proj-1", "faas.name": "nodebatch-api", "faas.version": "nodebatch-api-00007",
		"faas.instance": "instance-7", "service.name": "nodebatch-api", "deployment.environment.name": "prod",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if calls.Load() == 0 {
		t.Error("on Cloud Run the detector did not ask the metadata server")
	}
}
