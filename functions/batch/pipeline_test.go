package batch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/emulators/pushdeliver"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/deps"
	"github.com/nodebatch/nodebatch/functions/patch"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

const audience = "nodebatch"

// options shape one test pipeline.
type options struct {
	proxy       kubeproxy.Options // the patch function reaches the API server through a counting proxy
	duplicate   bool              // the deliverer pushes every message twice
	inlineMax   int               // NODEBATCH_INLINE_MAX (0: never inline)
	noDeliverer bool              // publish only: nothing consumes the subscription
	maxAttempts int
	maxInFlight int
	publisher   func(batch.Publisher) batch.Publisher // wraps the real publisher
	cancelWait  time.Duration
	// settings are more of the functions' settings (the environment
	// config.Load reads), over the pipeline's own.
	settings map[string]string
}

// pipeline is the whole product on the real local stack: the API (batch
// function) and the patch function on httptest servers, a push deliverer
// between the Pub/Sub emulator and the patch function, a dead-letter
// deliverer, the Firestore emulator, the kube-apiserver behind a counting
// proxy, and a development OIDC issuer.
type pipeline struct {
	env     *harness.Env
	project string
	fs      *firestore.Client
	ps      *pubsub.Client
	store   *store.Store
	kube    kubernetes.Interface // admin, direct
	proxy   *kubeproxy.Proxy
	api     *httptest.Server
	issuer  *oidcdev.Issuer
	topic   string
	sub     string
	push    *pushdeliver.Deliverer // the main subscription's deliverer (nil with noDeliverer)
}

func newPipeline(t *testing.T, o options) *pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := harness.Start(t)
	p := &pipeline{env: env, project: env.ProjectID(t), topic: "node-patch", sub: "node-patch-push"}
	p.fs = env.Firestore(t, p.project)
	p.ps = env.PubSub(t, p.project)
	p.store = store.New(p.fs)
	p.kube = env.Kube(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	if err := pushdeliver.EnsureTopology(ctx, p.ps, pushdeliver.Topology{
		Topic: p.topic, Subscription: p.sub, DeadLetterTopic: "node-patch-dead", DeadLetterSubscription: "node-patch-dead-push",
	}); err != nil {
		t.Fatalf("EnsureTopology: %v", err)
	}

	// The counting proxy in front of the API server.
	proxy, err := kubeproxy.New(env.APIServerURL, o.proxy)
	if err != nil {
		t.Fatalf("kubeproxy.New: %v", err)
	}
	t.Cleanup(proxy.Close)
	p.proxy = proxy
	// The identity provider, then the settings both functions load, as
	// the mains do (config.Load, auth.LoadConfig).
	var issuer *oidcdev.Issuer
	issSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { issuer.Handler().ServeHTTP(w, r) }))
	t.Cleanup(issSrv.Close)
	if issuer, err = oidcdev.New(issSrv.URL); err != nil {
		t.Fatalf("oidcdev.New: %v", err)
	}
	p.issuer = issuer
	settings := map[string]string{
		"NODEBATCH_PROJECT":            p.project,
		"NODEBATCH_TOPIC":              p.topic,
		"NODEBATCH_OIDC_ISSUER":        issSrv.URL,
		"NODEBATCH_OIDC_AUDIENCE":      audience,
		"NODEBATCH_INLINE_MAX":         strconv.Itoa(o.inlineMax),
		"NODEBATCH_RATE_PER_MINUTE":    "0",
		"NODEBATCH_PREVIEW_PER_MINUTE": "0",
	}
	maps.Copy(settings, o.settings)
	getenv := func(k string) string { return settings[k] }
	cfg, err := config.Load(getenv)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	acfg, err := auth.LoadConfig(getenv)
	if err != nil {
		t.Fatalf("auth.LoadConfig: %v", err)
	}

	// The patch function, through the proxy, as the narrowly scoped
	// identity, built by its constructor.
	ph, closePatch, err := patch.New(ctx, cfg, logger, deps.WithKube(proxy.RestConfig(env.PatcherConfig)), deps.WithFirestore(p.fs))
	if err != nil {
		t.Fatalf("patch.New: %v", err)
	}
	t.Cleanup(closePatch)
	mux, err := ph.Mux(ctx)
	if err != nil {
		t.Fatalf("patch mux: %v", err)
	}
	patchSrv := httptest.NewServer(mux)
	t.Cleanup(patchSrv.Close)

	if !o.noDeliverer {
		maxAttempts := o.maxAttempts
		if maxAttempts == 0 {
			maxAttempts = 10
		}
		maxInFlight := o.maxInFlight
		if maxInFlight == 0 {
			maxInFlight = 64
		}
		for _, d := range []pushdeliver.Config{
			{Subscription: p.sub, Topic: p.topic, Endpoint: patchSrv.URL + "/", DeadLetterTopic: "node-patch-dead",
				MaxInFlight: maxInFlight, MaxAttempts: maxAttempts, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
				Duplicate: o.duplicate, Logger: logger},
			{Subscription: "node-patch-dead-push", Topic: "node-patch-dead", Endpoint: patchSrv.URL + "/deadletter",
				MaxInFlight: 4, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: logger},
		} {
			dl, err := pushdeliver.New(p.ps, d)
			if err != nil {
				t.Fatalf("pushdeliver.New(%s): %v", d.Subscription, err)
			}
			if p.push == nil {
				p.push = dl
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				if err := dl.Run(ctx); err != nil {
					t.Errorf("deliverer %s: %v", d.Subscription, err)
				}
			})
			t.Cleanup(func() { cancel(); wg.Wait() })
		}
	}

	// The API, built by its constructor. Its inline batches run through
	// the patch function's runner, so the proxy sees every patch.
	api, err := batch.New(ctx, cfg, acfg, logger, deps.WithKube(env.PatcherConfig), deps.WithFirestore(p.fs))
	if err != nil {
		t.Fatalf("batch.New: %v", err)
	}
	t.Cleanup(api.Close)
	h := api.Handler
	h.Runner = ph.Runner
	h.CancelWait = o.cancelWait
	if o.publisher != nil {
		h.Publisher = o.publisher(h.Publisher)
	}
	p.api = httptest.NewServer(api.HTTP)
	t.Cleanup(p.api.Close)
	return p
}

