// Package nodepatch applies one node's change.Set through the Kubernetes
// API. Every write is one JSON merge patch of only what changes (the changed
// label keys; the whole new taint list when a taint changes, since the API
// stores taints as one list that a patch replaces) carrying the
// resourceVersion the change was computed against as a precondition, so a
// taint or label another writer set meanwhile is never lost and the
// before-values are exact. When the caller knows the node as it was listed
// (change.Observed) that is one API call per node; otherwise, and after a
// 409, it reads the node first and retries with a fresh read on conflict.
// It also sorts API errors into permanent and transient ones.
package nodepatch

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/shared/change"
)

// Defaults for the zero values of Patcher's fields.
const (
	DefaultFieldManager       = "nodebatch"
	DefaultMaxConflictRetries = 10
)

// Patcher applies changes to nodes. The zero values of FieldManager and
// MaxConflictRetries mean DefaultFieldManager and DefaultMaxConflictRetries.
// The client's QPS/Burst are the caller's choice (client-go's default of
// 5/10 caps a patch function at about 2-5 nodes/s, since each node costs a
// write and, without an Observed snapshot, a GET).
type Patcher struct {
	Client             kubernetes.Interface
	FieldManager       string
	MaxConflictRetries int
}

// Outcome is what Apply did to one node.
type Outcome struct {
	change.Result
	// ResourceVersion is the node's resourceVersion after the write (or as
	// read, when nothing was written).
	ResourceVersion string
	// Conflicts counts 409 answers; each one cost a fresh read and retry
	// (a 409 of the one-call write from the Observed snapshot included).
	Conflicts int
}

func (p *Patcher) fieldManager() string {
	if p.FieldManager == "" {
		return DefaultFieldManager
	}
	return p.FieldManager
}

func (p *Patcher) maxRetries() int {
	if p.MaxConflictRetries <= 0 {
		return DefaultMaxConflictRetries
	}
	return p.MaxConflictRetries
}

// Plan is one write Write is about to send: the change as computed against
// the node at ResourceVersion, which the write carries as its precondition
// (so the before-values in Result are exactly the node's values before the
// write, if it lands).
type Plan struct {
	Node            string
	ResourceVersion string
	Result          change.Result
	DryRun          bool
}

// BeforeWrite is called with every write before it is sent (again after
// each 409, with the new plan). An error stops Write, which returns it
// unwrapped: the per-node path records its intent here, so that what a
// write did can be found out even if the delivery that sent it dies.
type BeforeWrite func(ctx context.Context, p Plan) error

// Apply is Write without a BeforeWrite hook.
func (p *Patcher) Apply(ctx context.Context, node string, s change.Set, seen *change.Observed, dryRun bool) (Outcome, error) {
	return p.Write(ctx, node, s, seen, dryRun, nil)
}

// Write makes s true on node, writing only if something changes. Every
// write is ONE JSON merge patch (see MergePatch) carrying the
// resourceVersion the change was computed against as a precondition: the
// changed label keys and, when a taint changes, the whole new taint list.
// The precondition makes the list replacement safe against another
// writer's taint and makes the before-values exact.
//
// With seen (a snapshot with a resourceVersion, see change.Observed), Write
// first computes s against seen and, if that changes something, sends the
// patch at seen.ResourceVersion: no read. A 409 (the node moved since the
// snapshot) is counted in Conflicts and Write goes on as without seen.
// When seen says nothing changes or an Expect fails, the snapshot may be
// stale, so Write does not trust it and reads the node to decide.
//
// Without seen, Write reads node, computes s against it and writes only if
// something changes, at the read resourceVersion; a 409 Conflict means
// someone wrote in between, and Write reads again, up to
// MaxConflictRetries times in all. With dryRun, the same write is sent as a
// server-side dry run: validation and admission run, nothing is stored.
// before, when not nil, is called before every write is sent.
//
// Write does not validate s against protected prefixes: callers validate
// a batch once, up front; the API server remains the judge of syntax and
// answers 422 (Permanent) for what it refuses.
func (p *Patcher) Write(ctx context.Context, node string, s change.Set, seen *change.Observed, dryRun bool, before BeforeWrite) (Outcome, error) {
	var out Outcome
	if seen != nil && seen.ResourceVersion != "" {
		_, taints, r := s.Apply(seen.Labels, seen.Taints)
		if !r.Skipped && r.Changed {
			done, err := p.send(ctx, node, r, taints, seen.ResourceVersion, dryRun, before, &out)
			if done || err != nil {
				return out, err
			}
		}
	}
	nodes := p.Client.CoreV1().Nodes()
	for {
		n, err := nodes.Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return out, fmt.Errorf("get node %q: %w", node, err)
		}
		_, taints, r := s.Apply(n.Labels, n.Spec.Taints)
		out.Result, out.ResourceVersion = r, n.ResourceVersion
		if r.Skipped || !r.Changed {
			return out, nil
		}
		done, err := p.send(ctx, node, r, taints, n.ResourceVersion, dryRun, before, &out)
		if done || err != nil {
			return out, err
		}
		if out.Conflicts > p.maxRetries() {
			return out, fmt.Errorf("patch node %q: %w", node, errConflicts(node, out.Conflicts))
		}
	}
}

