// Command relay serves live batch progress over WebSocket, the web UI, and a
// proxy to the batch API. Every setting is an environment variable (see
// docs/config.md); only this file reads them.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/relay/ui"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/fsclient"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
	"github.com/nodebatch/nodebatch/shared/logging"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

func main() {
	log := logging.New(os.Stderr, logging.ParseLevel(os.Getenv("NODEBATCH_LOG_LEVEL")))
	if err := run(log); err != nil {
		log.Error("relay failed", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	addr := envOr("NODEBATCH_RELAY_ADDR", "127.0.0.1:8090")
	if p := os.Getenv("PORT"); p != "" { // Cloud Run
		addr = ":" + p
	}
	project := envOr("NODEBATCH_PROJECT", envOr("GOOGLE_CLOUD_PROJECT", "nodebatch-local"))
	seedToken, err := envBool("NODEBATCH_SEED_TOKEN_QUERY")
	if err != nil {
		return err
	}

	authCfg, err := auth.LoadConfig(os.Getenv)
	if err != nil {
		return err
	}
	authCfg.Logger = log
	verifier, err := auth.NewVerifier(ctx, authCfg)
	if err != nil {
		return fmt.Errorf("create verifier: %w", err)
	}
	fs, err := fsclient.New(ctx, project)
	if err != nil {
		return fmt.Errorf("create Firestore client for %s: %w", project, err)
	}
	defer fs.Close()

	ticketsPerUser, err := envInt("NODEBATCH_RELAY_MAX_TICKETS_PER_USER", relay.DefaultMaxTicketsPerUser)
	if err != nil {
		return err
	}
	connsPerUser, err := envInt("NODEBATCH_RELAY_MAX_CONNS_PER_USER", relay.DefaultMaxConnsPerUser)
	if err != nil {
		return err
	}
	nodesPerMinute, err := envInt("NODEBATCH_NODES_PER_MINUTE", ui.DefaultNodesPerMinute)
	if err != nil {
		return err
	}
	nodesBurst, err := envInt("NODEBATCH_NODES_BURST", ui.DefaultNodesBurst)
	if err != nil {
		return err
	}

	cfg := relay.Config{
		MaxTicketsPerUser: ticketsPerUser,
		MaxConnsPerUser:   connsPerUser,
		Firestore:         fs,
		Verifier:          verifier,
		Logger:            log,
		AllowedOrigins:    splitList(os.Getenv("NODEBATCH_ALLOWED_ORIGINS")),
		SeedTokenQuery:    seedToken,
		UI:                ui.FS(),
		Handlers:          map[string]http.Handler{},
	}
	if api := envOr("NODEBATCH_API_URL", "http://127.0.0.1:8080"); api != "off" {
		if cfg.APIURL, err = url.Parse(api); err != nil || cfg.APIURL.Host == "" {
			return fmt.Errorf("NODEBATCH_API_URL=%q: not an absolute URL", api)
		}
	}
	cfg.Handlers["GET /config.json"] = ui.ConfigHandler(uiConfig(authCfg))
	if kc := os.Getenv("KUBECONFIG"); kc != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			return fmt.Errorf("load KUBECONFIG: %w", err)
		}
		nodes, err := nodesHandler(rc, ratelimit.New(ratelimit.Config{PerMinute: nodesPerMinute, Burst: nodesBurst}))
		if err != nil {
			return err
		}
		cfg.Handlers["GET /v1/nodes"] = auth.Middleware(verifier, nodes)
	}
	tel, err := telemetry.Setup(ctx, os.Getenv, telemetry.WithService("nodebatch-relay"))
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	cfg.Telemetry = tel
	cfg.Logger = logging.Traced(log, tel.Project())
	srv := relay.New(cfg)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("relay listening", "addr", ln.Addr().String(), "project", project, "api", fmt.Sprint(cfg.APIURL), "metrics", "http://"+ln.Addr().String()+telemetry.MetricsPath, "tracing", tel.Tracing())
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
	go func() { done <- srv.Shutdown(sctx) }()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "error", err)
	}
	if err := <-done; err != nil {
		log.Warn("websocket shutdown", "error", err)
	}
	return nil
}

// nodesHandler serves the UI's node list (behind auth.Middleware) as the
// signed-in user: the relay's own identity rc may only impersonate (to list
// nodes: infra/k8s/impersonator-viewer.yaml), so the table shows what that
// user may list; lim is the per-user limit around it.
func nodesHandler(rc *rest.Config, lim *ratelimit.Limiter) (http.Handler, error) {
	users, err := kubeclient.New(rc)
	if err != nil {
		return nil, fmt.Errorf("create kube pool: %w", err)
	}
	return ui.LimitNodes(lim, users.Handler(caller, ui.NodesHandler)), nil
}

// caller is the request's principal as Kubernetes sees them (set by
// auth.Middleware); a principal without a Kubernetes user maps to none, and
// the pool answers 403 without calling the API server.
func caller(r *http.Request) kubeclient.User {
	p, _ := auth.FromContext(r.Context())
	return kubeclient.User{Name: p.KubeUser, Groups: p.KubeGroups}
}

// uiConfig is what the pages need to sign in.
func uiConfig(a auth.Config) ui.Config {
	c := ui.Config{
		Issuer:   a.Issuers[0].URL,
		ClientID: a.Issuers[0].Audience,
		Features: splitList(os.Getenv("NODEBATCH_UI_FEATURES")),
	}
	if dev, _ := envBool("NODEBATCH_DEV_ISSUER"); dev {
		c.DevIssuer = true
		c.DevTokenURL = strings.TrimSuffix(c.Issuer, "/") + "/token"
		c.DevUsers = []ui.DevUser{{Name: "alice", Role: "user"}, {Name: "bob", Role: "user"}, {Name: "admin", Role: "admin"}}
	}
	return c
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envBool(k string) (bool, error) {
	v := os.Getenv(k)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", k, v)
	}
	return b, nil
}

// envInt reads a positive integer setting, def when unset.
func envInt(k string, def int) (int, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", k, v)
	}
	return n, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