// token mints a bearer token for subject (admin when roles has "admin").
func (p *pipeline) token(t *testing.T, subject string, roles ...string) string {
	t.Helper()
	tok, err := p.issuer.Mint(oidcdev.Claims{Subject: subject, Email: subject + "@example.com", Roles: roles, Audience: []string{audience}, TTL: time.Hour})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

// do sends a request to the API and decodes the JSON answer into out (if not
// nil). It returns the status and the raw body.
func (p *pipeline) do(t *testing.T, method, path, token string, body any, out any) (int, []byte) {
	t.Helper()
	code, raw, err := p.send(method, path, token, body, out)
	if err != nil {
		t.Fatal(err)
	}
	return code, raw
}

// send is do for any goroutine: it returns what do would fail the test with.
func (p *pipeline) send(method, path, token string, body any, out any) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, p.api.URL+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return 0, nil, fmt.Errorf("%s %s: decode %s: %w", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw, nil
}

// status is the part of GET /v1/batches/{id} the tests read.
type status struct {
	BatchID     string           `json:"batch_id"`
	State       string           `json:"state"`
	Reason      string           `json:"reason"`
	Total       int              `json:"total"`
	Concurrency int              `json:"concurrency"`
	Done        int              `json:"done"`
	Counts      map[string]int   `json:"counts"`
	Failures    []map[string]any `json:"failures"`
	Results     []store.NodeDoc  `json:"results"`
	Next        string           `json:"next_page_token"`
	Timing      map[string]any   `json:"timing"`
}

// submit posts a batch and returns the created answer (fails unless 202).
func (p *pipeline) submit(t *testing.T, token string, body map[string]any) batch.Created {
	t.Helper()
	var c batch.Created
	code, raw := p.do(t, http.MethodPost, "/v1/batches", token, body, &c)
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/batches %v = %d %s, want 202", body, code, raw)
	}
	return c
}

// wait polls the batch until it is final (for up to 4 minutes) and returns
// its status with every node result (all pages).
func (p *pipeline) wait(t *testing.T, token, id string) status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var st status
	wait.For(ctx, t, "batch "+id+" to end", func() error {
		st = status{}
		code, raw := p.do(t, http.MethodGet, "/v1/batches/"+id, token, nil, &st)
		if code != http.StatusOK {
			t.Fatalf("GET batch %s = %d %s", id, code, raw)
		}
		return wait.True(st.State != "running" && st.State != "pending", "state %s: done %d of %d, counts %v", st.State, st.Done, st.Total, st.Counts)
	})
	return p.allResults(t, token, st)
}

func (p *pipeline) allResults(t *testing.T, token string, st status) status {
	t.Helper()
	for next := st.Next; next != ""; {
		var page status
		code, raw := p.do(t, http.MethodGet, "/v1/batches/"+st.BatchID+"?page_size=200&page_token="+next, token, nil, &page)
		if code != http.StatusOK {
			t.Fatalf("GET batch page = %d %s", code, raw)
		}
		st.Results = append(st.Results, page.Results...)
		next = page.Next
	}
	return st
}

func wantCounts(t *testing.T, st status, want map[string]int) {
	t.Helper()
	for _, k := range []string{"succeeded", "failed", "skipped", "cancelled", "unchanged"} {
		if st.Counts[k] != want[k] {
			t.Errorf("batch %s counts = %v, want %v", st.BatchID, st.Counts, want)
			return
		}
	}
}

// halfPublisher publishes the first half of a batch's messages, then fails.
type halfPublisher struct{ next batch.Publisher }

func (h halfPublisher) Publish(ctx context.Context, msgs []*pubsub.Message) error {
	if err := h.next.Publish(ctx, msgs[:len(msgs)/2]); err != nil {
		return err
	}
	return errors.New("injected: pubsub unavailable")
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// assertNothingPublished publishes a sentinel to the pipeline's topic and
// pulls the (undelivered) subscription until the sentinel arrives: any other
// message means a refused request published something.
func assertNothingPublished(t *testing.T, p *pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := p.ps.Publisher(p.topic)
	pub.EnableMessageOrdering = true
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("sentinel"), OrderingKey: "sentinel"}).Get(ctx); err != nil {
		t.Fatalf("publish sentinel: %v", err)
	}
	var mu sync.Mutex
	var others []string
	rctx, stop := context.WithCancel(ctx)
	err := p.ps.Subscriber(p.sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		if string(m.Data) == "sentinel" {
			stop()
			return
		}
		others = append(others, m.OrderingKey+": "+string(m.Data))
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("sentinel never arrived")
	}
	if len(others) > 0 {
		t.Errorf("refused requests published %d messages, e.g. %s", len(others), others[0])
	}
}
