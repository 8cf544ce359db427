package change

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestParseLabel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Label
		wantErr string
	}{
		{in: "team=ml", want: Label{Key: "team", Value: "ml"}},
		{in: "team=", want: Label{Key: "team"}},
		{in: "team-", want: Label{Key: "team", Remove: true}},
		{in: "example.com/pool=gpu-a", want: Label{Key: "example.com/pool", Value: "gpu-a"}},
		{in: "node-role.kubernetes.io/worker=", want: Label{Key: "node-role.kubernetes.io/worker"}},
		{in: "a=b=c", wantErr: `invalid label spec "a=b=c"`},
		{in: "team", wantErr: `unknown label spec "team"`},
		{in: "", wantErr: `unknown label spec ""`},
		{in: "-", wantErr: `invalid label key in "-"`},
		{in: "=x", wantErr: `invalid label key in "=x"`},
		{in: "team=bad value", wantErr: `invalid label value in "team=bad value"`},
		{in: "team=" + strings.Repeat("v", 64), wantErr: "must be no more than 63"},
		{in: "bad key=x", wantErr: `invalid label key`},
		{in: "team=ml-", wantErr: `invalid label value`}, // kubectl: '=' wins over the '-' suffix
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLabel(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLabel(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLabel(%q) error = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseLabel(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if back := got.String(); back != tt.in {
				t.Errorf("ParseLabel(%q).String() = %q, want %q", tt.in, back, tt.in)
			}
		})
	}
}

func TestParseTaint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Taint
		str     string // String() when it differs from in
		wantErr string
	}{
		{in: "gpu=true:NoSchedule", want: Taint{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}},
		{in: "gpu:NoSchedule", want: Taint{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}},
		{in: "gpu=:PreferNoSchedule", want: Taint{Key: "gpu", Effect: corev1.TaintEffectPreferNoSchedule}, str: "gpu:PreferNoSchedule"},
		{in: "example.com/drain=now:NoExecute", want: Taint{Key: "example.com/drain", Value: "now", Effect: corev1.TaintEffectNoExecute}},
		{in: "gpu:NoSchedule-", want: Taint{Key: "gpu", Effect: corev1.TaintEffectNoSchedule, Remove: true}},
		{in: "gpu=true:NoSchedule-", want: Taint{Key: "gpu", Effect: corev1.TaintEffectNoSchedule, Remove: true}, str: "gpu:NoSchedule-"},
		{in: "gpu-", want: Taint{Key: "gpu", Remove: true}},
		{in: "gpu", wantErr: "an effect is required"},
		{in: "gpu=true", wantErr: "invalid key"},
		{in: "gpu=true:Sometimes", wantErr: `unsupported taint effect "Sometimes"`},
		{in: "gpu:NoSchedule:x", wantErr: "more than one ':'"},
		{in: "a=b=c:NoSchedule", wantErr: "more than one '='"},
		{in: "gpu=bad value:NoSchedule", wantErr: "invalid value"},
		{in: ":NoSchedule", wantErr: "invalid key"},
		{in: "-", wantErr: "invalid key"},
		{in: "", wantErr: "invalid key"},
		{in: "gpu:-", wantErr: "unsupported taint effect"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTaint(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTaint(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTaint(%q) error = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTaint(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			want := tt.str
			if want == "" {
				want = tt.in
			}
			if back := got.String(); back != want {
				t.Errorf("ParseTaint(%q).String() = %q, want %q", tt.in, back, want)
			}
		})
	}
}

func TestParseLists(t *testing.T) {
	t.Parallel()
	if _, err := ParseLabels([]string{"a=1", "b-", "a-"}); err == nil || !strings.Contains(err.Error(), "label argument 2") {
		t.Errorf(`ParseLabels(set and remove "a") error = %v, want naming argument 2`, err)
	}
	if _, err := ParseLabels([]string{"a=1", "b c"}); err == nil || !strings.Contains(err.Error(), `label argument 1`) || !strings.Contains(err.Error(), `"b c"`) {
		t.Errorf("ParseLabels(bad) error = %v, want naming argument 1 and its text", err)
	}
	got, err := ParseLabels([]string{"a=1", "b-"})
	if err != nil {
		t.Fatalf("ParseLabels error = %v", err)
	}
	if diff := cmp.Diff([]Label{{Key: "a", Value: "1"}, {Key: "b", Remove: true}}, got); diff != "" {
		t.Errorf("ParseLabels mismatch (-want +got):\n%s", diff)
	}
	if _, err := ParseTaints([]string{"g=1:NoSchedule", "g=2:NoSchedule"}); err == nil || !strings.Contains(err.Error(), "taint argument 1") {
		t.Errorf("ParseTaints(duplicate) error = %v, want naming argument 1", err)
	}
	// Same key, different effects: separate taints, as in kubectl.
	tg, err := ParseTaints([]string{"g=1:NoSchedule", "g=1:NoExecute", "g:PreferNoSchedule-"})
	if err != nil {
		t.Fatalf("ParseTaints error = %v", err)
	}
	if len(tg) != 3 {
		t.Errorf("ParseTaints returned %d taints, want 3", len(tg))
	}
	if _, err := ParseTaints([]string{"g=1:NoSchedule", "x"}); err == nil || !strings.Contains(err.Error(), "taint argument 1") {
		t.Errorf("ParseTaints(bad) error = %v, want naming argument 1", err)
	}
}
