// Command serve runs one nodebatch function locally over HTTP: the API
// (-target batch) or the patch function (-target patch, which also serves the
// dead-letter entry point at /deadletter). Settings come from the
// environment (docs/config.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/functions/patch"

	"github.com/nodebatch/nodebatch/shared/logging"
)

func main() {
	target := flag.String("target", "batch", "function to serve: batch or patch")
	addr := flag.String("addr", "", "listen address (default 127.0.0.1:8080 for batch, 127.0.0.1:8082 for patch)")
	flag.Parse()
	logger := logging.New(os.Stderr, slog.LevelInfo)
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *target, *addr, os.Getenv, logger, nil); err != nil {
		logger.Error("serve", "error", err)
		os.Exit(1)
	}
}

// run serves target on addr until ctx is done. ready, if not nil, receives
// the listening address once the server accepts connections.
func run(ctx context.Context, target, addr string, getenv func(string) string, logger *slog.Logger, ready chan<- string) error {
	var h http.Handler
	var closeFn func()
	switch target {
	case "batch":
		if addr == "" {
			addr = "127.0.0.1:8080"
		}
		bh, c, err := batch.Serve(ctx, getenv, logger)
		if err != nil {
			return err
		}
		h, closeFn = bh, c
	case "patch":
		if addr == "" {
			addr = "127.0.0.1:8082"
		}
		ph, c, err := patch.FromEnv(ctx, getenv, logger)
		if err != nil {
			return err
		}
		mux, err := ph.Mux(context.WithoutCancel(ctx))
		if err != nil {
			c()
			return err
		}
		h, closeFn = mux, c
	default:
		return fmt.Errorf("unknown -target %q: want batch or patch", target)
	}
	defer closeFn()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("serving", "target", target, "addr", ln.Addr().String(), "metrics", "http://"+ln.Addr().String()+"/metrics")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
