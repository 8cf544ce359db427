package batch

import (
	"context"
	"encoding/base64"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/request"
)

// nodeState is what a preview needs of a node.
type nodeState struct {
	labels map[string]string
	taints []corev1.Taint
}

// keepStates returns a map and a resolve callback that fills it.
func keepStates() (map[string]nodeState, func(*corev1.Node)) {
	m := map[string]nodeState{}
	return m, func(n *corev1.Node) { m[n.Name] = nodeState{labels: n.Labels, taints: n.Spec.Taints} }
}

func (h *Handler) preview(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := principal(r)
	if err != nil {
		return err
	}
	after, size, err := pageParams(r)
	if err != nil {
		return err
	}
	var body request.Batch
	if err := h.decode(w, r, &body); err != nil {
		return err
	}
	spec, e := body.Validate(h.limits(), h.Protection)
	if e != nil {
		return e
	}
	if err := h.allowPreview(p); err != nil {
		return err
	}
	states, seen := keepStates()
	kube, e := h.authorizeList(ctx, p)
	if e != nil {
		return e
	}
	names, err := h.resolve(ctx, kube, spec, seen)
	if err != nil {
		return err
	}
	if e := h.authorizeWrite(ctx, kube, p, names); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, h.computePreview(ctx, kube, h.previewPatcher(p), spec.Set, names, states, after, size))
	return nil
}

// computePreview applies set to every named node in memory, counts, and
// lists the page of nodes after the node named after (size at most). pt
// (nil: none) sends the server-side dry run.
func (h *Handler) computePreview(ctx context.Context, kube kubernetes.Interface, pt runner.Patcher, set change.Set, names []string, states map[string]nodeState, after string, size int) Preview {
	pv := Preview{Total: len(names), Nodes: []PreviewNode{}}
	var sample []string
	n := h.PreviewSample
	if n == 0 {
		n = 3
	}
	for _, name := range names {
		st := states[name]
		now := h.now()
		_, _, res := set.ApplyAt(now, st.labels, st.taints)
		switch {
		case res.Skipped:
			pv.Skipped++
		case res.Changed:
			pv.WouldChange++
			if len(sample) < n {
				sample = append(sample, name)
			}
		default:
			pv.AlreadyInTarget++
		}
		if name <= after {
			continue
		}
		if len(pv.Nodes) == size {
			if pv.NextPageToken == "" {
				pv.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(pv.Nodes[len(pv.Nodes)-1].Node))
			}
			continue
		}
		pv.Nodes = append(pv.Nodes, PreviewNode{Node: name, Changed: res.Changed, SkipReason: res.SkipReason, Changes: res.Changes})
	}
	pv.Impact, pv.ImpactError = h.impact(ctx, kube, set, names, states)
	if pt != nil {
		for _, name := range sample {
			c := DryRunCheck{Node: name, OK: true}
			out, err := pt.Apply(ctx, name, set, nil, true)
			if err != nil {
				c.OK, c.Error = false, err.Error()
			} else {
				c.Changed, c.Changes = out.Changed, out.Changes
			}
			pv.ServerDryRun = append(pv.ServerDryRun, c)
		}
	}
	return pv
}
