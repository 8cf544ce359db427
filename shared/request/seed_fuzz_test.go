package request

import (
	"slices"
	"strings"
	"testing"

	"github.com/nodebatch/nodebatch/shared/change"
)

// FuzzSeedLabels feeds arbitrary bodies of the seed's label endpoints
// through Decode, Batch and Validate: no panic, and what is accepted
// changes exactly the label keys the body names, the way its operation
// says (the translation to kubectl syntax must not let a key or value
// smuggle in another change).
func FuzzSeedLabels(f *testing.F) {
	for _, s := range []string{
		`{"nodes":["n1"],"labels":{"team":"ml"}}`,
		`{"nodes":["n1","n2"],"labels":{"team":"","env":"prod"},"operation":"remove","concurrency":2}`,
		`{"nodes":["n1"],"labels":{"a=b":""},"operation":"remove"}`,
		`{"nodes":["n1"],"labels":{"a":"b,c=d"}}`,
		`{"nodes":["n1"],"labels":{"kubernetes.io/os":"plan9"},"dry_run":true}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var body SeedLabels
		if e := Decode(strings.NewReader(s), &body); e != nil {
			return
		}
		b, e := body.Batch()
		if e != nil {
			return
		}
		spec, e := b.Validate(DefaultLimits(), change.DefaultProtection())
		if e != nil {
			return
		}
		if err := exactKeys(s, seedKeys("labels")); err != nil {
			t.Fatalf("Decode(%q) accepted a body with %v", s, err)
		}
		remove := body.Operation == "remove" || body.Operation == "delete"
		if len(spec.Set.Labels) != len(body.Labels) || len(spec.Set.Taints) != 0 {
			t.Fatalf("%s: accepted %d label and %d taint changes, want %d labels", s, len(spec.Set.Labels), len(spec.Set.Taints), len(body.Labels))
		}
		for _, l := range spec.Set.Labels {
			v, ok := body.Labels[l.Key]
			if !ok || l.Remove != remove || (!remove && l.Value != v) {
				t.Fatalf("%s: accepted change %+v, which the body does not ask for", s, l)
			}
		}
	})
}

// FuzzSeedTaints is FuzzSeedLabels for the seed's taint endpoints: each
// accepted change is one of the body's taints, with its key, effect and
// (when adding) value.
func FuzzSeedTaints(f *testing.F) {
	for _, s := range []string{
		`{"nodes":["n1"],"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"}]}`,
		`{"nodes":["n1"],"taints":[{"key":"gpu","effect":"NoSchedule"},{"key":"x"}],"operation":"remove"}`,
		`{"nodes":["n1"],"taints":[{"key":"gpu","value":"x:NoExecute","effect":"NoSchedule"}]}`,
		`{"nodes":["n1"],"taints":[{"key":"node.kubernetes.io/not-ready","effect":"NoSchedule"}],"operation":"remove"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var body SeedTaints
		if e := Decode(strings.NewReader(s), &body); e != nil {
			return
		}
		b, e := body.Batch()
		if e != nil {
			return
		}
		spec, e := b.Validate(DefaultLimits(), change.DefaultProtection())
		if e != nil {
			return
		}
		if err := exactKeys(s, seedKeys("taints")); err != nil {
			t.Fatalf("Decode(%q) accepted a body with %v", s, err)
		}
		remove := body.Operation == "remove" || body.Operation == "delete"
		if len(spec.Set.Taints) != len(body.Taints) || len(spec.Set.Labels) != 0 {
			t.Fatalf("%s: accepted %d taint and %d label changes, want %d taints", s, len(spec.Set.Taints), len(spec.Set.Labels), len(body.Taints))
		}
		for _, tc := range spec.Set.Taints {
			if tc.Remove != remove || !slices.ContainsFunc(body.Taints, func(bt SeedTaint) bool {
				return bt.Key == tc.Key && bt.Effect == string(tc.Effect) && (remove || bt.Value == tc.Value)
			}) {
				t.Fatalf("%s: accepted change %+v, which the body does not ask for", s, tc)
			}
		}
	})
}

// seedKeys are the top-level keys of a seed body whose changes are under
// changes ("labels" or "taints").
func seedKeys(changes string) map[string]bool {
	return map[string]bool{"nodes": true, changes: true, "operation": true, "concurrency": true, "dry_run": true, "idempotency_key": true}
}
