package change

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	ns := corev1.TaintEffectNoSchedule
	tests := []struct {
		name string
		set  Set
		want []string // substrings, one per expected error, in order
	}{
		{name: "ok", set: Set{Labels: []Label{{Key: "team", Value: "ml"}, {Key: "old", Remove: true}}, Taints: []Taint{{Key: "gpu", Value: "true", Effect: ns}, {Key: "gpu", Effect: corev1.TaintEffectNoExecute, Remove: true}}}},
		{name: "empty", set: Set{}, want: []string{"changes: Required value"}},
		{name: "bad label key", set: Set{Labels: []Label{{Key: "ok", Value: "1"}, {Key: "bad key", Value: "x"}}}, want: []string{`changes.labels[1].key: Invalid value: "bad key"`}},
		{name: "bad label value", set: Set{Labels: []Label{{Key: "a", Value: "a b"}}}, want: []string{`changes.labels[0].value: Invalid value: "a b"`}},
		{name: "value on remove", set: Set{Labels: []Label{{Key: "a", Value: "x", Remove: true}}}, want: []string{`changes.labels[0].value: Invalid value: "x": must be empty when removing`}},
		{name: "set and remove", set: Set{Labels: []Label{{Key: "a", Value: "x"}, {Key: "a", Remove: true}}}, want: []string{`changes.labels[1].key: Duplicate value: "a"`}},
		{name: "label twice", set: Set{Labels: []Label{{Key: "a", Value: "x"}, {Key: "a", Value: "x"}}}, want: []string{`changes.labels[1].key: Duplicate value`}},
		{name: "protected", set: Set{Labels: []Label{{Key: "kubernetes.io/hostname", Value: "x"}, {Key: "node.kubernetes.io/instance-type", Value: "x"}, {Key: "k8s.io/x", Remove: true}, {Key: "node-role.kubernetes.io/worker"}, {Key: "notkubernetes.io/x", Value: "y"}}},
			want: []string{`changes.labels[0].key: Invalid value: "kubernetes.io/hostname": keys under "kubernetes.io/" are protected`, `changes.labels[1].key: Invalid value: "node.kubernetes.io/instance-type"`, `changes.labels[2].key: Invalid value: "k8s.io/x"`}},
		{name: "protected taint", set: Set{Taints: []Taint{{Key: "node.kubernetes.io/unschedulable", Effect: ns, Remove: true}}}, want: []string{`changes.taints[0].key: Invalid value: "node.kubernetes.io/unschedulable"`}},
		{name: "taint without effect", set: Set{Taints: []Taint{{Key: "gpu", Value: "x"}}}, want: []string{`changes.taints[0].effect: Required value`}},
		{name: "taint bad effect", set: Set{Taints: []Taint{{Key: "gpu", Effect: "Sometimes"}}}, want: []string{`changes.taints[0].effect: Unsupported value: "Sometimes"`}},
		{name: "taint bad value", set: Set{Taints: []Taint{{Key: "gpu", Value: "-x-", Effect: ns}}}, want: []string{`changes.taints[0].value: Invalid value: "-x-"`}},
		{name: "taint twice", set: Set{Taints: []Taint{{Key: "gpu", Value: "1", Effect: ns}, {Key: "gpu", Effect: ns, Remove: true}}}, want: []string{`changes.taints[1]: Duplicate value: "gpu:NoSchedule-"`}},
		{name: "remove all then add", set: Set{Taints: []Taint{{Key: "gpu", Remove: true}, {Key: "gpu", Value: "1", Effect: ns}}}, want: []string{`changes.taints[1]: Duplicate value`}},
		{name: "add then remove all", set: Set{Taints: []Taint{{Key: "gpu", Value: "1", Effect: ns}, {Key: "gpu", Remove: true}}}, want: []string{`changes.taints[1]: Duplicate value: "gpu-"`}},
		{name: "same key other effects", set: Set{Taints: []Taint{{Key: "gpu", Value: "1", Effect: ns}, {Key: "gpu", Value: "1", Effect: corev1.TaintEffectNoExecute}}}},
		{name: "expect value when absent", set: Set{Labels: []Label{{Key: "a", Remove: true, Expect: &Expect{Value: "x"}}}}, want: []string{`changes.labels[0].expect.value: Invalid value: "x"`}},
		{name: "taint expect without effect", set: Set{Taints: []Taint{{Key: "g", Remove: true, Expect: &Expect{Present: true}}}}, want: []string{`changes.taints[0].expect: Invalid value`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.set.Validate(field.NewPath("changes"), DefaultProtection())
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Validate(%v) = %q, want %d errors like %q", tt.set, got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("Validate(%v)[%d] = %q, want containing %q", tt.set, i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestProtection(t *testing.T) {
	t.Parallel()
	p := Protection{Prefixes: []string{"example.com"}, Allow: []string{"ok.example.com/"}}
	tests := map[string]bool{
		"example.com/a":      true,
		"x.example.com/a":    true,
		"ok.example.com/a":   false,
		"notexample.com/a":   false,
		"plain":              false,
		"a.ok.example.com/b": true,
	}
	got := map[string]bool{}
	for k := range tests {
		_, got[k] = p.protected(k)
	}
	if diff := cmp.Diff(tests, got); diff != "" {
		t.Errorf("protected mismatch (-want +got):\n%s", diff)
	}
}

func TestProtectionWith(t *testing.T) {
	t.Parallel()
	base := DefaultProtection()
	got := base.With("example.com", "node-role.kubernetes.io/")
	want := Protection{
		Prefixes: []string{"kubernetes.io/", "k8s.io/", "example.com", "node-role.kubernetes.io/"},
		Allow:    []string{},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("With (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(DefaultProtection(), base); diff != "" {
		t.Errorf("With changed its receiver (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(DefaultProtection(), base.With()); diff != "" {
		t.Errorf("With() (-want +got):\n%s", diff)
	}
}
