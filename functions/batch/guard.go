package batch

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/impact"
	"github.com/nodebatch/nodebatch/shared/request"
)

// Defaults of the guard.
const (
	// DefaultConfirmOver is how many nodes a selector may match before its
	// batch needs confirm or max_nodes.
	DefaultConfirmOver = config.DefaultConfirmOver
	// ImpactPods is how many evicted pods a preview or a refusal lists
	// (the counts count them all).
	ImpactPods = 1000
)

// Guard is the confirmation guard's settings. A batch that sets a NoExecute
// taint, uses all, or has a selector matching more than ConfirmOver nodes
// runs only with "confirm" equal to its node count or "max_nodes" at least
// that; the seed endpoints (explicit node lists) need it for NoExecute only,
// and not at all when SeedNoExecuteOff.
type Guard struct {
	ConfirmOver      int // 0: DefaultConfirmOver
	SeedNoExecuteOff bool
}

// Refusal is what the 409 confirmation_required of a batch the guard
// holds back adds to the error (apierror.Error.Details): the node count
// the request must confirm, why it is guarded, and what the change would
// evict.
type Refusal struct {
	Nodes   int            `json:"nodes"`
	Reasons []string       `json:"reasons"`
	Impact  *impact.Impact `json:"impact,omitempty"`
	// ImpactError says why the impact could not be computed (for example
	// the user may not list pods).
	ImpactError string `json:"impact_error,omitempty"`
}

// guard decides whether spec may run on names (resolved, sorted) now. It
// returns nil to go ahead, else the 409 with a Refusal as its details,
// with the impact of the change when it sets a NoExecute taint. seed is true for the seed's
// endpoints. A dry run changes nothing, so it needs no confirmation, but a
// confirm or max_nodes it carries is still checked.
// predict gives the change's impact on names (h.predictor).
func (h *Handler) guard(spec *request.Spec, names []string, predict func() (*impact.Impact, string), seed bool) *apierror.Error {
	n := len(names)
	var reasons []string
	if setsNoExecute(spec.Set) && (!seed || !h.Guard.SeedNoExecuteOff) {
		reasons = append(reasons, "it sets a NoExecute taint, which evicts the pods that do not tolerate it")
	}
	if !seed {
		over := h.Guard.ConfirmOver
		if over <= 0 {
			over = DefaultConfirmOver
		}
		switch {
		case spec.All:
			reasons = append(reasons, fmt.Sprintf("it targets all %d nodes", n))
		case spec.Selector != nil && n > over:
			reasons = append(reasons, fmt.Sprintf("its selector matches %d nodes, more than %d", n, over))
		}
	}
	var msg string
	var fields []apierror.FieldError
	switch {
	case spec.MaxNodes > 0 && n > spec.MaxNodes:
		msg = fmt.Sprintf("the batch resolves to %d nodes, more than its max_nodes %d", n, spec.MaxNodes)
		fields = []apierror.FieldError{{Field: "max_nodes", Value: fmt.Sprint(spec.MaxNodes), Reason: fmt.Sprintf("the batch resolves to %d nodes", n)}}
	case spec.Confirm > 0 && spec.Confirm != n:
		msg = fmt.Sprintf("the batch resolves to %d nodes, not the %d it confirms", n, spec.Confirm)
		fields = []apierror.FieldError{{Field: "confirm", Value: fmt.Sprint(spec.Confirm), Reason: fmt.Sprintf("the batch resolves to %d nodes", n)}}
	case len(reasons) == 0 || spec.DryRun || spec.Confirm == n || spec.MaxNodes >= n:
		return nil
	default:
		msg = fmt.Sprintf("the batch needs confirmation: send \"confirm\": %d (its node count) or a \"max_nodes\" of at least %d", n, n)
		fields = []apierror.FieldError{{Field: "confirm", Reason: "required: " + reasons[0]}}
	}
	r := &Refusal{Nodes: n, Reasons: reasons}
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
	if setsNoExecute(spec.Set) {
		// Refused either way: the impact only informs, so a listing the
		// user may not make is reported, not fatal.
		r.Impact, r.ImpactError = predict()
		if r.Impact != nil {
			msg += "; " + r.Impact.Summary
		}
	}
	return &apierror.Error{Kind: apierror.ConfirmationRequired, Message: msg, Fields: fields, Details: r}
}

// setsNoExecute reports whether set adds or updates a NoExecute taint.
func setsNoExecute(set change.Set) bool {
	for _, t := range set.Taints {
		if !t.Remove && t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

// predictor returns a function computing, once (however often it is
// called), what set would evict on the named nodes: a submit's guard shows
// it in its refusal, and the batch records it.
func (h *Handler) predictor(ctx context.Context, kube kubernetes.Interface, set change.Set, names []string, states map[string]nodeState) func() (*impact.Impact, string) {
	return sync.OnceValues(func() (*impact.Impact, string) { return h.impact(ctx, kube, set, names, states) })
}

// impact computes what set would evict on the named nodes (their taints as
// listed in states), listing at most ImpactPods pods; or says why it could
// not.
func (h *Handler) impact(ctx context.Context, kube kubernetes.Interface, set change.Set, names []string, states map[string]nodeState) (*impact.Impact, string) {
	nodes := make([]impact.Node, len(names))
	for i, name := range names {
		nodes[i] = impact.Node{Name: name, Taints: states[name].taints}
	}
	im, err := impact.Compute(ctx, kube, set, nodes, impact.Options{Now: h.now()})
	if err != nil {
		h.logger().Warn("compute impact", "error", err)
		return nil, err.Error()
	}
	im.Limit(ImpactPods)
	return im, ""
}
