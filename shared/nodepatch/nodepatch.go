// Package nodepatch applies one node's change.Set through the Kubernetes
// API: labels as a JSON merge patch of only the keys that change; taints
// (which the API stores as one list, so a patch would replace it) as a
// read-modify-update with the read resourceVersion, retried with a fresh
// read on conflict so that a taint another writer added meanwhile survives.
// It also sorts API errors into permanent and transient ones.
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
// GET and a write).
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
	// Conflicts counts 409 answers; each one cost a fresh read and retry.
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

// Apply reads node, computes s against it and writes only if something
// changes. A set with labels only is sent as a merge patch of the changed
// label keys (null removes), carrying a resourceVersion precondition only
// when s has an Expect. A set with any taint is sent as an Update of the
// whole node with the read resourceVersion (its label changes ride along).
// Both retry a 409 Conflict with a fresh read up to MaxConflictRetries
// times. With dryRun, the same write is sent as a server-side dry run:
// validation and admission run, nothing is stored.
//
// Apply does not validate s against protected prefixes: callers validate
// a batch once, up front; the API server remains the judge of syntax and
// answers 422 (Permanent) for what it refuses.
func (p *Patcher) Apply(ctx context.Context, node string, s change.Set, seen *change.Observed, dryRun bool) (Outcome, error) {
	var out Outcome
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

// labelPatch is the merge patch body; a struct (not a map) so that the
// bytes on the wire are stable.
type labelPatch struct {
	Metadata labelPatchMeta `json:"metadata"`
}

type labelPatchMeta struct {
	Labels          map[string]*string `json:"labels"`
	ResourceVersion string             `json:"resourceVersion,omitempty"`
}

// LabelPatch returns the JSON merge patch that makes r's label changes:
// only keys whose value changes, null for removals, and rv as a
// resourceVersion precondition when rv is not empty.
func LabelPatch(r change.Result, rv string) ([]byte, error) {
	body := labelPatch{Metadata: labelPatchMeta{Labels: map[string]*string{}, ResourceVersion: rv}}
	for _, c := range r.Changes {
		key, ok := strings.CutPrefix(c.Key, "label:")
		if ok && c.Changed() {
			body.Metadata.Labels[key] = c.After
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode label patch: %w", err)
	}
	return b, nil
}

func (p *Patcher) patchLabels(ctx context.Context, n *corev1.Node, s change.Set, r change.Result, dryRun bool) (*corev1.Node, error) {
	rv := ""
	if hasExpect(s) {
		rv = n.ResourceVersion
	}
	body, err := LabelPatch(r, rv)
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
