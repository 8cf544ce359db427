package request

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/change"
)

func TestGuardFields(t *testing.T) {
	tests := []struct {
		name         string
		body         string
		wantConfirm  int
		wantMaxNodes int
		wantFields   []string // refused fields, in order
	}{
		{name: "neither", body: `{"labels":["a=b"],"all":true}`},
		{name: "confirm", body: `{"labels":["a=b"],"all":true,"confirm":12}`, wantConfirm: 12},
		{name: "max_nodes", body: `{"labels":["a=b"],"selector":"pool=gpu","max_nodes":40}`, wantMaxNodes: 40},
		{name: "both", body: `{"labels":["a=b"],"all":true,"confirm":3,"max_nodes":5}`, wantConfirm: 3, wantMaxNodes: 5},
		{name: "confirm zero", body: `{"labels":["a=b"],"all":true,"confirm":0}`, wantFields: []string{"confirm"}},
		{name: "negative max_nodes", body: `{"labels":["a=b"],"all":true,"max_nodes":-1}`, wantFields: []string{"max_nodes"}},
		{name: "both bad", body: `{"labels":["a=b"],"all":true,"confirm":-2,"max_nodes":0}`, wantFields: []string{"confirm", "max_nodes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Batch
			if e := Decode(strings.NewReader(tt.body), &b); e != nil {
				t.Fatalf("Decode(%s): %v", tt.body, e)
			}
			spec, e := b.Validate(DefaultLimits(), change.DefaultProtection())
			if tt.wantFields != nil {
				if e == nil {
					t.Fatalf("Validate(%s) = nil error, want fields %v", tt.body, tt.wantFields)
				}
				var got []string
				for _, f := range e.Fields {
					got = append(got, f.Field)
				}
				if diff := cmp.Diff(tt.wantFields, got); diff != "" || e.Status() != 422 {
					t.Errorf("Validate(%s) = %d, fields (-want +got):\n%s", tt.body, e.Status(), diff)
				}
				return
			}
			if e != nil {
				t.Fatalf("Validate(%s): %v", tt.body, e)
			}
			if spec.Confirm != tt.wantConfirm || spec.MaxNodes != tt.wantMaxNodes {
				t.Errorf("Validate(%s) = confirm %d, max_nodes %d, want %d, %d", tt.body, spec.Confirm, spec.MaxNodes, tt.wantConfirm, tt.wantMaxNodes)
			}
		})
	}
}

func TestGuardFieldsWrongType(t *testing.T) {
	for _, body := range []string{`{"all":true,"confirm":"12"}`, `{"all":true,"max_nodes":1.5}`, `{"all":true,"confirm":true}`} {
		var b Batch
		e := Decode(strings.NewReader(body), &b)
		if e == nil || e.Code() != codeMalformed {
			t.Errorf("Decode(%s) = %v, want %s", body, e, codeMalformed)
		}
	}
}

func TestSeedGuardFields(t *testing.T) {
	body := `{"nodes":["n1"],"taints":[{"key":"drain","effect":"NoExecute"}],"confirm":1,"max_nodes":2}`
	var s SeedTaints
	if e := Decode(strings.NewReader(body), &s); e != nil {
		t.Fatalf("Decode(%s): %v", body, e)
	}
	b, e := s.Batch()
	if e != nil {
		t.Fatalf("Batch(): %v", e)
	}
	spec, e := b.Validate(DefaultLimits(), change.DefaultProtection())
	if e != nil {
		t.Fatalf("Validate: %v", e)
	}
	if spec.Confirm != 1 || spec.MaxNodes != 2 {
		t.Errorf("seed taints: confirm %d, max_nodes %d, want 1, 2", spec.Confirm, spec.MaxNodes)
	}
	var l SeedLabels
	if e := Decode(strings.NewReader(`{"nodes":["n1"],"labels":{"a":"b"},"max_nodes":0}`), &l); e != nil {
		t.Fatalf("Decode seed labels: %v", e)
	}
	b, _ = l.Batch()
	if _, e := b.Validate(DefaultLimits(), change.DefaultProtection()); e == nil || e.Fields[0].Field != "max_nodes" {
		t.Errorf("seed labels max_nodes 0: Validate = %v, want a max_nodes field error", e)
	}
}
