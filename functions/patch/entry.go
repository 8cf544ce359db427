package patch

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/deps"

	"github.com/nodebatch/nodebatch/shared/logging"
)

// FromEnv builds the patch handler from the environment read through getenv.
// The caller owns the returned close function.
func FromEnv(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*Handler, func(), error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, nil, err
	}
	d, err := deps.New(ctx, cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	return &Handler{Runner: d.Runner, Logger: logger}, func() { _ = d.Close() }, nil
}

// entry is the Cloud Run entry points' handler, built once, on first use,
// from the environment (Cloud Run functions have no main of ours).
var entry = sync.OnceValues(func() (*Handler, error) {
	logger := logging.New(os.Stderr, logging.ParseLevel(os.Getenv("NODEBATCH_LOG_LEVEL")))
	h, _, err := FromEnv(context.Background(), os.Getenv, logger)
	return h, err
})

func init() {
	functions.CloudEvent("Patch", func(ctx context.Context, e event.Event) error {
		h, err := entry()
		if err != nil {
			return err
		}
		return h.Patch(ctx, e)
	})
	functions.CloudEvent("DeadLetter", func(ctx context.Context, e event.Event) error {
		h, err := entry()
		if err != nil {
			return err
		}
		return h.DeadLetter(ctx, e)
	})
}
