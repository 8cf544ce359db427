package change

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// KeyKind says whether a Key names a label or a taint.
type KeyKind int

// The kinds of Key.
const (
	KindLabel KeyKind = iota + 1
	KindTaint
)

// Key names one key a change touches on a node: a label, or a taint by key
// and effect (no effect: a remove-all of the key that found no taint). Its
// String, "label:KEY", "taint:KEY:EFFECT" or "taint:KEY", is how the key is
// stored (KeyChange.Key, node results' before/after and unknown keys,
// pending intents) and shown in previews: that format never changes, since
// stored results are read back by retry and revert.
type Key struct {
	Kind   KeyKind
	Name   string             // the label or taint key
	Effect corev1.TaintEffect // taints only
}

// LabelKey is the Key of label name.
func LabelKey(name string) Key { return Key{Kind: KindLabel, Name: name} }

// TaintKey is the Key of the taint name with effect ("": every effect).
func TaintKey(name string, effect corev1.TaintEffect) Key {
	return Key{Kind: KindTaint, Name: name, Effect: effect}
}

const (
	labelPrefix = "label:"
	taintPrefix = "taint:"
)

// String is the key as stored: "label:team", "taint:gpu:NoSchedule",
// "taint:gpu".
func (k Key) String() string {
	if k.Kind == KindLabel {
		return labelPrefix + k.Name
	}
	return taintPrefix + k.Target()
}

// Target is the key without its kind, as messages name it: the label key,
// or the taint's "key:effect" ("key" without an effect).
func (k Key) Target() string {
	if k.Kind == KindTaint && k.Effect != "" {
		return k.Name + ":" + string(k.Effect)
	}
	return k.Name
}

// ParseKey reads a key written by Key.String; ok is false for anything
// else. Label and taint keys hold no ':' (they are qualified names), so a
// taint's effect is what follows its last ':'.
func ParseKey(s string) (k Key, ok bool) {
	if name, found := strings.CutPrefix(s, labelPrefix); found {
		return LabelKey(name), name != ""
	}
	rest, found := strings.CutPrefix(s, taintPrefix)
	if !found {
		return Key{}, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return TaintKey(rest, ""), rest != ""
	}
	return TaintKey(rest[:i], corev1.TaintEffect(rest[i+1:])), i > 0 && i < len(rest)-1
}
