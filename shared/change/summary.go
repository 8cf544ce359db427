package change

import (
	"maps"
	"slices"

	"github.com/nodebatch/nodebatch/shared/model"
)

// MaxSummarized bounds each list of a Summary built by Summarize, so a
// revert batch's document stays small however many distinct changes its
// nodes get.
const MaxSummarized = 100

// Summary is a batch's change rendered in kubectl syntax, one entry per
// label or taint change ("team=ml", "old-", "gpu=true:NoSchedule"): what
// the batch document keeps under "changes" and what the API shows. It is
// a rendering of the change model (Set), not a second model: only Set.Summary
// and Summarize build it, and nothing reads a Set back from it.
type Summary struct {
	Labels []string `firestore:"labels" json:"labels,omitempty"`
	Taints []string `firestore:"taints" json:"taints,omitempty"`
}

// Summary renders s, in the set's order (labels, then taints; nil when
// there are none).
func (s Set) Summary() Summary {
	var c Summary
	for _, l := range s.Labels {
		c.Labels = append(c.Labels, l.String())
	}
	for _, t := range s.Taints {
		c.Taints = append(c.Taints, t.String())
	}
	return c
}

// Summarize renders sets that differ per node (a revert batch's): the
// distinct label and taint changes, each list sorted and cut to
// MaxSummarized, and the action, batch_taint when any set touches a taint.
func Summarize(sets map[string]Set) (model.Action, Summary) {
	action := model.ActionLabel
	labels, taints := map[string]bool{}, map[string]bool{}
	for _, s := range sets {
		if s.Action() == model.ActionTaint {
			action = model.ActionTaint
		}
		for _, l := range s.Labels {
			labels[l.String()] = true
		}
		for _, t := range s.Taints {
			taints[t.String()] = true
		}
	}
	return action, Summary{Labels: firstSorted(labels), Taints: firstSorted(taints)}
}

// firstSorted is the first MaxSummarized keys of m in order.
func firstSorted(m map[string]bool) []string {
	s := slices.Sorted(maps.Keys(m))
	return s[:min(len(s), MaxSummarized)]
}
