package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/emulators/scheduler"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

const (
	schedulerSA = "scheduler@nodebatch-e2e.iam.gserviceaccount.com"
	otherSA     = "intruder@nodebatch-e2e.iam.gserviceaccount.com"
)

// e2e is the real batch function (batch.Serve: auth middleware, handler,
// Firestore and Pub/Sub emulators, kube-apiserver) behind a listener whose
// URL is the scheduler audience, with a development issuer standing in for
// Google.
type e2e struct {
	url      string // batch function base URL = scheduler audience
	google   *oidcdev.Issuer
	fs       *firestore.Client
	selector string
	// front, when set, wraps every request to the function (fault injection).
	mu    sync.Mutex
	front func(w http.ResponseWriter, r *http.Request, fn http.Handler)
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	env := harness.Start(t)
	project := env.ProjectID(t)
	prefix, _ := env.SeedNodes(t, 3)
	ctx := context.Background()

	topic := "projects/" + project + "/topics/node-patch"
	if _, err := env.PubSub(t, project).TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatalf("create topic: %v", err)
	}

	// Issuers: users at /, the Google stand-in at /google.
	issuers := httptest.NewServer(nil)
	t.Cleanup(issuers.Close)
	user, err := oidcdev.New(issuers.URL)
	if err != nil {
		t.Fatal(err)
	}
	google, err := oidcdev.New(issuers.URL + "/google")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/google/", google.Handler())
	mux.Handle("/", user.Handler())
	issuers.Config.Handler = mux

	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	e := &e2e{url: "http://" + srv.Listener.Addr().String(), google: google, fs: env.Firestore(t, project), selector: harness.TestLabel + "=" + prefix}
	settings := map[string]string{
		"NODEBATCH_PROJECT":             project,
		"KUBECONFIG":                    env.Kubeconfig,
		"NODEBATCH_TOPIC":               "node-patch",
		"NODEBATCH_INLINE_MAX":          "0", // always fan out: nothing is patched here
		"NODEBATCH_OIDC_ISSUER":         issuers.URL,
		"NODEBATCH_OIDC_AUDIENCE":       "nodebatch",
		"NODEBATCH_SCHEDULER_ISSUER":    issuers.URL + "/google",
		"NODEBATCH_SCHEDULER_AUDIENCE":  e.url,
		"NODEBATCH_SCHEDULER_ALLOWLIST": schedulerSA,
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	fn, stop, err := batch.Serve(ctx, func(k string) string { return settings[k] }, logger)
	if err != nil {
		t.Fatalf("batch.Serve() error = %v", err)
	}
	t.Cleanup(stop)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		front := e.front
		e.mu.Unlock()
		if front != nil {
			front(w, r, fn)
			return
		}
		fn.ServeHTTP(w, r)
	})
	srv.Start()
	return e
}

// job is a scheduled batch on the seeded nodes, retried quickly.
func (e *e2e) job(name string, retries int) scheduler.Job {
	body, _ := json.Marshal(map[string]any{
		"selector": e.selector,
		"labels":   []string{"nodebatch.dev/scheduled=nightly"},
	})
	return scheduler.Job{
		Name: name, Schedule: "0 22 * * *", Target: e.url + "/v1/batches",
		Headers: map[string]string{"Content-Type": "application/json"}, Body: body,
		ServiceAccount: schedulerSA, Audience: e.url,
		Retry: scheduler.RetryConfig{RetryCount: retries, MinBackoff: scheduler.Duration(10 * time.Millisecond)},
	}
}

// batches returns the ids of every batch recorded in this test's project.
func (e *e2e) batches(t *testing.T) []string {
	t.Helper()
	docs, err := e.fs.Collection(store.BatchesCollection).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatalf("list batches: %v", err)
	}
	var ids []string
	for _, d := range docs {
		ids = append(ids, d.Ref.ID)
	}
	return ids
}

