// Package telemetry sets up OpenTelemetry for a nodebatch process: a tracer
// provider exporting over OTLP when an OTEL_* exporter is configured (a
// no-op one otherwise, so tracing off costs nothing), a meter provider whose
// instruments are always served as Prometheus text on /metrics (and also
// exported over OTLP when configured), the W3C trace-context propagator, and
// the nodebatch instruments (Metrics). docs/observability.md describes the
// spans, the sampler and every metric.
//
// A nil *Telemetry is valid and means "off": every method works and does
// nothing, so handlers and tests that are built without telemetry need no
// special case.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/detectors/gcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of nodebatch's own spans and
// metrics.
const ScopeName = "github.com/nodebatch/nodebatch"

// Telemetry is one process's OpenTelemetry setup. Build it with Setup.
type Telemetry struct {
	tp      trace.TracerProvider
	sdkTP   *sdktrace.TracerProvider // nil when tracing is off
	mp      *sdkmetric.MeterProvider
	otlpMP  bool // a periodic OTLP reader is attached: Flush pushes metrics
	prom    http.Handler
	prop    propagation.TextMapPropagator
	tracer  trace.Tracer
	metrics *Metrics
	project string
	noProm  bool // OTEL_METRICS_EXPORTER names exporters, not prometheus: no /metrics
}

// Option changes what Setup builds.
type Option func(*options)

type options struct {
	service string
	spans   sdktrace.SpanExporter
}

// WithService names the service (service.name) when OTEL_SERVICE_NAME is
// not set.
func WithService(name string) Option { return func(o *options) { o.service = name } }

// WithSpanExporter exports spans to e (tests: an in-memory exporter),
// turning tracing on whatever the environment says.
func WithSpanExporter(e sdktrace.SpanExporter) Option { return func(o *options) { o.spans = e } }

// Setup builds the process's telemetry from the standard OTEL_* variables
// read through getenv (docs/observability.md, docs/config.md):
//
//   - OTEL_SDK_DISABLED=true: everything off (no-op providers, /metrics empty).
//   - Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when it is
//     unset and OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Otherwise ("none", or
//     nothing configured) the tracer is a no-op.
//   - Metrics are always collected and, unless OTEL_METRICS_EXPORTER names
//     exporters without "prometheus", served on /metrics (Handler); they
//     are also pushed over OTLP when OTEL_METRICS_EXPORTER has "otlp", or
//     when it is unset and an OTLP endpoint is set.
//   - OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL: "grpc" or
//     "http/protobuf" (the default).
//   - An endpoint on telemetry.googleapis.com is called with application
//     default credentials (Google's OTLP endpoint), and the project
//     (GOOGLE_CLOUD_PROJECT) is sent as gcp.project_id.
//
// Other OTLP settings (headers, timeouts, certificates) are read by the
// exporters themselves from the process environment. Call Shutdown before
// the process exits.
func Setup(ctx context.Context, getenv func(string) string, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	t := &Telemetry{prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		t.tp = tracenoop.NewTracerProvider()
		t.tracer = t.tp.Tracer(ScopeName)
		t.metrics = newMetrics(metricnoop.NewMeterProvider().Meter(ScopeName))
		t.prom = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
		return t, nil
	}
	t.project = firstOf(getenv("GOOGLE_CLOUD_PROJECT"), getenv("GCP_PROJECT"))
	res, err := newResource(ctx, getenv, o.service, t.project)
	if err != nil {
		return nil, err
	}

	// Metrics: always a Prometheus reader on a registry of our own.
	reg := prometheus.NewRegistry()
	pe, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(pe)}
	if on, endpoint := signalOn(getenv, "METRICS"); on {
		me, err := metricExporter(ctx, getenv, endpoint, t.project)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)))
		t.otlpMP = true
	}
	t.mp = sdkmetric.NewMeterProvider(mopts...)
	t.prom = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if ex := strings.ToLower(strings.TrimSpace(getenv("OTEL_METRICS_EXPORTER"))); ex != "" && !strings.Contains(ex, "prometheus") {
		t.noProm = true
	}
	t.metrics = newMetrics(t.mp.Meter(ScopeName))

	// Traces: an SDK provider only when something exports them.
	se := o.spans
	if se == nil {
		if on, endpoint := signalOn(getenv, "TRACES"); on {
			if se, err = spanExporter(ctx, getenv, endpoint, t.project); err != nil {
				return nil, err
			}
		}
	}
	if se == nil {
		t.tp = tracenoop.NewTracerProvider()
	} else {
		sampler, err := newSampler(getenv)
		if err != nil {
			return nil, err
		}
		t.sdkTP = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(sampler), sdktrace.WithBatcher(se))
		t.tp = t.sdkTP
	}
	t.tracer = t.tp.Tracer(ScopeName)
	return t, nil
}

