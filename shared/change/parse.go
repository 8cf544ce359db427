package change

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ParseLabel parses one argument of `kubectl label`: "key=value" adds or
// overwrites, "key=" sets an empty value, "key-" removes. Like kubectl, a
// spec with more than one "=" is refused; unlike kubectl, the key is
// validated here too, so a parsed Label is always well-formed.
func ParseLabel(s string) (Label, error) {
	var l Label
	switch {
	case strings.Contains(s, "="):
		parts := strings.Split(s, "=")
		if len(parts) != 2 {
			return Label{}, fmt.Errorf("invalid label spec %q: more than one '='", s)
		}
		if errs := validation.IsValidLabelValue(parts[1]); len(errs) != 0 {
			return Label{}, fmt.Errorf("invalid label value in %q: %s", s, strings.Join(errs, "; "))
		}
		l = Label{Key: parts[0], Value: parts[1]}
	case strings.HasSuffix(s, "-"):
		l = Label{Key: s[:len(s)-1], Remove: true}
	default:
		return Label{}, fmt.Errorf("unknown label spec %q: want key=value or key-", s)
	}
	if errs := validation.IsQualifiedName(l.Key); len(errs) != 0 {
		return Label{}, fmt.Errorf("invalid label key in %q: %s", s, strings.Join(errs, "; "))
	}
	return l, nil
}

// ParseTaint parses one argument of `kubectl taint`: "key=value:Effect" and
// "key:Effect" add or update; "key:Effect-" (a value, if given, is ignored,
// as kubectl ignores it) removes that key and effect; "key-" removes every
// effect of key.
func ParseTaint(s string) (Taint, error) {
	if strings.HasSuffix(s, "-") {
		t, err := parseTaint(strings.TrimSuffix(s, "-"))
		if err != nil {
			return Taint{}, fmt.Errorf("invalid taint spec %q: %w", s, err)
		}
		return Taint{Key: t.Key, Effect: t.Effect, Remove: true}, nil
	}
	t, err := parseTaint(s)
	if err != nil {
		return Taint{}, fmt.Errorf("invalid taint spec %q: %w", s, err)
	}
	if t.Effect == "" {
		return Taint{}, fmt.Errorf("invalid taint spec %q: an effect is required to add a taint (key=value:Effect)", s)
	}
	return t, nil
}

// parseTaint parses "key=value:Effect", "key:Effect" or "key", the forms
// kubectl accepts.
func parseTaint(s string) (Taint, error) {
	var t Taint
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 1:
		t.Key = parts[0]
	case 2:
		t.Effect = corev1.TaintEffect(parts[1])
		if !validEffect(t.Effect) {
			return Taint{}, fmt.Errorf("unsupported taint effect %q (want NoSchedule, PreferNoSchedule or NoExecute)", parts[1])
		}
		kv := strings.Split(parts[0], "=")
		if len(kv) > 2 {
			return Taint{}, fmt.Errorf("more than one '='")
		}
		t.Key = kv[0]
		if len(kv) == 2 {
			t.Value = kv[1]
			if errs := validation.IsValidLabelValue(t.Value); len(errs) > 0 {
				return Taint{}, fmt.Errorf("invalid value %q: %s", t.Value, strings.Join(errs, "; "))
			}
		}
	default:
		return Taint{}, fmt.Errorf("more than one ':'")
	}
	if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
		return Taint{}, fmt.Errorf("invalid key %q: %s", t.Key, strings.Join(errs, "; "))
	}
	return t, nil
}

func validEffect(e corev1.TaintEffect) bool {
	switch e {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		return true
	}
	return false
}

// ParseLabels parses kubectl label arguments. Like kubectl, it refuses to
// set and remove the same key in one command.
func ParseLabels(args []string) ([]Label, error) {
	out := make([]Label, 0, len(args))
	seen := make(map[string]int, len(args))
	for i, a := range args {
		l, err := ParseLabel(a)
		if err != nil {
			return nil, fmt.Errorf("label argument %d: %w", i, err)
		}
		if j, ok := seen[l.Key]; ok && out[j].Remove != l.Remove {
			return nil, fmt.Errorf("label argument %d %q: can not both modify and remove label %q (argument %d)", i, a, l.Key, j)
		}
		seen[l.Key] = len(out)
		out = append(out, l)
	}
	return out, nil
}

// ParseTaints parses kubectl taint arguments. Like kubectl, it refuses to
// add the same key and effect twice.
func ParseTaints(args []string) ([]Taint, error) {
	out := make([]Taint, 0, len(args))
	added := make(map[string]int, len(args))
	for i, a := range args {
		t, err := ParseTaint(a)
		if err != nil {
			return nil, fmt.Errorf("taint argument %d: %w", i, err)
		}
		if !t.Remove {
			k := TaintKey(t.Key, t.Effect).String()
			if j, ok := added[k]; ok {
				return nil, fmt.Errorf("taint argument %d %q: duplicated taint with the same key and effect as argument %d", i, a, j)
			}
			added[k] = i
		}
		out = append(out, t)
	}
	return out, nil
}
