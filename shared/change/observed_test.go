package change

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestObserve(t *testing.T) {
	t.Parallel()
	ns, ne := corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute
	old := metav1.NewTime(now.Add(-time.Hour))
	labels := map[string]string{"team": "web", "zone": "a", "empty": ""}
	taints := []corev1.Taint{
		{Key: "gpu", Value: "true", Effect: ns},
		{Key: "drain", Value: "x", Effect: ne, TimeAdded: &old},
	}
	tests := []struct {
		name   string
		set    Set
		labels map[string]string
		taints []corev1.Taint
		want   *Observed
	}{
		{
			name:   "labels only: touched keys present on the node, no taints",
			set:    Set{Labels: []Label{{Key: "team", Value: "ml"}, {Key: "empty", Remove: true}, {Key: "absent", Value: "x"}}},
			labels: labels, taints: taints,
			want: &Observed{ResourceVersion: "42", Labels: map[string]string{"team": "web", "empty": ""}},
		},
		{
			name:   "no touched label on the node",
			set:    Set{Labels: []Label{{Key: "absent", Value: "x"}}},
			labels: labels, taints: taints,
			want: &Observed{ResourceVersion: "42"},
		},
		{
			name:   "taints: the whole list, and no untouched label",
			set:    Set{Taints: []Taint{{Key: "spot", Effect: ns}}},
			labels: labels, taints: taints,
			want: &Observed{ResourceVersion: "42", Taints: taints},
		},
		{
			name:   "mixed",
			set:    Set{Labels: []Label{{Key: "zone", Remove: true}}, Taints: []Taint{{Key: "gpu", Remove: true}}},
			labels: labels, taints: taints,
			want: &Observed{ResourceVersion: "42", Labels: map[string]string{"zone": "a"}, Taints: taints},
		},
		{
			name:   "taints on a node with none",
			set:    Set{Taints: []Taint{{Key: "spot", Effect: ns}}},
			labels: nil, taints: nil,
			want: &Observed{ResourceVersion: "42"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.set.Observe("42", tt.labels, tt.taints)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Observe mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestObserveCopies: the result shares nothing with the node it came from,
// so the caller may drop (or reuse) the listed objects.
func TestObserveCopies(t *testing.T) {
	t.Parallel()
	old := metav1.NewTime(now.Add(-time.Hour))
	labels := map[string]string{"team": "web"}
	taints := []corev1.Taint{{Key: "drain", Value: "x", Effect: corev1.TaintEffectNoExecute, TimeAdded: &old}}
	s := Set{Labels: []Label{{Key: "team", Value: "ml"}}, Taints: []Taint{{Key: "spot", Effect: corev1.TaintEffectNoSchedule}}}
	got := s.Observe("1", labels, taints)
	labels["team"] = "changed"
	taints[0].Value = "changed"
	taints[0].TimeAdded.Time = now
	want := &Observed{
		ResourceVersion: "1",
		Labels:          map[string]string{"team": "web"},
		Taints:          []corev1.Taint{{Key: "drain", Value: "x", Effect: corev1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: now.Add(-time.Hour)}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Observe result changed with its input (-want +got):\n%s", diff)
	}
}

// TestObserveIsEnough: applying a set to what Observe kept (after the JSON
// trip through the event) gives the same result and the same taints as
// applying it to the whole node. This is what lets the patch path skip its
// read.
func TestObserveIsEnough(t *testing.T) {
	t.Parallel()
	ns, ne := corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute
	old := metav1.NewTime(now.Add(-time.Hour).Truncate(time.Second))
	labels := map[string]string{"team": "web", "zone": "a", "kubernetes.io/hostname": "n1"}
	taints := []corev1.Taint{
		{Key: "node.kubernetes.io/not-ready", Effect: ns},
		{Key: "gpu", Value: "true", Effect: ns},
		{Key: "drain", Value: "x", Effect: ne, TimeAdded: &old},
	}
	sets := []Set{
		{Labels: []Label{{Key: "team", Value: "ml"}, {Key: "zone", Remove: true}, {Key: "new", Value: ""}}},
		{Labels: []Label{{Key: "team", Value: "web"}}},
		{Labels: []Label{{Key: "team", Remove: true, Expect: &Expect{Present: true, Value: "ml"}}}},
		{Taints: []Taint{{Key: "gpu", Remove: true}, {Key: "spot", Effect: ns}}},
		{Taints: []Taint{{Key: "drain", Value: "y", Effect: ne}}, Labels: []Label{{Key: "zone", Value: "b"}}},
		{Taints: []Taint{{Key: "node.kubernetes.io/not-ready", Effect: ns, Remove: true}, {Key: "gpu", Effect: ns, Remove: true}, {Key: "drain", Remove: true}}},
	}
	for _, s := range sets {
		raw, err := json.Marshal(s.Observe("9", labels, taints))
		if err != nil {
			t.Fatalf("encode Observed: %v", err)
		}
		var o Observed
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("decode Observed %s: %v", raw, err)
		}
		_, wantTaints, want := s.ApplyAt(now, labels, taints)
		_, gotTaints, got := s.ApplyAt(now, o.Labels, o.Taints)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v: Apply on Observed result mismatch (-want +got):\n%s", s, diff)
		}
		if len(s.Taints) > 0 {
			if diff := cmp.Diff(wantTaints, gotTaints); diff != "" {
				t.Errorf("%v: Apply on Observed taints mismatch (-want +got):\n%s", s, diff)
			}
		}
	}
}
