// Command relay serves live batch progress over WebSocket, the web UI, and a
// proxy to the batch API. Every setting is an environment variable, read by
// relay/config.Load (docs/config.md); the relay is built by relay/service.New,
// the constructor the in-process product and the tests use too.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodebatch/nodebatch/relay/config"
	"github.com/nodebatch/nodebatch/relay/service"
	"github.com/nodebatch/nodebatch/shared/logging"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

func main() {
	cfg, err := config.Load(os.Getenv)
	log := logging.New(os.Stderr, cfg.LogLevel)
	if err == nil {
		err = run(cfg, log)
	}
	if err != nil {
		log.Error("relay failed", "error", err)
		os.Exit(1)
	}
}

func run(cfg config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	tel, err := telemetry.Setup(ctx, os.Getenv, telemetry.WithService("nodebatch-relay"))
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	log = logging.Traced(log, tel.Project())
	svc, err := service.New(ctx, cfg, log, service.WithTelemetry(tel))
	if err != nil {
		return err
	}
	defer svc.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	hs := &http.Server{Handler: svc.Server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("relay listening", "addr", ln.Addr().String(), "project", cfg.Project, "api", fmt.Sprint(cfg.APIURL), "metrics", "http://"+ln.Addr().String()+telemetry.MetricsPath, "tracing", tel.Tracing())
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: telling clients to reconnect")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Server.Shutdown(sctx) }()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "error", err)
	}
	if err := <-done; err != nil {
		log.Warn("websocket shutdown", "error", err)
	}
	return nil
}
