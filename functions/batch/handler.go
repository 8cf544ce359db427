// Package batch is the HTTP function of nodebatch (the API): it validates a
// batch request, resolves its nodes with one list call, records the batch,
// and either fans it out as one CloudEvent per node on Pub/Sub or, for small
// batches, applies it in-process through the same per-node path the patch
// function runs. It also answers GET /v1/batches/{id} and the seed's
// endpoints. docs/api.md documents every route.
package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/schedule"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Handler serves the batch API. Store, Kube, Publisher and Runner are
// required; zero limits fall back to defaults.
type Handler struct {
	Store Store
	Kube  kubernetes.Interface
	// Users gives clients that act as the caller (shared/kubeclient.Pool):
	// every Kubernetes call made for a person impersonates them, after a
	// SelfSubjectAccessReview (authorize.go). Nil only in unit tests, where
	// Kube is used as is.
	Users      Impersonator
	Publisher  Publisher
	Runner     *runner.Runner // inline batches run through it
	Limits     request.Limits
	Protection change.Protection
	InlineMax  int   // batches of at most this many nodes run inline (0: never)
	BodyLimit  int64 // bytes; default 1 MiB
	// WaitMax bounds how long the seed's synchronous endpoints wait for a
	// fanned-out batch before answering 202 with its task_id; default
	// DefaultWaitMax. Keep it below the function's timeout.
	WaitMax time.Duration
	// WaitPerUser caps the seed's waiting requests per principal at once
	// (per instance); a request over it answers 202 {task_id} at once.
	// Default DefaultWaitPerUser.
	WaitPerUser int
	waiting     waiters
	// CancelWait bounds how long a cancel waits for the patches that were
	// in flight when it was recorded; default DefaultCancelWait.
	CancelWait time.Duration
	// PreviewSample is how many nodes a preview also checks with a
	// server-side dry run (through Runner's patcher); default 3, <0: none.
	PreviewSample int
	// RateLimit caps how many batches each principal may submit (per
	// instance); nil: no limit. A repeated idempotent request is not
	// counted.
	RateLimit *ratelimit.Limiter
	// Guard holds back risky batches until they carry confirm or
	// max_nodes (guard.go).
	Guard Guard
	// PreviewLimit caps how many previews each principal may ask for (per
	// instance): POST /v1/batches:preview and dry_run submits, which list
	// every node and send dry-run writes; nil: no limit. A dry_run submit
	// counts against both limits.
	PreviewLimit *ratelimit.Limiter
	Now          func() time.Time // default time.Now
	NewID        func() string    // default a time-ordered random id
	Logger       *slog.Logger     // default slog.Default()
	// Telemetry traces submits (listing, publishing; each node event
	// carries the trace context) and counts batches; nil: none.
	Telemetry *telemetry.Telemetry
}

// Routes registers the handler's routes on mux.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.Handle("POST /v1/batches", h.serve(h.create))
	mux.Handle("GET /v1/batches", h.serve(h.history))
	mux.Handle("POST /v1/batches:preview", h.serve(h.preview))
	mux.Handle("GET /v1/batches/{id}", h.serve(h.get))
	mux.Handle("POST /v1/batches/{idaction}", h.serve(h.control))
	mux.Handle("POST /api/v1/nodes/labels/batch-add", h.serve(h.seedLabels(false)))
	mux.Handle("POST /api/v1/nodes/labels/batch-add-progress", h.serve(h.seedLabels(true)))
	mux.Handle("POST /api/v1/nodes/taints/batch-add", h.serve(h.seedTaints(false)))
	mux.Handle("POST /api/v1/nodes/taints/batch-add-progress", h.serve(h.seedTaints(true)))
}

// ServeHTTP serves the routes (for functions.HTTP and tests).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mux := http.NewServeMux()
	h.Routes(mux)
	mux.ServeHTTP(w, r)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) limits() request.Limits {
	l, d := h.Limits, request.DefaultLimits()
	if l.MaxNodes <= 0 {
		l.MaxNodes = d.MaxNodes
	}
	if l.MaxChanges <= 0 {
		l.MaxChanges = d.MaxChanges
	}
	if l.MaxConcurrency <= 0 {
		l.MaxConcurrency = d.MaxConcurrency
	}
	if l.MaxIdempotencyKey <= 0 {
		l.MaxIdempotencyKey = d.MaxIdempotencyKey
	}
	return l
}

