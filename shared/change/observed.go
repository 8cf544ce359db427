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
