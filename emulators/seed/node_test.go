package seed

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestNode(t *testing.T) {
	tests := []struct {
		i          int
		pool, zone string
		taints     []string
	}{
		{0, "general", "us-central1-a", []string{"node-role.kubernetes.io/control-plane:NoSchedule"}},
		{3, "general", "us-central1-a", nil},
		{7, "spot", "us-central1-b", []string{"cloud.google.com/gke-spot=true:NoSchedule"}},
		{9, "gpu", "us-central1-a", []string{"nvidia.com/gpu=present:NoSchedule"}},
		{4999, "gpu", "us-central1-b", []string{"nvidia.com/gpu=present:NoSchedule"}},
	}
	for _, tc := range tests {
		n := Node("node", tc.i, map[string]string{"x": "y"})
		var taints []string
		for _, taint := range n.Spec.Taints {
			taints = append(taints, taint.ToString())
		}
		got := []any{n.Labels["pool"], n.Labels["topology.kubernetes.io/zone"], n.Labels["x"], n.Labels["kubernetes.io/hostname"], taints}
		want := []any{tc.pool, tc.zone, "y", Name("node", tc.i), tc.taints}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Node(%d) mismatch (-want +got):\n%s", tc.i, diff)
		}
	}
}

func TestMerge(t *testing.T) {
	want := &corev1.Node{}
	want.Labels = map[string]string{"pool": "gpu"}
	want.Spec.Taints = []corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}}
	tests := []struct {
		name        string
		labels      map[string]string
		taints      []corev1.Taint
		wantChanged bool
		wantLabels  map[string]string
		wantTaints  []corev1.Taint
	}{
		{"already to spec", map[string]string{"pool": "gpu", "a": "b"}, want.Spec.Taints, false,
			map[string]string{"pool": "gpu", "a": "b"}, want.Spec.Taints},
		{"missing all", nil, nil, true, map[string]string{"pool": "gpu"}, want.Spec.Taints},
		{"wrong value, foreign taint kept", map[string]string{"pool": "spot"},
			[]corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoExecute}, {Key: "nvidia.com/gpu", Value: "absent", Effect: corev1.TaintEffectNoSchedule}}, true,
			map[string]string{"pool": "gpu"},
			[]corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoExecute}, {Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := &corev1.Node{}
			got.Labels = tc.labels
			got.Spec.Taints = append([]corev1.Taint(nil), tc.taints...)
			if changed := merge(got, want); changed != tc.wantChanged {
				t.Errorf("merge changed = %v, want %v", changed, tc.wantChanged)
			}
			if diff := cmp.Diff(tc.wantLabels, got.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantTaints, got.Spec.Taints); diff != "" {
				t.Errorf("taints (-want +got):\n%s", diff)
			}
		})
	}
}
