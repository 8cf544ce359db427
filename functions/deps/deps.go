// Package deps builds the clients both functions share from their settings:
// Firestore (the store), the Kubernetes client (with deliberate QPS/Burst)
// and the per-node runner. (Pub/Sub is the batch function's alone:
// batch.New builds its client.) Mains, the Cloud Run entry points, the
// in-process product (emulators/product) and the tests call New through the
// functions' constructors (batch.New, patch.New); handlers only receive what
// it built.
package deps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"cloud.google.com/go/firestore"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/fsclient"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Deps are the shared clients.
type Deps struct {
	Config    config.Config
	Firestore *firestore.Client
	Kube      kubernetes.Interface // nodebatch's own identity: may only impersonate
	Users     *kubeclient.Pool     // clients acting as a person, over Kube's one transport
	Store     *store.Store
	Runner    *runner.Runner
	Telemetry *telemetry.Telemetry // nil: none (WithTelemetry)

	closers []func() error
}

// Option replaces a client New would build from the settings. Only the
// in-process product and tests use options (to point the Kubernetes client
// at a fault proxy, or Firestore at an interceptor); mains never do, so
// what they change is a client, never a setting.
type Option func(*options)

type options struct {
	kube      *rest.Config
	firestore *firestore.Client
	tel       *telemetry.Telemetry
}

// WithKube makes the Kubernetes identity rc instead of the one
// Config.Kubeconfig (or in-cluster credentials) gives; the settings' QPS,
// burst and user agent still apply.
func WithKube(rc *rest.Config) Option { return func(o *options) { o.kube = rc } }

// WithFirestore makes the store use fc instead of a new client; Close
// leaves fc open (its owner closes it).
func WithFirestore(fc *firestore.Client) Option { return func(o *options) { o.firestore = fc } }

// New builds every client from cfg. Firestore honours
// FIRESTORE_EMULATOR_HOST. Close releases them.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...Option) (d *Deps, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	rc, err := restConfig(cfg, o.kube)
	if err != nil {
		return nil, err
	}
	rc = o.tel.RestConfig(rc)
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	users, err := kubeclient.New(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	d = &Deps{Config: cfg, Kube: kube, Users: users, Telemetry: o.tel}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	d.Firestore = o.firestore
	if d.Firestore == nil {
		if d.Firestore, err = fsclient.New(ctx, cfg.Project, o.firestoreOptions()...); err != nil {
			return nil, fmt.Errorf("firestore client for %s: %w", cfg.Project, err)
		}
		d.closers = append(d.closers, d.Firestore.Close)
	}
	d.Store = store.New(d.Firestore)
	d.Runner = &runner.Runner{
		Store: d.Store,
		// Every patch acts as the batch's requester (the batch document).
		PatcherFor: runner.Impersonating(users, cfg.Patcher()),
		Logger:     logger,
		Telemetry:  o.tel,
	}
	return d, nil
}

// restConfig is cfg's Kubernetes client configuration, or override with
// cfg's rate limits.
func restConfig(cfg config.Config, override *rest.Config) (*rest.Config, error) {
	if override == nil {
		return cfg.RestConfig()
	}
	return cfg.WithRate(override), nil
}

// Close closes the clients New created (in reverse order).
func (d *Deps) Close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}
