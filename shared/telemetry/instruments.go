package telemetry

import (
	"slices"
	"strings"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Instrument describes one metric instrument nodebatch defines.
type Instrument struct {
	Name string // OpenTelemetry name, e.g. "nodebatch.node.patches"
	Kind string // "counter", "histogram" or "updowncounter" (observed)
	Unit string // UCUM unit, e.g. "s" or "{node}"
}

// Instruments lists every instrument the code creates (Metrics and
// ObserveRelay), sorted by name: it builds them on a meter that records
// each creation, so the list cannot drift from the code. infra/ checks the
// dashboard and alert queries, and docs/observability.md's table, against
// it.
func Instruments() []Instrument {
	var got []Instrument
	r := recordingMeter{got: &got}
	m := newMetrics(r)
	m.ObserveRelay(func() RelayGauges { return RelayGauges{} })()
	slices.SortFunc(got, func(a, b Instrument) int { return strings.Compare(a.Name, b.Name) })
	return slices.CompactFunc(got, func(a, b Instrument) bool { return a.Name == b.Name })
}

// AttributeKeys are the attribute keys nodebatch's metrics carry (none
// names a node, a user or a batch), sorted.
func AttributeKeys() []string {
	keys := []string{string(KeyOutcome), string(KeyReason), string(KeyState), string(KeyMode), string(KeyKind), string(KeyStatus), string(KeyMethod), string(KeyWatcher)}
	slices.Sort(keys)
	return keys
}

// recordingMeter is a no-op meter that notes every instrument created on
// it.
type recordingMeter struct {
	metricnoop.Meter
	got *[]Instrument
}

func (r recordingMeter) note(name, kind, unit string) {
	*r.got = append(*r.got, Instrument{Name: name, Kind: kind, Unit: unit})
}

func (r recordingMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	r.note(name, "counter", metric.NewInt64CounterConfig(opts...).Unit())
	return r.Meter.Int64Counter(name, opts...)
}

func (r recordingMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	r.note(name, "histogram", metric.NewFloat64HistogramConfig(opts...).Unit())
	return r.Meter.Float64Histogram(name, opts...)
}

func (r recordingMeter) Int64ObservableUpDownCounter(name string, opts ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	r.note(name, "updowncounter", metric.NewInt64ObservableUpDownCounterConfig(opts...).Unit())
	return r.Meter.Int64ObservableUpDownCounter(name, opts...)
}

func (r recordingMeter) RegisterCallback(f metric.Callback, insts ...metric.Observable) (metric.Registration, error) {
	return r.Meter.RegisterCallback(f, insts...)
}
