// Command oidcdev serves the development OIDC issuer for the local stack.
//
// It serves two issuers on one loopback address:
//
//	http://ADDR          user tokens (NODEBATCH_OIDC_ISSUER)
//	http://ADDR/google   a stand-in for https://accounts.google.com, which
//	                     signs Cloud Scheduler's tokens (NODEBATCH_SCHEDULER_ISSUER)
//
// Each has /.well-known/openid-configuration, /jwks and POST /token. It mints
// a token for anyone who asks: never deploy it, and it refuses to listen on
// anything but a loopback address.
//
// Usage:
//
//	oidcdev [-addr 127.0.0.1:8093] [-key-file FILE] [-google-key-file FILE]
//
// With -key-file the signing key is loaded from FILE (created on first run),
// so tokens minted before a restart stay valid.
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

	"github.com/nodebatch/nodebatch/emulators/oidcdev"

	"github.com/nodebatch/nodebatch/shared/logging"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8093", "loopback address to listen on")
	keyFile := flag.String("key-file", "", "PEM key of the user issuer, created if missing (empty: a new key each start)")
	googleKeyFile := flag.String("google-key-file", "", "PEM key of the /google issuer (default: -key-file + \".google\")")
	flag.Parse()
	logger := logging.New(os.Stderr, slog.LevelInfo)
	if *googleKeyFile == "" && *keyFile != "" {
		*googleKeyFile = *keyFile + ".google"
	}
	if err := run(*addr, *keyFile, *googleKeyFile, logger); err != nil {
		logger.Error("oidcdev failed", "error", err)
		os.Exit(1)
	}
}

func run(addr, keyFile, googleKeyFile string, logger *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("parse -addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-addr %q: the development issuer mints tokens for anyone and only listens on loopback", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	base := "http://" + ln.Addr().String()
	users, err := issuer(base, keyFile)
	if err != nil {
		return err
	}
	google, err := issuer(base+"/google", googleKeyFile)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/google/", google.Handler())
	mux.Handle("/", users.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // best effort on the way out
	}()
	logger.Info("development OIDC issuer serving (never deploy this)", "issuer", users.URL(), "google_issuer", google.URL())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func issuer(url, keyFile string) (*oidcdev.Issuer, error) {
	if keyFile == "" {
		return oidcdev.New(url)
	}
	return oidcdev.LoadOrCreate(url, keyFile)
}
