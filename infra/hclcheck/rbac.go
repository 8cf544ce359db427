package hclcheck

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/zclconf/go-cty/cty"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// impersonateOn is the prefix of a constrained-impersonation verb that
// allows VERB while impersonating a user's user-info.
const impersonateOn = "impersonate-on:user-info:"

// ClusterRole is what a ClusterRole of the manifests allows on nodes.
type ClusterRole struct {
	Own          []string // node verbs the role's holder may use itself
	Impersonated []string // node verbs it may use while impersonating (impersonate-on:user-info:VERB)
}

// ClusterRoles reads the ClusterRoles of YAML manifests (several documents
// per file, separated by "---") and returns, by name, what each allows on
// core nodes. Other kinds are skipped.
func ClusterRoles(files map[string][]byte) (map[string]ClusterRole, error) {
	out := map[string]ClusterRole{}
	for name, b := range files {
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var r rbacv1.ClusterRole
			if err := yaml.Unmarshal(doc, &r); err != nil {
				return nil, fmt.Errorf("parse %s document %d: %w", name, i+1, err)
			}
			if r.Kind != "ClusterRole" {
				continue
			}
			if _, dup := out[r.Name]; dup {
				return nil, fmt.Errorf("%s: ClusterRole %s defined twice", name, r.Name)
			}
			var cr ClusterRole
			for _, rule := range r.Rules {
				if !slices.Contains(rule.APIGroups, "") || !slices.Contains(rule.Resources, "nodes") {
					continue
				}
				for _, v := range rule.Verbs {
					if s, ok := strings.CutPrefix(v, impersonateOn); ok {
						cr.Impersonated = append(cr.Impersonated, s)
					} else {
						cr.Own = append(cr.Own, v)
					}
				}
			}
			out[r.Name] = cr
		}
	}
	return out, nil
}

// CheckClusterRoles checks that every cluster identity of the identities
// local names (attribute role) a ClusterRole of roles that holds no node
// right of its own and may use, while impersonating, exactly the node
// verbs the identity lists: what the workload check assumes is what the
// cluster grants.
func (m *Module) CheckClusterRoles(identities string, roles map[string]ClusterRole) []Problem {
	v, err := m.evalLocal(identities, nil)
	if err != nil || !knownObject(v) {
		return []Problem{{Msg: fmt.Sprintf("local.%s: cannot evaluate the cluster identities: %v", identities, err)}}
	}
	var ps []Problem
	for _, id := range sortedKeysOf(v.AsValueMap()) {
		obj := v.GetAttr(id)
		verbs, ok := literalStrings(obj, "verbs")
		if !ok {
			ps = append(ps, Problem{Msg: fmt.Sprintf("local.%s.%s has no literal verbs list", identities, id)})
			continue
		}
		if !obj.Type().HasAttribute("role") || !obj.GetAttr("role").IsKnown() || obj.GetAttr("role").IsNull() || obj.GetAttr("role").Type() != cty.String {
			ps = append(ps, Problem{Msg: fmt.Sprintf("local.%s.%s has no literal role (the ClusterRole of infra/k8s/ it is bound to)", identities, id)})
			continue
		}
		name := obj.GetAttr("role").AsString()
		r, ok := roles[name]
		if !ok {
			ps = append(ps, Problem{Msg: fmt.Sprintf("local.%s.%s: no ClusterRole %s in the manifests", identities, id, name)})
			continue
		}
		if len(r.Own) > 0 {
			ps = append(ps, Problem{Msg: fmt.Sprintf("ClusterRole %s (local.%s.%s) grants %s on nodes itself; nodebatch may only act as the requester", name, identities, id, strings.Join(r.Own, ", "))})
		}
		want, got := slices.Sorted(slices.Values(verbs)), slices.Sorted(slices.Values(r.Impersonated))
		if !slices.Equal(want, got) {
			ps = append(ps, Problem{Msg: fmt.Sprintf("ClusterRole %s lets local.%s.%s impersonate for node verbs [%s], but local.%s.%s.verbs is [%s]", name, identities, id, strings.Join(got, ", "), identities, id, strings.Join(want, ", "))})
		}
	}
	return ps
}

func sortedKeysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
