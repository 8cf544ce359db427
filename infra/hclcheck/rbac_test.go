package hclcheck_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/infra/hclcheck"
)

const rbacTF = `
locals {
  kube_identity = {
    impersonator = { secret = var.a, role = "nb-impersonator", verbs = ["get", "list", "patch"] }
    viewer       = { secret = var.b, role = "nb-viewer", verbs = ["list"] }
  }
}
`

const rbacYAML = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: nb-impersonator}
rules:
  - apiGroups: ["authentication.k8s.io"]
    resources: ["users", "groups"]
    verbs: ["impersonate:user-info"]
  - apiGroups: [""]
    resources: ["nodes"]
    verbs: ["impersonate-on:user-info:get", "impersonate-on:user-info:list", "impersonate-on:user-info:patch"]
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["impersonate-on:user-info:list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: nb-viewer}
rules:
  - apiGroups: [""]
    resources: ["nodes"]
    verbs: [impersonate-on:user-info:list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: nb-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nb-viewer}
`

func TestClusterRoles(t *testing.T) {
	t.Parallel()
	got, err := hclcheck.ClusterRoles(map[string][]byte{"r.yaml": []byte(strings.Replace(rbacYAML, `verbs: [impersonate-on:user-info:list]`, `verbs: [impersonate-on:user-info:list, watch]`, 1))})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]hclcheck.ClusterRole{
		"nb-impersonator": {Impersonated: []string{"get", "list", "patch"}},
		"nb-viewer":       {Own: []string{"watch"}, Impersonated: []string{"list"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ClusterRoles() (-want +got):\n%s", diff)
	}
}

func TestCheckClusterRoles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tf, yaml [2]string // replacements in rbacTF and rbacYAML
		want     []string  // substrings, one per problem
	}{
		{name: "consistent"},
		{
			name: "identity lists a verb the role lacks",
			tf:   [2]string{`verbs = ["list"]`, `verbs = ["list", "get"]`},
			want: []string{"ClusterRole nb-viewer lets local.kube_identity.viewer impersonate for node verbs [list], but local.kube_identity.viewer.verbs is [get, list]"},
		},
		{
			name: "role grants more than the identity lists",
			yaml: [2]string{`"impersonate-on:user-info:patch"]`, `"impersonate-on:user-info:patch", "impersonate-on:user-info:update"]`},
			want: []string{"ClusterRole nb-impersonator lets local.kube_identity.impersonator impersonate for node verbs [get, list, patch, update]"},
		},
		{
			name: "role holds node rights of its own",
			yaml: [2]string{`verbs: [impersonate-on:user-info:list]`, `verbs: [impersonate-on:user-info:list, list]`},
			want: []string{"ClusterRole nb-viewer (local.kube_identity.viewer) grants list on nodes itself"},
		},
		{
			name: "unknown role",
			tf:   [2]string{`role = "nb-viewer"`, `role = "nb-reader"`},
			want: []string{"local.kube_identity.viewer: no ClusterRole nb-reader"},
		},
		{
			name: "no role",
			tf:   [2]string{`role = "nb-viewer", `, ``},
			want: []string{"local.kube_identity.viewer has no literal role"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tf, y := rbacTF, rbacYAML
			if tt.tf[0] != "" {
				tf = mustReplace(t, tf, tt.tf)
			}
			if tt.yaml[0] != "" {
				y = mustReplace(t, y, tt.yaml)
			}
			m, err := hclcheck.Parse(map[string][]byte{"f.tf": []byte(tf)})
			if err != nil {
				t.Fatal(err)
			}
			roles, err := hclcheck.ClusterRoles(map[string][]byte{"r.yaml": []byte(y)})
			if err != nil {
				t.Fatal(err)
			}
			got := messages(m.CheckClusterRoles("kube_identity", roles))
			if len(got) != len(tt.want) {
				t.Fatalf("CheckClusterRoles() = %q, want %d problems %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func mustReplace(t *testing.T, s string, r [2]string) string {
	t.Helper()
	if !strings.Contains(s, r[0]) {
		t.Fatalf("fixture lacks %q", r[0])
	}
	return strings.Replace(s, r[0], r[1], 1)
}
