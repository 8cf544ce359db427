package telemetry

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	"k8s.io/client-go/rest"
)

// MetricsPath is where every nodebatch process serves its metrics.
const MetricsPath = "/metrics"

// flushTimeout bounds the export at the end of a request.
const flushTimeout = 5 * time.Second

// Handler wraps a process's HTTP handler:
//
//   - GET /metrics serves the metrics (Prometheus text), unless
//     OTEL_METRICS_EXPORTER names exporters and "prometheus" is not one;
//   - with tracing on, every other request gets a server span (otelhttp:
//     the caller's traceparent, on Cloud Run the platform's, is its
//     parent), and the spans and metrics are flushed before the response
//     leaves the handler (Cloud Run may throttle the CPU after it).
//
// With tracing off it adds nothing but the /metrics route.
func (t *Telemetry) Handler(h http.Handler, operation string) http.Handler {
	inner := h
	if t.Tracing() || (t != nil && t.otlpMP) {
		traced := h
		if t.Tracing() {
			traced = otelhttp.NewHandler(h, operation,
				otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop),
				otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
		}
		inner = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			traced.ServeHTTP(w, r)
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), flushTimeout)
			defer cancel()
			_ = t.Flush(ctx) // an export that fails must not fail the request
		})
	}
	metrics := t.MetricsHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == MetricsPath && r.Method == http.MethodGet && t.servesMetrics() {
			metrics.ServeHTTP(w, r)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

func (t *Telemetry) servesMetrics() bool { return t != nil && t.prom != nil && !t.noProm }

// Transport wraps a client transport to the Kubernetes API server: it
// counts 409, 429 and 5xx answers (nodebatch.kube.error_responses) and, with
// tracing on, makes each request a client span (otelhttp) that carries the
// traceparent.
func (t *Telemetry) Transport(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	counted := statusCounter{base: rt, m: t.Metrics()}
	if !t.Tracing() {
		return counted
	}
	return otelhttp.NewTransport(counted,
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
}

// RestConfig returns a copy of c whose transport is wrapped by Transport.
func (t *Telemetry) RestConfig(c *rest.Config) *rest.Config {
	if t == nil || c == nil {
		return c
	}
	c = rest.CopyConfig(c)
	c.Wrap(t.Transport)
	return c
}

// GRPCDialOptions instrument a gRPC client (Firestore) with client spans;
// none when tracing is off.
func (t *Telemetry) GRPCDialOptions() []grpc.DialOption {
	if !t.Tracing() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider())))}
}

type statusCounter struct {
	base http.RoundTripper
	m    *Metrics
}

func (s statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	if err == nil && (resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500) {
		s.m.KubeErrorResponse(r.Context(), r.Method, resp.StatusCode)
	}
	return resp, err
}
