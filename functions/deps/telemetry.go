package deps

import (
	"github.com/nodebatch/nodebatch/shared/fsclient"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Option changes what New builds.
type Option func(*options)

type options struct {
	tel *telemetry.Telemetry
}

// WithTelemetry instruments the clients New builds with tel: Kubernetes
// calls (spans, 409/429/5xx counts), Firestore calls (spans), and the
// runner's node and batch metrics.
func WithTelemetry(tel *telemetry.Telemetry) Option { return func(o *options) { o.tel = tel } }

func newOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func (o options) firestore() []fsclient.Option {
	if d := o.tel.GRPCDialOptions(); len(d) > 0 {
		return []fsclient.Option{fsclient.WithDialOptions(d...)}
	}
	return nil
}
