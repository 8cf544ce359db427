// Package deps builds the clients both functions share from their settings:
// Firestore (the store), the Kubernetes client (with deliberate QPS/Burst),
// the per-node runner, and Pub/Sub. Mains and the Cloud Run entry points call
// it; handlers only receive what it built.
package deps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/fsclient"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Deps are the shared clients.
type Deps struct {
	Config    config.Config
	Firestore *firestore.Client
	PubSub    *pubsub.Client
	Kube      kubernetes.Interface // nodebatch's own identity: may only impersonate
	Users     *kubeclient.Pool     // clients acting as a person, over Kube's one transport
	Store     *store.Store
	Runner    *runner.Runner
	Telemetry *telemetry.Telemetry // nil: none (WithTelemetry)
}

// New builds every client from cfg. Firestore and Pub/Sub honour
// FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST. Close releases them.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...Option) (*Deps, error) {
	o := newOptions(opts)
	rc, err := cfg.RestConfig()
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
	fs, err := fsclient.New(ctx, cfg.Project, o.firestore()...)
	if err != nil {
		return nil, fmt.Errorf("firestore client for %s: %w", cfg.Project, err)
	}
	ps, err := pubsub.NewClient(ctx, cfg.Project)
	if err != nil {
		fs.Close()
		return nil, fmt.Errorf("pubsub client for %s: %w", cfg.Project, err)
	}
	st := store.New(fs)
	patcher := nodepatch.Patcher{
		FieldManager:       nodepatch.DefaultFieldManager,
		MaxConflictRetries: cfg.ConflictRetries,
	}
	return &Deps{
		Config:    cfg,
		Firestore: fs,
		PubSub:    ps,
		Kube:      kube,
		Users:     users,
		Store:     st,
		Runner: &runner.Runner{
			Store: st,
			// Every patch acts as the batch's requester (the batch document).
			PatcherFor: runner.Impersonating(users, patcher),
			Logger:     logger,
			Telemetry:  o.tel,
		},
		Telemetry: o.tel,
	}, nil
}

// Close closes the clients.
func (d *Deps) Close() error {
	return errors.Join(d.PubSub.Close(), d.Firestore.Close())
}
