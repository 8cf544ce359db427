package change

import (
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KeyChange is one touched key of one node and its value before and after
// applying a Set: the effect of the change on that node (a node's result,
// a preview's node), not the batch's change, which is the Set (rendered in
// kubectl syntax by Summary).
// Key is a Key as a string (Key.String): "label:team" or
// "taint:gpu:NoSchedule" ("taint:gpu" when a remove-all found no taint of
// that key); ParseKey reads it. nil means absent; a taint present
// with an empty value is "".
type KeyChange struct {
	Key    string  `json:"key"`
	Before *string `json:"before"`
	After  *string `json:"after"`
}

// Changed reports whether the key's value or presence differs.
func (k KeyChange) Changed() bool {
	if (k.Before == nil) != (k.After == nil) {
		return true
	}
	return k.Before != nil && *k.Before != *k.After
}

// Result is what applying a Set to one node did, key by key.
type Result struct {
	// Changed is true when at least one key's value or presence differs.
	Changed bool
	// Skipped is true when an Expect precondition failed; nothing was applied.
	Skipped    bool
	SkipReason string
	// Changes lists every touched key, unchanged ones too, sorted by Key.
	Changes []KeyChange
}

// Apply applies s to a node's labels and taints as kubectl would and returns
// the new labels and taints; it never mutates its inputs. Untouched taints
// keep their order, an updated taint keeps its position and new taints are
// appended. NoExecute taints that are added or get a new value carry
// TimeAdded = now, as the node lifecycle controller sets it; other effects
// never carry it. If any Expect fails, nothing is applied and the result is
// Skipped with a reason naming the key and the value found.
func (s Set) Apply(labels map[string]string, taints []corev1.Taint) (map[string]string, []corev1.Taint, Result) {
	return s.ApplyAt(time.Now(), labels, taints)
}

// ApplyAt is Apply with the clock given, for deterministic callers and tests.
func (s Set) ApplyAt(now time.Time, labels map[string]string, taints []corev1.Taint) (map[string]string, []corev1.Taint, Result) {
	newLabels := make(map[string]string, len(labels)+len(s.Labels))
	maps.Copy(newLabels, labels)
	newTaints := make([]corev1.Taint, 0, len(taints)+len(s.Taints))
	for _, t := range taints {
		newTaints = append(newTaints, *t.DeepCopy())
	}
	if reason, ok := s.checkExpect(labels, taints); !ok {
		return newLabels, newTaints, Result{Skipped: true, SkipReason: reason, Changes: s.current(labels, taints)}
	}

	d := newDiff()
	for _, l := range s.Labels {
		k := LabelKey(l.Key).String()
		old, ok := newLabels[l.Key]
		d.before(k, old, ok)
		if l.Remove {
			delete(newLabels, l.Key)
			d.after(k, "", false)
			continue
		}
		newLabels[l.Key] = l.Value
		d.after(k, l.Value, true)
	}
	stamp := metav1.NewTime(now.Truncate(time.Second))
	for _, t := range s.Taints {
		switch {
		case t.Remove && t.Effect == "":
			found := false
			newTaints = slices.DeleteFunc(newTaints, func(o corev1.Taint) bool {
				if o.Key != t.Key {
					return false
				}
				found = true
				k := TaintKey(o.Key, o.Effect).String()
				d.before(k, o.Value, true)
				d.after(k, "", false)
				return true
			})
			if !found {
				d.before(TaintKey(t.Key, "").String(), "", false)
				d.after(TaintKey(t.Key, "").String(), "", false)
			}
		case t.Remove:
			k := TaintKey(t.Key, t.Effect).String()
			i := findTaint(newTaints, t.Key, t.Effect)
			if i < 0 {
				d.before(k, "", false)
			} else {
				d.before(k, newTaints[i].Value, true)
				newTaints = slices.Delete(newTaints, i, i+1)
			}
			d.after(k, "", false)
		default:
			k := TaintKey(t.Key, t.Effect).String()
			nt := corev1.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect}
			if t.Effect == corev1.TaintEffectNoExecute {
				nt.TimeAdded = stamp.DeepCopy()
			}
			i := findTaint(newTaints, t.Key, t.Effect)
			switch {
			case i < 0:
				d.before(k, "", false)
				newTaints = append(newTaints, nt)
			case newTaints[i].Value != t.Value:
				d.before(k, newTaints[i].Value, true)
				newTaints[i] = nt
			default:
				d.before(k, newTaints[i].Value, true)
			}
			d.after(k, t.Value, true)
		}
	}
	return newLabels, newTaints, d.result()
}

