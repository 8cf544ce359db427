package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestTracingCost(t *testing.T) {
	r := Report{Machine: Machine{CPUs: 2}, Rows: []Row{
		{ID: "4", Tool: ToolNodebatch, Op: OpLabel, Concurrency: 50, Nodes: 100, Walls: []time.Duration{ms_(900)}},
		{ID: "7", Tool: ToolNodebatch, Op: OpLabel, Concurrency: 50, Nodes: 100, Telemetry: TelemetryOff, Walls: []time.Duration{ms_(1000), ms_(1200)},
			CPU: []CPURun{{ByProcess: map[string]float64{CPUBench: 2}}}},
		{ID: "7", Tool: ToolNodebatch, Op: OpTaint, Concurrency: 50, Nodes: 100, Telemetry: TelemetryOff, Walls: []time.Duration{ms_(2000)}},
		{ID: "7", Tool: ToolNodebatch, Op: OpLabel, Concurrency: 50, Nodes: 100, Telemetry: TelemetryTraced, Walls: []time.Duration{ms_(1650), ms_(1650)},
			CPU: []CPURun{{ByProcess: map[string]float64{CPUBench: 3}}}, Spans: []int64{700, 500, 600}},
		{ID: "7", Tool: ToolNodebatch, Op: OpTaint, Concurrency: 5, Nodes: 100, Telemetry: TelemetryTraced, Walls: []time.Duration{ms_(2000)}}, // no off row at c=5
	}}
	r.Finish()
	var got []float64
	for _, row := range r.Rows {
		got = append(got, row.VsTelemetryOff)
	}
	if diff := cmp.Diff([]float64{0, 0, 0, 1.5, 0}, got); diff != "" {
		t.Errorf("VsTelemetryOff mismatch (-want +got):\n%s", diff)
	}
	var b strings.Builder
	writeTracingCost(&b, &r)
	wantRows := "| op | c | nodes | off: wall median (s) | on: wall median (s) | on ÷ off | bench process CPU off / on (s) | spans per run |\n" +
		"|---|---|---|---|---|---|---|---|\n" +
		"| label | 50 | 100 | 1.10 | 1.65 | 1.50× | 2.00 / 3.00 | 600 |\n"
	if !strings.HasSuffix(b.String(), wantRows) {
		t.Errorf("tracing cost table = %q, want it to end with %q", b.String(), wantRows)
	}
}

// TestSpanSink: spans exported over OTLP/gRPC by the SDK arrive, counted.
func TestSpanSink(t *testing.T) {
	sink, err := StartSpanSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	exp, err := otlptracegrpc.New(t.Context(), otlptracegrpc.WithEndpointURL(sink.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	defer tp.Shutdown(t.Context())
	for range 3 {
		_, s := tp.Tracer("test").Start(t.Context(), "x")
		s.End()
	}
	if err := tp.ForceFlush(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got := sink.Spans(); got != 3 {
		t.Errorf("sink counted %d spans, want 3", got)
	}
}