// errConflicts is the error of a node that kept moving under our writes.
func errConflicts(node string, n int) error {
	return apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, node, fmt.Errorf("still modified after %d conflicts", n))
}

// send writes r (taints: the node's whole new taint list) at rv. It
// reports whether it is done; it is not after a 409 (counted in
// out.Conflicts), when the caller reads the node again.
func (p *Patcher) send(ctx context.Context, node string, r change.Result, taints []corev1.Taint, rv string, dryRun bool, before BeforeWrite, out *Outcome) (bool, error) {
	if !taintsChange(r) {
		taints = nil // MergePatch: nil leaves spec.taints alone
	} else if taints == nil {
		taints = []corev1.Taint{} // not nil: write the (empty) list
	}
	body, err := MergePatch(r, taints, rv)
	if err != nil {
		return true, err
	}
	if before != nil {
		if err := before(ctx, Plan{Node: node, ResourceVersion: rv, Result: r, DryRun: dryRun}); err != nil {
			return true, err
		}
	}
	written, err := p.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, body, metav1.PatchOptions{
		FieldManager: p.fieldManager(),
		DryRun:       dryRunOpt(dryRun),
	})
	if apierrors.IsConflict(err) {
		out.Conflicts++
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("patch node %q at resourceVersion %s: %w", node, rv, err)
	}
	out.Result, out.ResourceVersion = r, written.ResourceVersion
	return true, nil
}

// ResourceVersion reads node's current resourceVersion: what the per-node
// path compares with a recorded intent to learn whether that write can
// have landed.
func (p *Patcher) ResourceVersion(ctx context.Context, node string) (string, error) {
	n, err := p.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get node %q: %w", node, err)
	}
	return n.ResourceVersion, nil
}

// taintsChange reports whether r changes any taint.
func taintsChange(r change.Result) bool {
	for _, c := range r.Changes {
		if k, ok := change.ParseKey(c.Key); ok && k.Kind == change.KindTaint && c.Changed() {
			return true
		}
	}
	return false
}

// mergePatch is the merge patch body; a struct (not a map) so that the
// bytes on the wire are stable.
type mergePatch struct {
	Metadata mergePatchMeta  `json:"metadata"`
	Spec     *taintPatchSpec `json:"spec,omitempty"`
}

type mergePatchMeta struct {
	Labels          map[string]*string `json:"labels,omitempty"`
	ResourceVersion string             `json:"resourceVersion,omitempty"`
}

type taintPatchSpec struct {
	// Taints is null for "no taints": a merge patch null removes the field,
	// which is exactly how the API server stores a node without taints (an
	// empty list ends the same way; null says it without relying on that).
	Taints []corev1.Taint `json:"taints"`
}

// MergePatch returns the JSON merge patch that makes r's changes: the label
// keys whose value changes (null removes); when taints is not nil, the whole
// new taint list (a merge patch replaces lists, so only with rv is that safe
// against another writer's taint; an empty list is sent as null, which
// leaves the node with no taints); and rv as a resourceVersion precondition
// when it is not empty.
func MergePatch(r change.Result, taints []corev1.Taint, rv string) ([]byte, error) {
	body := mergePatch{Metadata: mergePatchMeta{ResourceVersion: rv}}
	for _, c := range r.Changes {
		k, ok := change.ParseKey(c.Key)
		if ok && k.Kind == change.KindLabel && c.Changed() {
			if body.Metadata.Labels == nil {
				body.Metadata.Labels = map[string]*string{}
			}
			body.Metadata.Labels[k.Name] = c.After
		}
	}
	if taints != nil {
		body.Spec = &taintPatchSpec{}
		if len(taints) > 0 {
			body.Spec.Taints = taints
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode merge patch: %w", err)
	}
	return b, nil
}

func dryRunOpt(dryRun bool) []string {
	if dryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}
