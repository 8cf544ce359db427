package deps

import (
	"github.com/nodebatch/nodebatch/shared/fsclient"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// WithTelemetry instruments the clients New builds with tel: Kubernetes
// calls (spans, 409/429/5xx counts), Firestore calls (spans; not a client
// given with WithFirestore, which its owner built), and the runner's node
// and batch metrics.
func WithTelemetry(tel *telemetry.Telemetry) Option { return func(o *options) { o.tel = tel } }

// firestoreOptions are the dial options of a Firestore client New builds.
func (o options) firestoreOptions() []fsclient.Option {
	if d := o.tel.GRPCDialOptions(); len(d) > 0 {
		return []fsclient.Option{fsclient.WithDialOptions(d...)}
	}
	return nil
}
