// Command oidcdev serves the development OIDC issuer for the local stack.
//
// It serves two issuers on one loopback address:
//
//	http://ADDR          user tokens (NODEBATCH_OIDC_ISSUER)
//	http://ADDR/google   a stand-in for https://accounts.google.com, which
//	                     signs Cloud Scheduler's tokens (NODEBATCH_SCHEDULER_ISSUER)
//
// Each has /.well-known/openid-configuration, /jwks, /authorize (the
// authorization-code flow with PKCE; its page lists the -users) and POST
// /token (the authorization_code and refresh_token grants, and a direct
// mint). It signs in anyone who asks: never deploy it, and it refuses to
// listen on anything but a loopback address.
//
// Usage:
//
//	oidcdev [-addr 127.0.0.1:8093] [-key-file FILE] [-google-key-file FILE]
//	        [-users alice,bob,admin:admin] [-redirect-origin URL]...
//	        [-token-ttl 1h] [-refresh-ttl 24h]
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
	"strings"
	"syscall"
	"time"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"

	"github.com/nodebatch/nodebatch/shared/logging"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8093", "loopback address to listen on")
	keyFile := flag.String("key-file", "", "PEM key of the user issuer, created if missing (empty: a new key each start)")
	googleKeyFile := flag.String("google-key-file", "", "PEM key of the /google issuer (default: -key-file + \".google\")")
	users := flag.String("users", "alice,bob,admin:admin", "development users the sign-in page lists: name[:role], comma-separated")
	var origins []string
	flag.Func("redirect-origin", "an origin (scheme://host:port) redirect URIs may have besides loopback ones, e.g. the relay UI's; repeatable", func(s string) error {
		origins = append(origins, s)
		return nil
	})
	tokenTTL := flag.Duration("token-ttl", oidcdev.DefaultTTL, "lifetime of ID tokens from the authorization-code and refresh-token grants")
	refreshTTL := flag.Duration("refresh-ttl", oidcdev.DefaultRefreshTTL, "lifetime of a refresh token")
	flag.Parse()
	logger := logging.New(os.Stderr, slog.LevelInfo)
	if *googleKeyFile == "" && *keyFile != "" {
		*googleKeyFile = *keyFile + ".google"
	}
	opts := oidcdev.Options{Users: parseUsers(*users), RedirectOrigins: origins, TokenTTL: *tokenTTL, RefreshTTL: *refreshTTL}
	if err := run(*addr, *keyFile, *googleKeyFile, opts, logger); err != nil {
		logger.Error("oidcdev failed", "error", err)
		os.Exit(1)
	}
}

// parseUsers reads -users; Configure checks the names.
func parseUsers(s string) []oidcdev.User {
	var out []oidcdev.User
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, role, _ := strings.Cut(f, ":")
		if role == "" {
			role = "user"
		}
		out = append(out, oidcdev.User{Name: name, Role: role})
	}
	return out
}

func run(addr, keyFile, googleKeyFile string, opts oidcdev.Options, logger *slog.Logger) error {
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
	if err := users.Configure(opts); err != nil {
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