// firstOf returns the first non-empty string.
func firstOf(ss ...string) string {
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return ""
}

// signalOn reports whether signal ("TRACES" or "METRICS") is exported over
// OTLP, and the endpoint URL to use ("" for the exporter's default).
func signalOn(getenv func(string) string, signal string) (bool, string) {
	// The names are spelled out: infra/ checks them against the code.
	keys := map[string][2]string{
		"TRACES":  {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"},
		"METRICS": {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_METRICS_EXPORTER"},
	}[signal]
	specific := strings.TrimSpace(getenv(keys[0]))
	generic := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	endpoint := specific
	if endpoint == "" && generic != "" {
		endpoint = generic
		if protocol(getenv, signal) != "grpc" {
			endpoint = strings.TrimSuffix(generic, "/") + "/v1/" + strings.ToLower(signal)
		}
	}
	switch ex := strings.ToLower(strings.TrimSpace(getenv(keys[1]))); {
	case ex == "":
		return endpoint != "", endpoint
	case strings.Contains(ex, "otlp"):
		return true, endpoint
	default: // "none", "prometheus" (metrics: always served), others unsupported
		return false, ""
	}
}

func protocol(getenv func(string) string, signal string) string {
	specific := map[string]string{"TRACES": "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "METRICS": "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"}[signal]
	p := firstOf(getenv(specific), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	return strings.ToLower(p)
}

// googleHost is Google's OTLP endpoint (Cloud Trace and Cloud Monitoring
// through the Telemetry API).
const googleHost = "telemetry.googleapis.com"

func isGoogle(endpoint string) bool {
	if endpoint == "" {
		return false
	}
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	return err == nil && u.Hostname() == googleHost
}

func spanExporter(ctx context.Context, getenv func(string) string, endpoint, project string) (sdktrace.SpanExporter, error) {
	var (
		e   sdktrace.SpanExporter
		err error
	)
	if protocol(getenv, "TRACES") == "grpc" {
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		if isGoogle(endpoint) {
			do, derr := googleDial(ctx, project)
			if derr != nil {
				return nil, derr
			}
			opts = append(opts, otlptracegrpc.WithDialOption(do...))
		}
		e, err = otlptracegrpc.New(ctx, opts...)
	} else {
		var opts []otlptracehttp.Option
		if endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
		}
		if isGoogle(endpoint) {
			c, cerr := googleHTTPClient(ctx, project)
			if cerr != nil {
				return nil, cerr
			}
			opts = append(opts, otlptracehttp.WithHTTPClient(c))
		}
		e, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP span exporter for %q: %w", endpoint, err)
	}
	return e, nil
}

func metricExporter(ctx context.Context, getenv func(string) string, endpoint, project string) (sdkmetric.Exporter, error) {
	var (
		e   sdkmetric.Exporter
		err error
	)
	if protocol(getenv, "METRICS") == "grpc" {
		var opts []otlpmetricgrpc.Option
		if endpoint != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(endpoint))
		}
		if isGoogle(endpoint) {
			do, derr := googleDial(ctx, project)
			if derr != nil {
				return nil, derr
			}
			opts = append(opts, otlpmetricgrpc.WithDialOption(do...))
		}
		e, err = otlpmetricgrpc.New(ctx, opts...)
	} else {
		var opts []otlpmetrichttp.Option
		if endpoint != "" {
			opts = append(opts, otlpmetrichttp.WithEndpointURL(endpoint))
		}
		if isGoogle(endpoint) {
			c, cerr := googleHTTPClient(ctx, project)
			if cerr != nil {
				return nil, cerr
			}
			opts = append(opts, otlpmetrichttp.WithHTTPClient(c))
		}
		e, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP metric exporter for %q: %w", endpoint, err)
	}
	return e, nil
}

// newResource describes the process: service.name (OTEL_SERVICE_NAME, else
// the WithService name), gcp.project_id (which Google's OTLP endpoint
// requires), on Cloud Run the GCP resource detector's attributes and the
// service and revision (K_SERVICE, K_REVISION), and last
// OTEL_RESOURCE_ATTRIBUTES, which win.
//
// The GCP detector (go.opentelemetry.io/contrib/detectors/gcp: cloud.region,
// cloud.account.id, faas.name, faas.version, faas.instance from the
// metadata server) runs only when K_SERVICE says the process is on Cloud
// Run (Cloud Run functions too): locally the metadata server is never
// contacted.
func newResource(ctx context.Context, getenv func(string) string, service, project string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName(firstOf(getenv("OTEL_SERVICE_NAME"), service, "nodebatch"))}
	if project != "" {
		attrs = append(attrs, attribute.String("gcp.project_id", project), semconv.CloudAccountID(project))
	}
	var opts []resource.Option
	if s := getenv("K_SERVICE"); s != "" {
		opts = append(opts, resource.WithDetectors(gcp.NewDetector()))
		attrs = append(attrs, semconv.CloudProviderGCP, semconv.CloudPlatformGCPCloudRun, semconv.FaaSName(s), semconv.ServiceVersion(getenv("K_REVISION")))
	}
	for _, kv := range strings.Split(getenv("OTEL_RESOURCE_ATTRIBUTES"), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if k = strings.TrimSpace(k); ok && k != "" {
			if uv, err := url.QueryUnescape(strings.TrimSpace(v)); err == nil {
				attrs = append(attrs, attribute.String(k, uv))
			}
		}
	}
	opts = append(opts, resource.WithTelemetrySDK(), resource.WithProcessPID(), resource.WithAttributes(attrs...))
	r, err := resource.New(ctx, opts...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return r, nil
}

// newSampler is the batch-aware sampler (sampler.go) around the standard
// OTEL_TRACES_SAMPLER choice for roots: always_on (default),
// always_off, traceidratio or parentbased_* with OTEL_TRACES_SAMPLER_ARG.
func newSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(firstOf(getenv("OTEL_TRACES_SAMPLER"), "parentbased_always_on"))
	ratio := 1.0
	if a := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); a != "" {
		r, err := strconv.ParseFloat(a, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG %q: want a ratio from 0 to 1", a)
		}
		ratio = r
	}
	var root sdktrace.Sampler
	switch strings.TrimPrefix(name, "parentbased_") {
	case "always_on":
		root = sdktrace.AlwaysSample()
	case "always_off":
		root = sdktrace.NeverSample()
	case "traceidratio":
		root = sdktrace.TraceIDRatioBased(ratio)
	default:
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER %q: want always_on, always_off, traceidratio or parentbased_ of one", name)
	}
	return BatchSampler(root), nil
}

