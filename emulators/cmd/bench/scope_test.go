package main

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestScopes: a scope is up exactly while its jobs run, started once per
// run of adjacent jobs and stopped before anything else runs.
func TestScopes(t *testing.T) {
	var events []string
	mk := func(name string, fail bool) *scope {
		return &scope{name: name, start: func(context.Context) (func(), error) {
			if fail {
				events = append(events, "fail "+name)
				return nil, errors.New("no")
			}
			events = append(events, "start "+name)
			return func() { events = append(events, "stop "+name) }, nil
		}}
	}
	a, b, bad := mk("a", false), mk("b", false), mk("bad", true)
	r := &runner{}
	for _, s := range []*scope{nil, a, a, b, nil, bad, a} {
		if err := r.enter(t.Context(), s); (err != nil) != (s == bad) {
			t.Errorf("enter %v: %v", s, err)
		}
	}
	r.leave()
	r.leave()
	want := []string{"start a", "stop a", "start b", "stop b", "fail bad", "start a", "stop a"}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("scope events (-want +got):\n%s", diff)
	}
}
