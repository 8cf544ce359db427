// Package nodepatch applies one node's change.Set through the Kubernetes
// API. When the caller knows the node as it was listed (change.Observed),
// the change is one JSON merge patch carrying that resourceVersion as a
// precondition: one API call per node, and a 409 when the node moved since.
// Otherwise, and after a 409, it reads first: labels as a JSON merge patch of
// only the keys that change; taints (which the API stores as one list, so a
// patch replaces it) as a read-modify-update with the read resourceVersion,
// retried with a fresh read on conflict so that a taint another writer added
// meanwhile survives. It also sorts API errors into permanent and transient
// ones.
package nodepatch

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Apply makes s true on node, writing only if something changes.
//
// With seen (a snapshot with a resourceVersion, see change.Observed), Apply
// first computes s against seen and, if that changes something, sends ONE
// merge patch with seen.ResourceVersion as a precondition (see MergePatch):
// no read. The before-values come from seen, which is exact because the
// write only succeeds at that resourceVersion. A 409 (the node moved since
// the snapshot) is counted in Conflicts and Apply goes on as without seen.
// When seen says nothing changes or an Expect fails, the snapshot may be
// stale, so Apply does not trust it and reads the node to decide.
//
// Without seen, Apply reads node, computes s against it and writes only if
// something changes. A set with labels only is sent as a merge patch of the
// changed label keys (null removes), carrying a resourceVersion
// precondition only when s has an Expect. A set with any taint is sent as an
// Update of the whole node with the read resourceVersion (its label changes
// ride along). Both retry a 409 Conflict with a fresh read up to
// MaxConflictRetries times in all. With dryRun, the same write is sent as a
// server-side dry run: validation and admission run, nothing is stored.
//
// Apply does not validate s against protected prefixes: callers validate
// a batch once, up front; the API server remains the judge of syntax and
// answers 422 (Permanent) for what it refuses.
func (p *Patcher) Apply(ctx context.Context, node string, s change.Set, seen *change.Observed, dryRun bool) (Outcome, error) {
	var out Outcome
	if seen != nil && seen.ResourceVersion != "" {
		done, err := p.applySeen(ctx, node, s, seen, dryRun, &out)
		if done || err != nil {
			return out, err
		}
	}
	nodes := p.Client.CoreV1().Nodes()
	for {
		n, err := nodes.Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return out, fmt.Errorf("get node %q: %w", node, err)
		}
		labels, taints, r := s.Apply(n.Labels, n.Spec.Taints)
		out.Result, out.ResourceVersion = r, n.ResourceVersion
		if r.Skipped || !r.Changed {
			return out, nil
		}
		var written *corev1.Node
		if len(s.Taints) == 0 {
			written, err = p.patchLabels(ctx, n, s, r, dryRun)
		} else {
			written, err = p.update(ctx, n, labels, taints, dryRun)
		}
		if apierrors.IsConflict(err) {
			out.Conflicts++
			if out.Conflicts <= p.maxRetries() {
				continue
			}
		}
		if err != nil {
			return out, err
		}
		out.ResourceVersion = written.ResourceVersion
		return out, nil
	}
}

// applySeen is the one-call path: the write computed from seen, sent with
// seen's resourceVersion as a precondition. It reports whether it is done;
// it is not when seen says there is nothing to write (or an Expect fails)
// or the API server answers 409, and then the caller reads the node.
func (p *Patcher) applySeen(ctx context.Context, node string, s change.Set, seen *change.Observed, dryRun bool, out *Outcome) (bool, error) {
	_, taints, r := s.Apply(seen.Labels, seen.Taints)
	if r.Skipped || !r.Changed {
		return false, nil
	}
	if !taintsChange(r) {
		taints = nil // MergePatch: nil leaves spec.taints alone
	} else if taints == nil {
		taints = []corev1.Taint{} // not nil: write the (empty) list
	}
	body, err := MergePatch(r, taints, seen.ResourceVersion)
	if err != nil {
		return true, err
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
		return true, fmt.Errorf("patch node %q at resourceVersion %s: %w", node, seen.ResourceVersion, err)
	}
	out.Result, out.ResourceVersion = r, written.ResourceVersion
	return true, nil
}

// taintsChange reports whether r changes any taint.
func taintsChange(r change.Result) bool {
	for _, c := range r.Changes {
		if strings.HasPrefix(c.Key, "taint:") && c.Changed() {
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
		key, ok := strings.CutPrefix(c.Key, "label:")
		if ok && c.Changed() {
			if body.Metadata.Labels == nil {
				body.Metadata.Labels = map[string]*string{}
			}
			body.Metadata.Labels[key] = c.After
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

func (p *Patcher) patchLabels(ctx context.Context, n *corev1.Node, s change.Set, r change.Result, dryRun bool) (*corev1.Node, error) {
	rv := ""
	if hasExpect(s) {
		rv = n.ResourceVersion
	}
	body, err := MergePatch(r, nil, rv)
	if err != nil {
		return nil, err
	}
	out, err := p.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, body, metav1.PatchOptions{
		FieldManager: p.fieldManager(),
		DryRun:       dryRunOpt(dryRun),
	})
	if err != nil {
		return nil, fmt.Errorf("patch labels of node %q: %w", n.Name, err)
	}
	return out, nil
}

func (p *Patcher) update(ctx context.Context, n *corev1.Node, labels map[string]string, taints []corev1.Taint, dryRun bool) (*corev1.Node, error) {
	n = n.DeepCopy()
	n.Labels = labels
	n.Spec.Taints = taints
	out, err := p.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{
		FieldManager: p.fieldManager(),
		DryRun:       dryRunOpt(dryRun),
	})
	if err != nil {
		return nil, fmt.Errorf("update node %q at resourceVersion %s: %w", n.Name, n.ResourceVersion, err)
	}
	return out, nil
}

func hasExpect(s change.Set) bool {
	for _, l := range s.Labels {
		if l.Expect != nil {
			return true
		}
	}
	for _, t := range s.Taints {
		if t.Expect != nil {
			return true
		}
	}
	return false
}

func dryRunOpt(dryRun bool) []string {
	if dryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}
