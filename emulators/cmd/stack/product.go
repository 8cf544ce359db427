package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodebatch/nodebatch/emulators/stack"
)

// Product addresses for `make run` (docs/design.md §2).
const (
	apiAddr    = "127.0.0.1:8080"
	patchAddr  = "127.0.0.1:8082"
	relayAddr  = "127.0.0.1:8090"
	issuerAddr = "127.0.0.1:8093"

	topic            = "nodebatch-node-patch"
	schedulerAccount = "scheduler@nodebatch-local.iam.gserviceaccount.com"
)

// productProcesses are the product's processes `make run` starts on top of
// a ready stack, in order, each ready when its real endpoint answers. The
// binaries are built by `make run` into binDir. The stack stops them first.
func productProcesses(info stack.Info, binDir, stateDir string) []stack.ProcessSpec {
	bin := func(name string) string { return filepath.Join(binDir, name) }
	issuer := "http://" + issuerAddr
	common := []string{
		"GOOGLE_CLOUD_PROJECT=" + info.Project,
		"NODEBATCH_PROJECT=" + info.Project,
		"FIRESTORE_EMULATOR_HOST=" + info.FirestoreHost,
		"PUBSUB_EMULATOR_HOST=" + info.PubSubHost,
		"NODEBATCH_TOPIC=" + topic,
		"NODEBATCH_OIDC_ISSUER=" + issuer,
		"NODEBATCH_OIDC_AUDIENCE=nodebatch",
		"NODEBATCH_SCHEDULER_ISSUER=" + issuer + "/google",
		"NODEBATCH_SCHEDULER_AUDIENCE=http://" + apiAddr,
		"NODEBATCH_SCHEDULER_ALLOWLIST=" + schedulerAccount,
	}
	env := func(extra ...string) []string { return append(append([]string{}, common...), extra...) }
	specs := []stack.ProcessSpec{
		{
			Name:  "oidcdev",
			Path:  bin("oidcdev"),
			Args:  []string{"-addr", issuerAddr, "-key-file", filepath.Join(stateDir, "oidcdev.pem")},
			Ready: stack.HTTPReady("http://" + issuerAddr + "/.well-known/openid-configuration"),
		},
		{
			Name:  "patch",
			Path:  bin("serve"),
			Args:  []string{"-target", "patch", "-addr", patchAddr},
			Env:   env("KUBECONFIG=" + info.PatcherKubeconfig),
			Ready: tcpReady(patchAddr),
		},
		{
			Name:  "batch",
			Path:  bin("serve"),
			Args:  []string{"-target", "batch", "-addr", apiAddr},
			Env:   env("KUBECONFIG=" + info.PatcherKubeconfig), // it only impersonates the caller
			Ready: tcpReady(apiAddr),
		},
		{
			Name: "pushdeliver",
			Path: bin("pushdeliver"),
			Args: []string{
				"-project", info.Project, "-pubsub-host", info.PubSubHost, "-ensure",
				"-topic", topic, "-subscription", topic + "-push",
				"-dead-letter-topic", topic + "-dead", "-dead-letter-subscription", topic + "-dead-push",
				"-endpoint", "http://" + patchAddr + "/",
			},
			Env: env(),
		},
		{
			Name: "pushdeliver-dead",
			Path: bin("pushdeliver"),
			Args: []string{
				"-project", info.Project, "-pubsub-host", info.PubSubHost, "-ensure",
				"-topic", topic + "-dead", "-subscription", topic + "-dead-push",
				"-endpoint", "http://" + patchAddr + "/deadletter",
			},
			Env: env(),
		},
		{
			Name:  "relay",
			Path:  bin("relay"),
			Env:   env("KUBECONFIG="+info.AdminKubeconfig, "NODEBATCH_RELAY_ADDR="+relayAddr, "NODEBATCH_API_URL=http://"+apiAddr, "NODEBATCH_DEV_ISSUER=true", "NODEBATCH_UI_FEATURES=cancel,retry,revert,history"),
			Ready: stack.HTTPReady("http://" + relayAddr + "/healthz"),
		},
	}
	if jobs := os.Getenv("NODEBATCH_SCHEDULER_JOBS"); jobs != "" {
		specs = append(specs, stack.ProcessSpec{
			Name: "scheduler",
			Path: bin("scheduler"),
			Args: []string{"-jobs", jobs, "-issuer", issuer + "/google"},
			Env:  env(),
		})
	}
	return specs
}

// startProduct starts productProcesses in order and records their
// endpoints in info.Extra (written to the state file).
func startProduct(ctx context.Context, st *stack.Stack, info *stack.Info, binDir, stateDir string) error {
	for _, spec := range productProcesses(*info, binDir, stateDir) {
		begin := time.Now()
		if err := st.StartProcess(ctx, spec); err != nil {
			return fmt.Errorf("start %s: %w", spec.Name, err)
		}
		slog.Info("started", "part", spec.Name, "elapsed", time.Since(begin).Round(time.Millisecond).String())
	}
	if info.Extra == nil {
		info.Extra = map[string]string{}
	}
	info.Extra["api"] = "http://" + apiAddr
	info.Extra["patch"] = "http://" + patchAddr
	info.Extra["relay"] = "http://" + relayAddr
	info.Extra["issuer"] = "http://" + issuerAddr
	return nil
}

// printProduct tells the user where to go.
func printProduct(binDir string, nodes int) {
	devtoken := filepath.Join(binDir, "devtoken")
	fmt.Printf(`nodebatch is up.

  web UI          http://%[1]s/   (sign in as a development user)
  API             http://%[2]s/v1/batches
  progress (WS)   ws://%[1]s/v1/progress/ws
  metrics         http://%[2]s/metrics  http://%[5]s/metrics  http://%[1]s/metrics
                  (API, patch function, relay; Prometheus text. Traces: set
                  OTEL_EXPORTER_OTLP_ENDPOINT, docs/observability.md)

A token for scripts (user alice; add -admin for an admin):

  TOKEN=$(%[3]s -user alice)

Label every seeded node with team=ml (concurrency 10; "all" needs "confirm",
the node count, or the batch answers 409 confirmation_required):

  curl -sS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"labels":["team=ml"],"all":true,"confirm":%[4]d,"concurrency":10}' http://%[2]s/v1/batches

or from a terminal with a live bar (make cli builds it; login signs you in
through the browser, or pass NODEBATCH_TOKEN=$TOKEN instead):

  .nodebatch/bin/kubectl-nodebatch login --nodebatch-url http://%[1]s
  NODEBATCH_URL=http://%[1]s .nodebatch/bin/kubectl-nodebatch label nodes --all team=ml --confirm=%[4]d

Watch it land:

  kubectl --kubeconfig .nodebatch/kubeconfig get nodes -L team -w

`, relayAddr, apiAddr, strings.TrimPrefix(devtoken, "./"), nodes, patchAddr)
}

// tcpReady probes an address that answers no unauthenticated GET with 200.
func tcpReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
}
