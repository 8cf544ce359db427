package bench

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// SpanSink is an in-process OTLP trace receiver (the collector's gRPC
// trace service) that counts the spans exported to it and keeps none: the
// far end of the tracing-cost row (row 7), so what is measured is the
// product's cost of making and exporting spans, not a collector's.
type SpanSink struct {
	collectortrace.UnimplementedTraceServiceServer
	spans atomic.Int64
	srv   *grpc.Server
	addr  string
}

// StartSpanSink listens on a free loopback port. Close stops it.
func StartSpanSink() (*SpanSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start OTLP span sink: %w", err)
	}
	s := &SpanSink{srv: grpc.NewServer(), addr: ln.Addr().String()}
	collectortrace.RegisterTraceServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Export counts the request's spans.
func (s *SpanSink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	s.spans.Add(n)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Endpoint is the OTLP/gRPC endpoint URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
func (s *SpanSink) Endpoint() string { return "http://" + s.addr }

// Spans is how many spans were received so far.
func (s *SpanSink) Spans() int64 { return s.spans.Load() }

// Close stops the receiver.
func (s *SpanSink) Close() { s.srv.Stop() }
