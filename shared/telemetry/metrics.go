package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Attribute keys of the nodebatch metrics. None names a node, a user or a
// batch: those belong in traces and logs (cardinality).
const (
	KeyOutcome = attribute.Key("nodebatch.outcome")      // a node's result
	KeyReason  = attribute.Key("nodebatch.reason_class") // why a node failed, as a class
	KeyState   = attribute.Key("nodebatch.batch.state")  // a batch's final state
	KeyMode    = attribute.Key("nodebatch.batch.mode")   // inline or fanout
	KeyKind    = attribute.Key("nodebatch.batch.kind")   // new, retry or revert
	KeyStatus  = attribute.Key("http.response.status_code")
	KeyMethod  = attribute.Key("http.request.method")
	KeyWatcher = attribute.Key("nodebatch.relay.watcher") // batch or owner
)

// Node outcomes (KeyOutcome). Unchanged is a success that changed nothing.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeUnchanged = "unchanged"
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
	OutcomeSkipped   = "skipped"
)

// Batch modes (KeyMode).
const (
	ModeInline = "inline"
	ModeFanOut = "fanout"
)

// durationBuckets are the histogram boundaries of latencies, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// Metrics are nodebatch's instruments (docs/observability.md lists them).
// Record through the methods; a nil *Metrics is not valid, use
// Telemetry.Metrics.
type Metrics struct {
	meter          metric.Meter
	patches        metric.Int64Counter
	patchDuration  metric.Float64Histogram
	conflicts      metric.Int64Counter
	fallbacks      metric.Int64Counter
	kubeErrors     metric.Int64Counter
	redeliveries   metric.Int64Counter
	deadLettered   metric.Int64Counter
	batchesStarted metric.Int64Counter
	batchesDone    metric.Int64Counter
	batchDuration  metric.Float64Histogram
	published      metric.Int64Counter
	progressDelay  metric.Float64Histogram
	slowCloses     metric.Int64Counter
}

var noopMetrics = newMetrics(metricnoop.NewMeterProvider().Meter(ScopeName))