func (h *Handler) newID() string {
	if h.NewID != nil {
		return h.NewID()
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	return h.now().UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var body request.Batch
	if err := h.decode(w, r, &body); err != nil {
		return err
	}
	return h.submit(w, r, &body, submitAsync)
}

func (h *Handler) decode(w http.ResponseWriter, r *http.Request, v any) error {
	limit := h.BodyLimit
	if limit <= 0 {
		limit = config.DefaultBodyLimit
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if e := request.Decode(r.Body, v); e != nil {
		return e
	}
	return nil
}

// submitMode says how a request wants its answer.
type submitMode int

const (
	submitAsync  submitMode = iota // 202 after fan-out, 200 with results when inline
	submitWait                     // seed batch-add: wait for the result
	submitTaskID                   // seed batch-add-progress: 202 {task_id}
)

// submit validates, records and runs a batch, then answers per mode.
func (h *Handler) submit(w http.ResponseWriter, r *http.Request, body *request.Batch, mode submitMode) error {
	ctx := r.Context()
	p, err := principal(r)
	if err != nil {
		return err
	}
	// A scheduled run retried by Cloud Scheduler carries the same schedule
	// time: it must find the batch its first try started, not start another.
	if body.IdempotencyKey == "" && p.Scheduler {
		if k, ok := schedule.IdempotencyKey(r); ok {
			body.IdempotencyKey = k
		}
	}
	spec, e := body.Validate(h.limits(), h.Protection)
	if e != nil {
		return e
	}
	fingerprint := spec.Fingerprint()
	if spec.IdempotencyKey != "" {
		id, err := h.Store.BatchForKey(ctx, p.Subject, spec.IdempotencyKey, fingerprint)
		switch {
		case err == nil:
			return h.existing(w, r, id, mode)
		case errors.Is(err, store.ErrIdempotencyMismatch):
			return idempotencyMismatch(spec.IdempotencyKey, id)
		case !errors.Is(err, store.ErrNotFound):
			return failed("read idempotency key", err)
		}
	}
	if spec.DryRun {
		if err := h.allowPreview(p); err != nil {
			return err
		}
	}
	if h.RateLimit != nil {
		if ok, wait := h.RateLimit.Allow(p.Subject); !ok {
			h.logger().Info("batch refused: rate limit", "subject", p.Subject, "retry_after", wait)
			return h.RateLimit.Error(wait)
		}
	}
	var states map[string]nodeState
	var seen func(*corev1.Node)
	if spec.DryRun || setsNoExecute(spec.Set) {
		states, seen = keepStates()
	}
	observed, seen := keepObserved(spec, seen)
	kube, e := h.authorizeList(ctx, p)
	if e != nil {
		return e
	}
	lctx, span := h.Telemetry.Start(ctx, "list nodes")
	names, err := h.resolve(lctx, kube, spec, seen)
	span.End()
	if err != nil {
		return err
	}
	if e := h.authorizeWrite(ctx, kube, p, names); e != nil {
		return e
	}
	predict := h.predictor(ctx, kube, spec.Set, names, states)
	if e := h.guard(spec, names, predict, mode != submitAsync); e != nil {
		return e
	}
	b, lanes, evs, err := h.plan(p, spec, names, observed)
	if err != nil {
		return failed("plan batch", err)
	}
	if setsNoExecute(spec.Set) && !spec.DryRun {
		// Recorded so that whoever opens the batch later (another tab,
		// a link, the CLI) sees what it was predicted to evict.
		im, imErr := predict()
		b.Impact = impactDoc(im, imErr, b.CreatedAt)
	}
	b.Requesters = []store.Requester{requester(p, 1, b.CreatedAt)}
	log := h.logger().With("batch_id", b.ID, "owner", b.Owner)
	b.IdempotencyFingerprint = fingerprint
	b.TraceParent = telemetry.TraceParent(ctx)
	if err := h.Store.Create(ctx, b, lanes); errors.Is(err, store.ErrExists) && spec.IdempotencyKey != "" {
		// Another request with the key won the race to record it.
		id, err := h.Store.BatchForKey(ctx, p.Subject, spec.IdempotencyKey, fingerprint)
		switch {
		case errors.Is(err, store.ErrIdempotencyMismatch):
			return idempotencyMismatch(spec.IdempotencyKey, id)
		case err != nil:
			return failed("read idempotency key", err)
		default:
			return h.existing(w, r, id, mode)
		}
	} else if err != nil {
		return failed("record batch", err)
	}
	log.InfoContext(ctx, "batch created", "total", b.Total, "concurrency", b.Concurrency, "inline", b.Inline, "action", b.Action,
		"kube_user", p.KubeUser, "labels", b.Changes.Labels, "taints", b.Changes.Taints, "selector", b.Selector, "all", b.All, "listed_nodes", len(spec.Nodes), "dry_run", b.DryRun)
	h.started(ctx, b.Inline, "new")
	created := createdOf(b)
	if spec.DryRun {
		pv := h.computePreview(ctx, kube, h.previewPatcher(p), spec.Set, names, states, "", DefaultPageSize)
		created.Preview = &pv
	}

	if b.Inline {
		if mode == submitTaskID {
			// The seed's progress endpoints answer at once; the inline run
			// continues without the request's context.
			go h.runInline(context.WithoutCancel(ctx), log, evs)
			writeJSON(w, http.StatusAccepted, created)
			return nil
		}
		// A client that goes away must not strand the batch half-run.
		h.runInline(context.WithoutCancel(ctx), log, evs)
		return h.answer(w, r, b.ID, http.StatusOK)
	}
	// A client that goes away must not leave a half-published batch: publish
	// under a context of our own.
	if err := h.fanOut(ctx, log, b.ID, evs); err != nil {
		return err
	}
	log.Info("batch published", "events", len(evs))
	if mode == submitWait {
		return h.wait(w, r, b.ID)
	}
	writeJSON(w, http.StatusAccepted, created)
	return nil
}

// idempotencyMismatch answers 409 idempotency_mismatch: key already names
// batch id, made from a different request. Returning that batch would tell
// the caller their new request ran when it did not.
func idempotencyMismatch(key, id string) error {
	return apierror.Field(apierror.IdempotencyMismatch, "idempotency_key", key, "already used for batch "+id+" with a different request",
		"idempotency_key %q was used for batch %s with a different request; send the same request to get that batch, or use a new key", key, id)
}

// allowPreview spends one of p's previews; when none is left it returns
// the 429 (with Retry-After).
func (h *Handler) allowPreview(p auth.Principal) error {
	if h.PreviewLimit == nil {
		return nil
	}
	if ok, wait := h.PreviewLimit.Allow(p.Subject); !ok {
		h.logger().Info("preview refused: rate limit", "subject", p.Subject, "retry_after", wait)
		return h.PreviewLimit.Error(wait)
	}
	return nil
}

// existing answers a request whose idempotency key names an earlier batch.
func (h *Handler) existing(w http.ResponseWriter, r *http.Request, id string, mode submitMode) error {
	b, err := h.Store.Batch(r.Context(), id)
	if err != nil {
		return failed("read batch", err)
	}
	if mode == submitWait {
		return h.wait(w, r, id)
	}
	c := createdOf(b)
	c.Existing = true
	writeJSON(w, http.StatusOK, c)
	return nil
}

// resolve lists the cluster's nodes once and returns the batch's node names
// (sorted), or a 422 naming the field (unknown nodes, a selector matching
// nothing, too many nodes), or a 503 when the list failed.
// seen, when not nil, is called with every node listed.
// kube is the client acting as the caller.
func (h *Handler) resolve(ctx context.Context, kube kubernetes.Interface, spec *request.Spec, seen func(*corev1.Node)) ([]string, error) {
	opts := metav1.ListOptions{Limit: 1000}
	if spec.Selector != nil {
		opts.LabelSelector = spec.Selector.String()
	}
	var all []string
	for {
		list, err := kube.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, failed("list nodes", err)
		}
		for i := range list.Items {
			all = append(all, list.Items[i].Name)
			if seen != nil {
				seen(&list.Items[i])
			}
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	sort.Strings(all)
	lim := h.limits()
	var errs field.ErrorList
	names := all
	switch {
	case spec.Nodes != nil:
		have := make(map[string]bool, len(all))
		for _, n := range all {
			have[n] = true
		}
		for i, n := range spec.Nodes {
			if !have[n] {
				errs = append(errs, field.NotFound(field.NewPath("nodes").Index(i), n))
			}
		}
		names = slices.Sorted(slices.Values(spec.Nodes))
	case spec.Selector != nil && len(all) == 0:
		errs = append(errs, field.Invalid(field.NewPath("selector"), spec.SelectorText, "matches no node"))
	case len(all) == 0:
		errs = append(errs, field.Invalid(field.NewPath("all"), true, "the cluster has no node"))
	}
	if len(names) > lim.MaxNodes {
		p := field.NewPath("all")
		if spec.Selector != nil {
			p = field.NewPath("selector")
		}
		errs = append(errs, field.TooMany(p, len(names), lim.MaxNodes))
	}
	if e := request.Invalid(errs); e != nil {
		return nil, e
	}
	return names, nil
}

// keepObserved returns a resolve callback that keeps, for each listed node of
// the batch, only what its patch needs to skip reading the node
// (change.Observed: resourceVersion, touched labels, taints if touched),
// then calls next (if not nil); and the map it fills.
func keepObserved(spec *request.Spec, next func(*corev1.Node)) (map[string]*change.Observed, func(*corev1.Node)) {
	var want map[string]bool // an explicit node list: keep only those
	if spec.Nodes != nil {
		want = make(map[string]bool, len(spec.Nodes))
		for _, n := range spec.Nodes {
			want[n] = true
		}
	}
	m := map[string]*change.Observed{}
	return m, func(n *corev1.Node) {
		if want == nil || want[n.Name] {
			m[n.Name] = spec.Set.Observe(n.ResourceVersion, n.Labels, n.Spec.Taints)
		}
		if next != nil {
			next(n)
		}
	}
}

// plan builds the batch document, its lanes and one event per node: node i
// goes to lane i mod concurrency at position i div concurrency. Each event
// carries the node's observed (nil when absent: the patch path reads).
func (h *Handler) plan(p auth.Principal, spec *request.Spec, names []string, observed map[string]*change.Observed) (*store.BatchDoc, []store.LaneDoc, []events.Node, error) {
	total := len(names)
	c := spec.Concurrency
	if c == 0 {
		c = request.Concurrency(total, h.limits().MaxConcurrency)
	}
	c = min(c, total)
	now := h.now()
	b := &store.BatchDoc{
		ID:             h.newID(),
		Owner:          p.Subject,
		Selector:       spec.SelectorText,
		All:            spec.All,
		Nodes:          spec.Nodes,
		Names:          names, // event order: stored as names documents (store.Create)
		Total:          total,
		Concurrency:    c,
		Lanes:          c,
		AttemptTotal:   total,
		Attempt:        1,
		State:          model.StateRunning,
		Inline:         h.InlineMax > 0 && total <= h.InlineMax,
		CreatedAt:      now,
		StartedAt:      now,
		DryRun:         spec.DryRun,
		IdempotencyKey: spec.IdempotencyKey,
		MaxFailures:    string(spec.MaxFailures),
	}
	if err := b.SetChange(spec.Set); err != nil {
		return nil, nil, nil, err
	}
	lanes, evs := assignLanes(b.ID, 1, names, c, func(string) change.Set { return spec.Set }, observed, spec.DryRun, now)
	return b, lanes, evs, nil
}

func (h *Handler) publish(ctx context.Context, evs []events.Node) (err error) {
	ctx, span := h.Telemetry.Start(ctx, "publish node events")
	defer func() { telemetry.End(span, err) }()
	now := h.now()
	msgs := make([]*pubsub.Message, len(evs))
	for i, ev := range evs {
		m, err := events.Message(ev, now)
		if err != nil {
			return err
		}
		events.InjectTrace(ctx, m)
		msgs[i] = m
	}
	if err := h.Publisher.Publish(ctx, msgs); err != nil {
		return err
	}
	h.Telemetry.Metrics().Published(ctx, len(msgs))
	return nil
}

// runInline runs a small batch in-process: one goroutine per lane, each lane
// in order, exactly what ordered delivery does. Transient errors are retried
// a few times with backoff; a node still failing is recorded failed, as the
// dead-letter path would.
func (h *Handler) runInline(ctx context.Context, log *slog.Logger, evs []events.Node) {
	byLane := map[int][]events.Node{}
	for _, ev := range evs {
		byLane[ev.Lane] = append(byLane[ev.Lane], ev)
	}
	var wg sync.WaitGroup
	for _, lane := range byLane {
		wg.Go(func() {
			for _, ev := range lane {
				h.runOne(ctx, log, ev)
			}
		})
	}
	wg.Wait()
}

func (h *Handler) runOne(ctx context.Context, log *slog.Logger, ev events.Node) {
	const tries = 4
	var err error
	for try := range tries {
		if _, err = h.Runner.Run(ctx, ev); err == nil || !errors.Is(err, runner.ErrTransient) {
			break
		}
		if try < tries-1 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(100<<try) * time.Millisecond):
			}
		}
	}
	if err == nil {
		return
	}
	log.Warn("inline node", "node", ev.Node, "error", err)
	if errors.Is(err, runner.ErrTransient) {
		if _, ferr := h.Runner.Fail(ctx, ev, "gave up after "+fmt.Sprint(tries)+" attempts: "+err.Error()); ferr != nil {
			log.Error("record inline failure", "node", ev.Node, "error", ferr)
		}
	}
}
