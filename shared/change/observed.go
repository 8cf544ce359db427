package change

import corev1 "k8s.io/api/core/v1"

// Observed is what the batch function saw of one node when it listed the
// nodes at submit time: the node's resourceVersion and the current values of
// exactly what a Set touches. With it the patch path can compute the write
// without reading the node first, and send it with ResourceVersion as a
// precondition: one API call per node instead of two. A 409 means the node
// moved since the listing, and the path falls back to read-modify-write.
type Observed struct {
	ResourceVersion string `json:"resource_version"`
	// Labels holds the touched label keys the node had (a key absent here was
	// absent on the node).
	Labels map[string]string `json:"labels,omitempty"`
	// Taints is the node's whole taint list, when the Set touches taints
	// (a taint update rewrites the list).
	Taints []corev1.Taint `json:"taints,omitempty"`
}

// Observe returns what a patch of s needs to know of a node with this
// resourceVersion, labels and taints: the current values of the label keys
// s touches (no other label, so that an event stays small) and, only when s
// touches taints, a copy of the whole taint list. Nothing of the inputs is
// shared with the result.
func (s Set) Observe(resourceVersion string, labels map[string]string, taints []corev1.Taint) *Observed {
	o := &Observed{ResourceVersion: resourceVersion}
	for _, l := range s.Labels {
		if v, ok := labels[l.Key]; ok {
			if o.Labels == nil {
				o.Labels = make(map[string]string, len(s.Labels))
			}
			o.Labels[l.Key] = v
		}
	}
	if len(s.Taints) > 0 && len(taints) > 0 {
		o.Taints = make([]corev1.Taint, len(taints))
		for i := range taints {
			taints[i].DeepCopyInto(&o.Taints[i])
		}
	}
	return o
}
