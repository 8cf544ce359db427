// Package change is the meaning of a label/taint change to a Kubernetes node:
// kubectl syntax in and out, validation with apimachinery's rules, and
// applying a change to a node's labels and taints in memory with the
// before/after value of every touched key. It does no I/O; shared/nodepatch
// sends the result to an API server.
package change

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodebatch/nodebatch/shared/model"
)

// Expect is a precondition on a key's current value. Revert uses it to touch
// a key only where the node still holds what the original batch set.
type Expect struct {
	Present bool   `json:"present"`
	Value   string `json:"value,omitempty"`
}

// Label is one label change: set Key to Value, or remove Key.
type Label struct {
	Key    string  `json:"key"`
	Value  string  `json:"value,omitempty"`
	Remove bool    `json:"remove,omitempty"`
	Expect *Expect `json:"expect,omitempty"`
}

// Taint is one taint change: add or update the taint Key:Effect with Value,
// or remove it. Remove with an empty Effect removes every effect of Key, as
// `kubectl taint node n key-` does.
type Taint struct {
	Key    string             `json:"key"`
	Value  string             `json:"value,omitempty"`
	Effect corev1.TaintEffect `json:"effect,omitempty"`
	Remove bool               `json:"remove,omitempty"`
	Expect *Expect            `json:"expect,omitempty"`
}

// Set is every change a batch makes to each of its nodes.
type Set struct {
	Labels []Label `json:"labels,omitempty"`
	Taints []Taint `json:"taints,omitempty"`
}

// Action is the seed's name for the kind of change: batch_taint when the set
// touches any taint, batch_label otherwise.
func (s Set) Action() model.Action {
	if len(s.Taints) > 0 {
		return model.ActionTaint
	}
	return model.ActionLabel
}

// String renders l in `kubectl label` syntax: "key=value" or "key-".
func (l Label) String() string {
	if l.Remove {
		return l.Key + "-"
	}
	return l.Key + "=" + l.Value
}

// String renders t in `kubectl taint` syntax: "key=value:Effect",
// "key:Effect", "key:Effect-" or "key-".
func (t Taint) String() string {
	if t.Remove {
		if t.Effect == "" {
			return t.Key + "-"
		}
		return t.Key + ":" + string(t.Effect) + "-"
	}
	if t.Value == "" {
		return t.Key + ":" + string(t.Effect)
	}
	return t.Key + "=" + t.Value + ":" + string(t.Effect)
}

// String renders the set as kubectl arguments, labels then taints.
func (s Set) String() string {
	parts := make([]string, 0, len(s.Labels)+len(s.Taints))
	for _, l := range s.Labels {
		parts = append(parts, "label "+l.String())
	}
	for _, t := range s.Taints {
		parts = append(parts, "taint "+t.String())
	}
	return strings.Join(parts, ", ")
}