// newMetrics creates the instruments on m. The SDK's instrument
// constructors only fail on invalid names, which these are not; a failed
// one is a no-op instrument.
func newMetrics(m metric.Meter) *Metrics {
	ns := &Metrics{meter: m}
	ns.patches, _ = m.Int64Counter("nodebatch.node.patches", metric.WithUnit("{node}"),
		metric.WithDescription("Nodes recorded by the per-node path, by outcome (and reason class for failures)."))
	ns.patchDuration, _ = m.Float64Histogram("nodebatch.node.patch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a node's start to its recorded result (patch and checks), by outcome."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	ns.conflicts, _ = m.Int64Counter("nodebatch.kube.conflicts", metric.WithUnit("{conflict}"),
		metric.WithDescription("409 Conflict answers the node patcher met and retried (resourceVersion moved)."))
	ns.fallbacks, _ = m.Int64Counter("nodebatch.kube.conflict_fallbacks", metric.WithUnit("{node}"),
		metric.WithDescription("Nodes whose write needed the read-modify-write path after a conflict."))
	ns.kubeErrors, _ = m.Int64Counter("nodebatch.kube.error_responses", metric.WithUnit("{response}"),
		metric.WithDescription("Kubernetes API answers 409, 429 and 5xx, by status code and method."))
	ns.redeliveries, _ = m.Int64Counter("nodebatch.node.redeliveries", metric.WithUnit("{delivery}"),
		metric.WithDescription("Node events answered with a transient failure, so Pub/Sub delivers them again."))
	ns.deadLettered, _ = m.Int64Counter("nodebatch.events.dead_lettered", metric.WithUnit("{event}"),
		metric.WithDescription("Node events that reached the dead-letter entry point (every delivery failed)."))
	ns.batchesStarted, _ = m.Int64Counter("nodebatch.batches.started", metric.WithUnit("{batch}"),
		metric.WithDescription("Batch attempts started, by mode (inline or fanned out) and kind (new, retry, revert)."))
	ns.batchesDone, _ = m.Int64Counter("nodebatch.batches.finished", metric.WithUnit("{batch}"),
		metric.WithDescription("Batches that reached a final state, by state."))
	ns.batchDuration, _ = m.Float64Histogram("nodebatch.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a batch attempt's start to its final state, by state."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	ns.published, _ = m.Int64Counter("nodebatch.events.published", metric.WithUnit("{event}"),
		metric.WithDescription("Node events published to Pub/Sub."))
	ns.progressDelay, _ = m.Float64Histogram("nodebatch.relay.progress.delay", metric.WithUnit("s"),
		metric.WithDescription("Time from a node's result being written to the progress message that shows it being sent."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	ns.slowCloses, _ = m.Int64Counter("nodebatch.relay.slow_client.closes", metric.WithUnit("{connection}"),
		metric.WithDescription("WebSocket connections closed because the client read too slowly."))
	return ns
}

// NodeRecorded counts one node's recorded result. reasonClass is used for
// failures only.
func (m *Metrics) NodeRecorded(ctx context.Context, outcome, reasonClass string, latency time.Duration) {
	attrs := []attribute.KeyValue{KeyOutcome.String(outcome)}
	if outcome == OutcomeFailed {
		attrs = append(attrs, KeyReason.String(reasonClass))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	m.patches.Add(ctx, 1, set)
	if latency > 0 {
		m.patchDuration.Record(ctx, latency.Seconds(), metric.WithAttributeSet(attribute.NewSet(KeyOutcome.String(outcome))))
	}
}

// Conflicts counts the 409s one node's write met; a node with any needed
// the conflict fallback.
func (m *Metrics) Conflicts(ctx context.Context, n int) {
	if n <= 0 {
		return
	}
	m.conflicts.Add(ctx, int64(n))
	m.fallbacks.Add(ctx, 1)
}

// KubeErrorResponse counts one 409, 429 or 5xx answer of the API server.
func (m *Metrics) KubeErrorResponse(ctx context.Context, method string, status int) {
	m.kubeErrors.Add(ctx, 1, metric.WithAttributes(KeyStatus.Int(status), KeyMethod.String(method)))
}

// Redelivery counts one event answered transient (delivered again).
func (m *Metrics) Redelivery(ctx context.Context) { m.redeliveries.Add(ctx, 1) }

// DeadLettered counts one event handled by the dead-letter entry point.
func (m *Metrics) DeadLettered(ctx context.Context) { m.deadLettered.Add(ctx, 1) }

// BatchStarted counts one batch attempt started.
func (m *Metrics) BatchStarted(ctx context.Context, mode, kind string) {
	m.batchesStarted.Add(ctx, 1, metric.WithAttributes(KeyMode.String(mode), KeyKind.String(kind)))
}

// BatchFinished counts a batch that reached state after d.
func (m *Metrics) BatchFinished(ctx context.Context, state string, d time.Duration) {
	set := metric.WithAttributeSet(attribute.NewSet(KeyState.String(state)))
	m.batchesDone.Add(ctx, 1, set)
	if d > 0 {
		m.batchDuration.Record(ctx, d.Seconds(), set)
	}
}

// Published counts n node events published.
func (m *Metrics) Published(ctx context.Context, n int) { m.published.Add(ctx, int64(n)) }

// ProgressDelay records the delay of one progress message.
func (m *Metrics) ProgressDelay(ctx context.Context, d time.Duration) {
	if d >= 0 {
		m.progressDelay.Record(ctx, d.Seconds())
	}
}

// SlowClientClose counts one connection closed for reading too slowly.
func (m *Metrics) SlowClientClose(ctx context.Context) { m.slowCloses.Add(ctx, 1) }

// RelayGauges are the relay's current sizes, read when metrics are
// collected.
type RelayGauges struct {
	Connections, Subscriptions, BatchWatchers, OwnerWatchers int
}

// ObserveRelay registers the relay's gauges (nodebatch.relay.connections,
// .subscriptions, .watchers), read from read at each collection. The
// returned function unregisters them.
func (m *Metrics) ObserveRelay(read func() RelayGauges) (unregister func()) {
	conns, _ := m.meter.Int64ObservableUpDownCounter("nodebatch.relay.connections", metric.WithUnit("{connection}"),
		metric.WithDescription("Open WebSocket connections."))
	subs, _ := m.meter.Int64ObservableUpDownCounter("nodebatch.relay.subscriptions", metric.WithUnit("{subscription}"),
		metric.WithDescription("Open subscriptions to batches."))
	watchers, _ := m.meter.Int64ObservableUpDownCounter("nodebatch.relay.watchers", metric.WithUnit("{watcher}"),
		metric.WithDescription("Shared Firestore watchers open, by kind (batch or owner feed)."))
	batchAttrs := metric.WithAttributes(KeyWatcher.String("batch"))
	ownerAttrs := metric.WithAttributes(KeyWatcher.String("owner"))
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		g := read()
		o.ObserveInt64(conns, int64(g.Connections))
		o.ObserveInt64(subs, int64(g.Subscriptions))
		o.ObserveInt64(watchers, int64(g.BatchWatchers), batchAttrs)
		o.ObserveInt64(watchers, int64(g.OwnerWatchers), ownerAttrs)
		return nil
	}, conns, subs, watchers)
	if err != nil || reg == nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