func findTaint(ts []corev1.Taint, key string, effect corev1.TaintEffect) int {
	return slices.IndexFunc(ts, func(t corev1.Taint) bool { return t.Key == key && t.Effect == effect })
}

// checkExpect reports whether every precondition holds against the node as
// read, and if not, why.
func (s Set) checkExpect(labels map[string]string, taints []corev1.Taint) (string, bool) {
	for _, l := range s.Labels {
		if l.Expect == nil {
			continue
		}
		v, ok := labels[l.Key]
		if !matches(*l.Expect, v, ok) {
			return fmt.Sprintf("label %q: expected %s, found %s", l.Key, describeExpect(*l.Expect), describe(v, ok)), false
		}
	}
	for _, t := range s.Taints {
		if t.Expect == nil {
			continue
		}
		v, ok := "", false
		for _, o := range taints {
			if o.Key == t.Key && (t.Effect == "" || o.Effect == t.Effect) {
				v, ok = o.Value, true
				break
			}
		}
		if !matches(*t.Expect, v, ok) {
			return fmt.Sprintf("taint %q: expected %s, found %s", TaintKey(t.Key, t.Effect).Target(), describeExpect(*t.Expect), describe(v, ok)), false
		}
	}
	return "", true
}

func matches(e Expect, v string, ok bool) bool {
	if !e.Present {
		return !ok
	}
	return ok && v == e.Value
}

func describeExpect(e Expect) string {
	return describe(e.Value, e.Present)
}

func describe(v string, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q", v)
}

// current lists the touched keys with their current values, unchanged, for
// a skipped result.
func (s Set) current(labels map[string]string, taints []corev1.Taint) []KeyChange {
	d := newDiff()
	for _, l := range s.Labels {
		v, ok := labels[l.Key]
		d.before(LabelKey(l.Key).String(), v, ok)
		d.after(LabelKey(l.Key).String(), v, ok)
	}
	for _, t := range s.Taints {
		found := false
		for _, o := range taints {
			if o.Key == t.Key && (t.Effect == "" || o.Effect == t.Effect) {
				found = true
				k := TaintKey(o.Key, o.Effect).String()
				d.before(k, o.Value, true)
				d.after(k, o.Value, true)
			}
		}
		if !found {
			d.before(TaintKey(t.Key, t.Effect).String(), "", false)
			d.after(TaintKey(t.Key, t.Effect).String(), "", false)
		}
	}
	return d.result().Changes
}

// diff collects KeyChanges: the first before and the last after of each key,
// so a key touched twice (possible only in an invalid Set) still diffs
// correctly.
type diff struct {
	m map[string]*KeyChange
}

func newDiff() *diff { return &diff{m: map[string]*KeyChange{}} }

func (d *diff) before(k, v string, ok bool) {
	if _, seen := d.m[k]; seen {
		return
	}
	kc := &KeyChange{Key: k}
	if ok {
		kc.Before = &v
	}
	d.m[k] = kc
}

func (d *diff) after(k, v string, ok bool) {
	kc := d.m[k]
	kc.After = nil
	if ok {
		kc.After = &v
	}
}

func (d *diff) result() Result {
	var r Result
	for _, k := range slices.Sorted(maps.Keys(d.m)) {
		kc := *d.m[k]
		r.Changed = r.Changed || kc.Changed()
		r.Changes = append(r.Changes, kc)
	}
	return r
}
