package change

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/shared/model"
)

func ptr(s string) *string { return &s }

var now = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

func TestApply(t *testing.T) {
	t.Parallel()
	ns, ne, pns := corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute, corev1.TaintEffectPreferNoSchedule
	old := metav1.NewTime(now.Add(-time.Hour))
	stamp := metav1.NewTime(now)
	baseLabels := map[string]string{"team": "web", "zone": "a"}
	baseTaints := []corev1.Taint{
		{Key: "node.kubernetes.io/not-ready", Effect: ns},
		{Key: "gpu", Value: "true", Effect: ns},
		{Key: "gpu", Value: "true", Effect: pns},
		{Key: "drain", Value: "x", Effect: ne, TimeAdded: &old},
	}
	tests := []struct {
		name       string
		set        Set
		wantLabels map[string]string
		wantTaints []corev1.Taint
		want       Result
	}{
		{
			name:       "label add, overwrite, remove, remove absent",
			set:        Set{Labels: []Label{{Key: "pool", Value: "gpu"}, {Key: "team", Value: "ml"}, {Key: "zone", Remove: true}, {Key: "gone", Remove: true}}},
			wantLabels: map[string]string{"team": "ml", "pool": "gpu"},
			wantTaints: baseTaints,
			want: Result{Changed: true, Changes: []KeyChange{
				{Key: "label:gone"},
				{Key: "label:pool", After: ptr("gpu")},
				{Key: "label:team", Before: ptr("web"), After: ptr("ml")},
				{Key: "label:zone", Before: ptr("a")},
			}},
		},
		{
			name:       "label already in target state",
			set:        Set{Labels: []Label{{Key: "team", Value: "web"}, {Key: "gone", Remove: true}}},
			wantLabels: baseLabels,
			wantTaints: baseTaints,
			want:       Result{Changes: []KeyChange{{Key: "label:gone"}, {Key: "label:team", Before: ptr("web"), After: ptr("web")}}},
		},
		{
			name:       "empty value is a value",
			set:        Set{Labels: []Label{{Key: "team"}}},
			wantLabels: map[string]string{"team": "", "zone": "a"},
			wantTaints: baseTaints,
			want:       Result{Changed: true, Changes: []KeyChange{{Key: "label:team", Before: ptr("web"), After: ptr("")}}},
		},
		{
			name:       "taint update in place keeps order; new appended",
			set:        Set{Taints: []Taint{{Key: "gpu", Value: "false", Effect: ns}, {Key: "spot", Effect: ns}}},
			wantLabels: baseLabels,
			wantTaints: []corev1.Taint{baseTaints[0], {Key: "gpu", Value: "false", Effect: ns}, baseTaints[2], baseTaints[3], {Key: "spot", Effect: ns}},
			want: Result{Changed: true, Changes: []KeyChange{
				{Key: "taint:gpu:NoSchedule", Before: ptr("true"), After: ptr("false")},
				{Key: "taint:spot:NoSchedule", After: ptr("")},
			}},
		},
		{
			name:       "taint same value unchanged keeps TimeAdded",
			set:        Set{Taints: []Taint{{Key: "drain", Value: "x", Effect: ne}}},
			wantLabels: baseLabels,
			wantTaints: baseTaints,
			want:       Result{Changes: []KeyChange{{Key: "taint:drain:NoExecute", Before: ptr("x"), After: ptr("x")}}},
		},
		{
			name:       "NoExecute gets TimeAdded on add and on update",
			set:        Set{Taints: []Taint{{Key: "drain", Value: "y", Effect: ne}, {Key: "evict", Effect: ne}}},
			wantLabels: baseLabels,
			wantTaints: []corev1.Taint{baseTaints[0], baseTaints[1], baseTaints[2], {Key: "drain", Value: "y", Effect: ne, TimeAdded: &stamp}, {Key: "evict", Effect: ne, TimeAdded: &stamp}},
			want: Result{Changed: true, Changes: []KeyChange{
				{Key: "taint:drain:NoExecute", Before: ptr("x"), After: ptr("y")},
				{Key: "taint:evict:NoExecute", After: ptr("")},
			}},
		},
		{
			name:       "remove one effect leaves the other",
			set:        Set{Taints: []Taint{{Key: "gpu", Effect: pns, Remove: true}}},
			wantLabels: baseLabels,
			wantTaints: []corev1.Taint{baseTaints[0], baseTaints[1], baseTaints[3]},
			want:       Result{Changed: true, Changes: []KeyChange{{Key: "taint:gpu:PreferNoSchedule", Before: ptr("true")}}},
		},
		{
			name:       "remove all effects of a key",
			set:        Set{Taints: []Taint{{Key: "gpu", Remove: true}}},
			wantLabels: baseLabels,
			wantTaints: []corev1.Taint{baseTaints[0], baseTaints[3]},
			want: Result{Changed: true, Changes: []KeyChange{
				{Key: "taint:gpu:NoSchedule", Before: ptr("true")},
				{Key: "taint:gpu:PreferNoSchedule", Before: ptr("true")},
			}},
		},
		{
			name:       "remove absent taints",
			set:        Set{Taints: []Taint{{Key: "none", Remove: true}, {Key: "gpu", Effect: ne, Remove: true}}},
			wantLabels: baseLabels,
			wantTaints: baseTaints,
			want:       Result{Changes: []KeyChange{{Key: "taint:gpu:NoExecute"}, {Key: "taint:none"}}},
		},
		{
			name:       "expect holds",
			set:        Set{Labels: []Label{{Key: "team", Value: "ml", Expect: &Expect{Present: true, Value: "web"}}, {Key: "new", Remove: true, Expect: &Expect{}}}, Taints: []Taint{{Key: "gpu", Effect: ns, Remove: true, Expect: &Expect{Present: true, Value: "true"}}}},
			wantLabels: map[string]string{"team": "ml", "zone": "a"},
			wantTaints: []corev1.Taint{baseTaints[0], baseTaints[2], baseTaints[3]},
			want: Result{Changed: true, Changes: []KeyChange{
				{Key: "label:new"},
				{Key: "label:team", Before: ptr("web"), After: ptr("ml")},
				{Key: "taint:gpu:NoSchedule", Before: ptr("true")},
			}},
		},
		{
			name:       "label expect fails: nothing applied",
			set:        Set{Labels: []Label{{Key: "zone", Remove: true}, {Key: "team", Remove: true, Expect: &Expect{Present: true, Value: "ml"}}}, Taints: []Taint{{Key: "gpu", Remove: true}}},
			wantLabels: baseLabels,
			wantTaints: baseTaints,
			want: Result{Skipped: true, SkipReason: `label "team": expected "ml", found "web"`, Changes: []KeyChange{
				{Key: "label:team", Before: ptr("web"), After: ptr("web")},
				{Key: "label:zone", Before: ptr("a"), After: ptr("a")},
				{Key: "taint:gpu:NoSchedule", Before: ptr("true"), After: ptr("true")},
				{Key: "taint:gpu:PreferNoSchedule", Before: ptr("true"), After: ptr("true")},
			}},
		},
		{
			name:       "taint expect absent fails",
			set:        Set{Taints: []Taint{{Key: "gpu", Value: "true", Effect: ns, Expect: &Expect{}}}},
			wantLabels: baseLabels,
			wantTaints: baseTaints,
			want: Result{Skipped: true, SkipReason: `taint "gpu:NoSchedule": expected absent, found "true"`, Changes: []KeyChange{
				{Key: "taint:gpu:NoSchedule", Before: ptr("true"), After: ptr("true")},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := map[string]string{"team": "web", "zone": "a"}
			taints := make([]corev1.Taint, len(baseTaints))
			for i := range baseTaints {
				taints[i] = *baseTaints[i].DeepCopy()
			}
			gotLabels, gotTaints, got := tt.set.ApplyAt(now, labels, taints)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Apply result mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLabels, gotLabels); diff != "" {
				t.Errorf("Apply labels mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantTaints, gotTaints); diff != "" {
				t.Errorf("Apply taints mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(baseLabels, labels); diff != "" {
				t.Errorf("Apply mutated its labels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(baseTaints, taints); diff != "" {
				t.Errorf("Apply mutated its taints (-want +got):\n%s", diff)
			}
			// Idempotent: applying again to the result changes nothing.
			if !got.Skipped {
				l2, t2, r2 := tt.set.ApplyAt(now.Add(time.Minute), gotLabels, gotTaints)
				if r2.Changed {
					t.Errorf("second Apply reported Changed: %+v", r2)
				}
				if diff := cmp.Diff(gotLabels, l2); diff != "" {
					t.Errorf("second Apply changed labels (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(gotTaints, t2); diff != "" {
					t.Errorf("second Apply changed taints (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestApplyNilInputs(t *testing.T) {
	t.Parallel()
	l, ts, r := Set{Labels: []Label{{Key: "a", Value: "1"}}, Taints: []Taint{{Key: "g", Effect: corev1.TaintEffectNoSchedule}}}.ApplyAt(now, nil, nil)
	if diff := cmp.Diff(map[string]string{"a": "1"}, l); diff != "" {
		t.Errorf("labels mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.Taint{{Key: "g", Effect: corev1.TaintEffectNoSchedule}}, ts); diff != "" {
		t.Errorf("taints mismatch (-want +got):\n%s", diff)
	}
	if !r.Changed {
		t.Errorf("Changed = false, want true")
	}
}

func TestAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		set  Set
		want model.Action
	}{
		{Set{Labels: []Label{{Key: "a"}}}, model.ActionLabel},
		{Set{Taints: []Taint{{Key: "a", Remove: true}}}, model.ActionTaint},
		{Set{Labels: []Label{{Key: "a"}}, Taints: []Taint{{Key: "a", Remove: true}}}, model.ActionTaint},
	}
	for _, tt := range tests {
		if got := tt.set.Action(); got != tt.want {
			t.Errorf("%v.Action() = %q, want %q", tt.set, got, tt.want)
		}
	}
}