func batchID(t *testing.T, res scheduler.Result) string {
	t.Helper()
	var c struct {
		BatchID string `json:"batch_id"`
	}
	if err := json.Unmarshal(res.Body, &c); err != nil || c.BatchID == "" {
		t.Fatalf("answer %d %s has no batch_id (%v)", res.StatusCode, res.Body, err)
	}
	return c.BatchID
}

// TestScheduledRunStartsOneBatch: the same run delivered twice (a duplicate
// delivery, or a retry after a lost answer) starts one batch; the next run
// starts another.
func TestScheduledRunStartsOneBatch(t *testing.T) {
	e := newE2E(t)
	r := scheduler.NewRunner(nil, scheduler.DevIssuerToken(nil, e.google.URL()), nil)
	at := time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC)
	ctx := context.Background()
	job := e.job("spot-nightly", 0)

	first, err := r.RunOnce(ctx, job, at)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	again, err := r.RunOnce(ctx, job, at)
	if err != nil {
		t.Fatalf("same run again: %v", err)
	}
	if a, b := batchID(t, first), batchID(t, again); a != b {
		t.Errorf("same schedule time gave batches %s and %s, want one: the batch function must take the idempotency key from shared/schedule.IdempotencyKey when the body has none", a, b)
	}
	if got := e.batches(t); len(got) != 1 {
		t.Errorf("after one run delivered twice: %d batches %v, want 1", len(got), got)
	}

	// A lost answer: the function creates the batch, the scheduler sees 503
	// and retries with the same schedule time.
	var calls atomic.Int32
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request, fn http.Handler) {
		if calls.Add(1) == 1 {
			fn.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
			return
		}
		fn.ServeHTTP(w, r)
	}
	e.mu.Unlock()
	next := at.Add(24 * time.Hour)
	res, err := r.RunOnce(ctx, e.job("spot-nightly", 2), next)
	if err != nil {
		t.Fatalf("next day's run: %v", err)
	}
	if res.Attempts != 2 {
		t.Errorf("next day's run took %d attempts, want 2 (first answer lost)", res.Attempts)
	}
	if got := e.batches(t); len(got) != 2 {
		t.Errorf("after two runs (the second retried after a lost answer): %d batches %v, want 2", len(got), got)
	}
	if id := batchID(t, res); id == batchID(t, first) {
		t.Errorf("next day's run answered yesterday's batch %s", id)
	}
}

// TestSchedulerTokensRefused: only a Google-signed token with the function's
// URL as audience, for an allowlisted service account, starts a batch.
func TestSchedulerTokensRefused(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	forger, err := oidcdev.New(e.google.URL()) // same issuer URL, another key
	if err != nil {
		t.Fatal(err)
	}
	mint := func(iss *oidcdev.Issuer, email, aud string) scheduler.TokenFunc {
		return func(context.Context, string, string) (string, error) {
			return iss.Mint(oidcdev.Claims{Subject: email, Email: email, Audience: []string{aud}})
		}
	}
	tests := []struct {
		name       string
		token      scheduler.TokenFunc
		wantStatus int
	}{
		{"forged signature", mint(forger, schedulerSA, e.url), http.StatusUnauthorized},
		{"wrong audience", mint(e.google, schedulerSA, "https://nodebatch-batch.example.com"), http.StatusUnauthorized},
		{"service account not allowlisted", mint(e.google, otherSA, e.url), http.StatusUnauthorized},
		{"allowlisted", mint(e.google, schedulerSA, e.url), http.StatusAccepted},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.batches(t))
			r := scheduler.NewRunner(nil, tt.token, nil)
			res, err := r.RunOnce(ctx, e.job(fmt.Sprintf("job-%d", i), 0), time.Now())
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("RunOnce() = %d %s (%v), want status %d", res.StatusCode, res.Body, err, tt.wantStatus)
			}
			wantNew := 0
			if tt.wantStatus < 300 {
				wantNew = 1
			} else if !strings.Contains(string(res.Body), "unauthenticated") {
				t.Errorf("refusal body = %s, want an unauthenticated error", res.Body)
			}
			if got := len(e.batches(t)) - before; got != wantNew {
				t.Errorf("%d batches created, want %d", got, wantNew)
			}
		})
	}
}
