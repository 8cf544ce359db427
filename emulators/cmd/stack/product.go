package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/emulators/stack"
	"github.com/nodebatch/nodebatch/functions/config"
)

// Product addresses for `make run` (docs/design.md §2).
const (
	apiAddr    = "127.0.0.1:8080"
	patchAddr  = "127.0.0.1:8082"
	relayAddr  = "127.0.0.1:8090"
	issuerAddr = "127.0.0.1:8093"
)

// productProcesses are the product's processes `make run` starts on top of
// a ready stack, in order, each ready when its real endpoint answers. The
// binaries are built by `make run` into binDir. The stack stops them first.
// Their settings are product.Settings, the ones the in-process product
// (emulators/product) starts from, plus each process' own.
func productProcesses(info stack.Info, binDir, stateDir string) []stack.ProcessSpec {
	bin := func(name string) string { return filepath.Join(binDir, name) }
	issuer := "http://" + issuerAddr
	settings := product.Settings(info.Project, issuer, "http://"+apiAddr)
	settings["FIRESTORE_EMULATOR_HOST"] = info.FirestoreHost
	settings["PUBSUB_EMULATOR_HOST"] = info.PubSubHost
	common := make([]string, 0, len(settings))
	for k, v := range settings {
		common = append(common, k+"="+v)
	}
	sort.Strings(common)
	env := func(extra ...string) []string { return append(slices.Clone(common), extra...) }
	topo := product.Topology(config.DefaultTopic)
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
				"-topic", topo.Topic, "-subscription", topo.Subscription,
				"-dead-letter-topic", topo.DeadLetterTopic, "-dead-letter-subscription", topo.DeadLetterSubscription,
				"-endpoint", "http://" + patchAddr + "/",
			},
			Env: env(),
		},
		{
			Name: "pushdeliver-dead",
			Path: bin("pushdeliver"),
			Args: []string{
				"-project", info.Project, "-pubsub-host", info.PubSubHost, "-ensure",
				"-topic", topo.DeadLetterTopic, "-subscription", topo.DeadLetterSubscription,
				"-endpoint", "http://" + patchAddr + "/deadletter",
			},
			Env: env(),
		},
		{
			// The UI's core controls need no setting: the relay always
			// serves them (relay/config.CoreFeatures), as in Google Cloud.
			Name:  "relay",
			Path:  bin("relay"),
			Env:   env("KUBECONFIG="+info.AdminKubeconfig, "NODEBATCH_RELAY_ADDR="+relayAddr),
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
