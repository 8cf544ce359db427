// Package k8s holds the cluster-side manifests of nodebatch (RBAC and
// admission policies) as plain YAML, for `kubectl apply`; this Go file only
// embeds the very same files so the local stack applies them unchanged
// (docs/deploy.md, "Cluster RBAC").
package k8s

import "embed"

// Files are the manifests: the impersonator roles and bindings (the
// relay's narrower viewer in impersonator-viewer.yaml), the node
// roles for people, and under local/ the local stack's users and policy.
//
//go:embed *.yaml local/*.yaml
var Files embed.FS

// Identity is the placeholder of impersonator-binding.yaml that names
// nodebatch's own Kubernetes user.
const Identity = "${NODEBATCH_IDENTITY}"

// Local lists, in order, what the local stack applies: the constrained
// impersonator (kube-apiserver v1.37 has constrained impersonation on), its
// binding, the node roles, and the local users and policy.
var Local = []string{"impersonator.yaml", "impersonator-binding.yaml", "node-roles.yaml", "local/users.yaml", "local/team-labels-policy.yaml"}
