package change

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// FuzzParseLabel: no panic; whatever parses renders back to a spec that
// parses to the same Label.
func FuzzParseLabel(f *testing.F) {
	for _, s := range []string{"team=ml", "team-", "team=", "a=b=c", "example.com/x=y", "-", "=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLabel(s)
		if err != nil {
			return
		}
		back, err := ParseLabel(l.String())
		if err != nil {
			t.Fatalf("ParseLabel(%q) = %+v, but its String %q does not parse: %v", s, l, l.String(), err)
		}
		if diff := cmp.Diff(l, back); diff != "" {
			t.Errorf("round trip of %q mismatch (-want +got):\n%s", s, diff)
		}
		if errs := (Set{Labels: []Label{l}}).Validate(field.NewPath("c"), Protection{}); len(errs) > 0 {
			t.Errorf("ParseLabel(%q) = %+v, which Validate refuses: %v", s, l, errs)
		}
	})
}

// FuzzParseTaint: no panic; round trip through String; parsed taints
// validate.
func FuzzParseTaint(f *testing.F) {
	for _, s := range []string{"gpu=true:NoSchedule", "gpu:NoSchedule", "gpu:NoSchedule-", "gpu-", "gpu=x:NoExecute-", "a:b:c", "a=b=c:NoSchedule", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tt, err := ParseTaint(s)
		if err != nil {
			return
		}
		back, err := ParseTaint(tt.String())
		if err != nil {
			t.Fatalf("ParseTaint(%q) = %+v, but its String %q does not parse: %v", s, tt, tt.String(), err)
		}
		if diff := cmp.Diff(tt, back); diff != "" {
			t.Errorf("round trip of %q mismatch (-want +got):\n%s", s, diff)
		}
		if errs := (Set{Taints: []Taint{tt}}).Validate(field.NewPath("c"), Protection{}); len(errs) > 0 {
			t.Errorf("ParseTaint(%q) = %+v, which Validate refuses: %v", s, tt, errs)
		}
	})
}

// FuzzSetValidateApply decodes a Set from JSON and applies it to a node:
// no panic on any set; inputs never mutated; for a valid set, the result has
// unique taints, sorted changes, and a second Apply changes nothing.
func FuzzSetValidateApply(f *testing.F) {
	for _, s := range []string{
		`{"labels":[{"key":"team","value":"ml"},{"key":"zone","remove":true}]}`,
		`{"taints":[{"key":"gpu","value":"1","effect":"NoSchedule"},{"key":"drain","remove":true}]}`,
		`{"labels":[{"key":"team","remove":true,"expect":{"present":true,"value":"web"}}],"taints":[{"key":"gpu","effect":"PreferNoSchedule","remove":true}]}`,
		`{"labels":[{"key":"a","value":"1"},{"key":"a","remove":true}],"taints":[{"key":"g","effect":"NoExecute"},{"key":"g","effect":"NoExecute"}]}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Set
		if err := json.Unmarshal(data, &s); err != nil {
			return
		}
		valid := len(s.Validate(field.NewPath("changes"), DefaultProtection())) == 0
		labels := map[string]string{"team": "web", "zone": "a"}
		taints := []corev1.Taint{{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}, {Key: "drain", Effect: corev1.TaintEffectNoExecute}}
		wantLabels := map[string]string{"team": "web", "zone": "a"}
		wantTaints := slices.Clone(taints)
		now := time.Unix(1e9, 0)
		nl, nt, r := s.ApplyAt(now, labels, taints)
		if !cmp.Equal(wantLabels, labels) || !cmp.Equal(wantTaints, taints) {
			t.Fatalf("Apply mutated its inputs")
		}
		if !slices.IsSortedFunc(r.Changes, func(a, b KeyChange) int { return strings.Compare(a.Key, b.Key) }) {
			t.Errorf("Changes not sorted: %v", r.Changes)
		}
		if !valid {
			return
		}
		seen := map[string]bool{}
		for _, x := range nt {
			k := TaintKey(x.Key, x.Effect).String()
			if seen[k] {
				t.Errorf("duplicate taint %s in result %v", k, nt)
			}
			seen[k] = true
		}
		if r.Skipped {
			return
		}
		l2, t2, r2 := s.ApplyAt(now.Add(time.Hour), nl, nt)
		if r2.Changed || !cmp.Equal(nl, l2) || !cmp.Equal(nt, t2) {
			t.Errorf("second Apply of %s changed the node: %+v", data, r2)
		}
	})
}