// Tracing reports whether spans are recorded and exported.
func (t *Telemetry) Tracing() bool { return t != nil && t.sdkTP != nil }

// TracerProvider is the process's tracer provider (no-op when off).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil || t.tp == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tp
}

// MeterProvider is the process's meter provider (no-op for a nil
// Telemetry).
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil || t.mp == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.mp
}

// Tracer is nodebatch's tracer.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil || t.tracer == nil {
		return tracenoop.NewTracerProvider().Tracer(ScopeName)
	}
	return t.tracer
}

// Propagator is the W3C trace-context (and baggage) propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil || t.prop == nil {
		return propagation.TraceContext{}
	}
	return t.prop
}

// Metrics are the nodebatch instruments (no-op for a nil Telemetry).
func (t *Telemetry) Metrics() *Metrics {
	if t == nil || t.metrics == nil {
		return noopMetrics
	}
	return t.metrics
}

// Project is the Google Cloud project traces belong to (for the
// logging.googleapis.com/trace field); "" when unknown.
func (t *Telemetry) Project() string {
	if t == nil {
		return ""
	}
	return t.project
}

// MetricsHandler serves the metrics as Prometheus text (GET /metrics).
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil || t.prom == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	}
	return t.prom
}

// Flush exports what is buffered: the spans ended so far and, when metrics
// are pushed over OTLP, the current metric values. Call it before a
// request's response is sent: Cloud Run may throttle the CPU once it is.
func (t *Telemetry) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.sdkTP != nil {
		errs = append(errs, t.sdkTP.ForceFlush(ctx))
	}
	if t.otlpMP && t.mp != nil {
		errs = append(errs, t.mp.ForceFlush(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: flush: %w", err)
	}
	return nil
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.sdkTP != nil {
		errs = append(errs, t.sdkTP.Shutdown(ctx))
	}
	if t.mp != nil {
		errs = append(errs, t.mp.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}
