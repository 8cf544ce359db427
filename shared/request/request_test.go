package request

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/change"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		limit     int64
		want      *Batch
		wantCode  string
		wantField string
	}{
		{name: "ok", body: `{"labels":["team=ml"],"all":true,"concurrency":3,"max_failures":"5%"}`,
			want: &Batch{Labels: []string{"team=ml"}, All: true, Concurrency: 3, MaxFailures: "5%"}},
		{name: "numeric max_failures", body: `{"labels":["a=b"],"all":true,"max_failures":10}`,
			want: &Batch{Labels: []string{"a=b"}, All: true, MaxFailures: "10"}},
		{name: "structured", body: `{"changes":{"labels":[{"key":"team","value":"ml"}]},"nodes":["n1"]}`,
			want: &Batch{Changes: &change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}}, Nodes: []string{"n1"}}},
		{name: "unknown field", body: `{"labels":["a=b"],"all":true,"colour":"red"}`, wantCode: codeMalformed, wantField: "colour"},
		{name: "wrong type", body: `{"labels":"a=b","all":true}`, wantCode: codeMalformed, wantField: "labels"},
		{name: "two values", body: `{"all":true} {"all":true}`, wantCode: codeMalformed},
		{name: "trailing garbage", body: `{"all":true} x`, wantCode: codeMalformed},
		{name: "empty", body: ``, wantCode: codeMalformed},
		{name: "not json", body: `labels=a`, wantCode: codeMalformed},
		{name: "array", body: `[]`, wantCode: codeMalformed},
		{name: "too large", body: `{"labels":["` + strings.Repeat("a", 200) + `"]}`, limit: 64, wantCode: codeTooLarge},
		{name: "null", body: `null`, wantCode: codeMalformed},
		{name: "whitespace only", body: " \n\t", wantCode: codeMalformed},
		// Go's decoder matches keys case-insensitively and keeps the last
		// of duplicate keys: either would let a body say what it seems not to.
		{name: "key in another case", body: `{"labels":["x=1"],"ALL":true}`, wantCode: codeMalformed, wantField: "ALL"},
		{name: "key in title case", body: `{"Labels":["x=1"],"all":true}`, wantCode: codeMalformed, wantField: "Labels"},
		{name: "duplicate key", body: `{"labels":["a=b"],"all":false,"all":true}`, wantCode: codeMalformed, wantField: "all"},
		{name: "duplicate key spelled with an escape", body: `{"labels":["a=b"],"all":true,"\u0061ll":false}`, wantCode: codeMalformed, wantField: "all"},
		{name: "duplicate key, other case", body: `{"labels":["a=b"],"selector":"a=b","Selector":""}`, wantCode: codeMalformed, wantField: "Selector"},
		{name: "nested key in another case", body: `{"changes":{"labels":[{"key":"a","KEY":"b"}]},"all":true}`, wantCode: codeMalformed, wantField: "changes.labels[0].KEY"},
		{name: "nested duplicate key", body: `{"changes":{"labels":[{"key":"a","key":"kubernetes.io/os"}]},"all":true}`, wantCode: codeMalformed, wantField: "changes.labels[0].key"},
		{name: "duplicate key in expect", body: `{"changes":{"labels":[{"key":"a","expect":{"present":true,"present":false}}]},"all":true}`, wantCode: codeMalformed, wantField: "changes.labels[0].expect.present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = 1 << 20
			}
			r := http.MaxBytesReader(httptest.NewRecorder(), body(tt.body), limit)
			var got Batch
			e := Decode(r, &got)
			if tt.wantCode != "" {
				if e == nil {
					t.Fatalf("Decode(%s) = nil error, want code %s", tt.body, tt.wantCode)
				}
				if e.Code() != tt.wantCode {
					t.Errorf("Decode(%s) code = %s, want %s (%v)", tt.body, e.Code(), tt.wantCode, e)
				}
				if e.Status() < 400 || e.Status() >= 500 {
					t.Errorf("Decode(%s) status = %d, want 4xx", tt.body, e.Status())
				}
				if tt.wantField != "" && (len(e.Fields) == 0 || e.Fields[0].Field != tt.wantField) {
					t.Errorf("Decode(%s) fields = %+v, want field %q", tt.body, e.Fields, tt.wantField)
				}
				return
			}
			if e != nil {
				t.Fatalf("Decode(%s) = %v", tt.body, e)
			}
			if diff := cmp.Diff(tt.want, &got); diff != "" {
				t.Errorf("Decode(%s) (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}

// TestDecodeManyUnknown: a body with thousands of unknown keys is refused
// with a bounded answer.
func TestDecodeManyUnknown(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"labels":["a=b"],"all":true`)
	for i := range 5000 {
		fmt.Fprintf(&sb, `,"x%d":1`, i)
	}
	sb.WriteString(`}`)
	var got Batch
	e := Decode(strings.NewReader(sb.String()), &got)
	if e == nil || e.Code() != codeMalformed {
		t.Fatalf("Decode(5000 unknown keys) = %v, want malformed", e)
	}
	if len(e.Fields) != maxStrictFields || !strings.Contains(e.Message, "and more") {
		t.Errorf("Decode(5000 unknown keys) = %d fields, message %q; want %d fields and the rest counted", len(e.Fields), e.Message, maxStrictFields)
	}
}

func body(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

func TestValidate(t *testing.T) {
	lim := Limits{MaxNodes: 3, MaxChanges: 2, MaxConcurrency: 5, MaxIdempotencyKey: 8}
	tests := []struct {
		name       string
		in         Batch
		wantFields []string // refused fields, in order; nil: valid
	}{
		{name: "labels on nodes", in: Batch{Labels: []string{"team=ml", "old-"}, Nodes: []string{"b", "a"}}},
		{name: "taints on selector", in: Batch{Taints: []string{"gpu=true:NoSchedule", "x:NoExecute-", "y-"}, Selector: "pool=gpu,zone!=c"}, wantFields: []string{"labels"}},
		{name: "taint ok", in: Batch{Taints: []string{"gpu=true:NoSchedule"}, All: true}},
		{name: "bad label", in: Batch{Labels: []string{"te am=ml"}, All: true}, wantFields: []string{"labels[0]"}},
		{name: "bad label value", in: Batch{Labels: []string{"ok=1", "team=" + strings.Repeat("x", 64)}, All: true}, wantFields: []string{"labels[1]"}},
		{name: "bad taint effect", in: Batch{Taints: []string{"gpu=true:Sometimes"}, All: true}, wantFields: []string{"taints[0]"}},
		{name: "protected prefix", in: Batch{Labels: []string{"kubernetes.io/hostname=x"}, All: true}, wantFields: []string{"labels[0].key"}},
		{name: "no change", in: Batch{All: true}, wantFields: []string{"labels"}},
		{name: "both forms", in: Batch{Labels: []string{"a=b"}, Changes: &change.Set{Labels: []change.Label{{Key: "a", Value: "b"}}}, All: true}, wantFields: []string{"changes"}},
		{name: "no target", in: Batch{Labels: []string{"a=b"}}, wantFields: []string{"nodes"}},
		{name: "two targets", in: Batch{Labels: []string{"a=b"}, All: true, Selector: "a=b"}, wantFields: []string{"nodes"}},
		{name: "bad node name", in: Batch{Labels: []string{"a=b"}, Nodes: []string{"ok", "Not_OK"}}, wantFields: []string{"nodes[1]"}},
		{name: "duplicate node", in: Batch{Labels: []string{"a=b"}, Nodes: []string{"n1", "n1"}}, wantFields: []string{"nodes[1]"}},
		{name: "too many nodes", in: Batch{Labels: []string{"a=b"}, Nodes: []string{"a", "b", "c", "d"}}, wantFields: []string{"nodes"}},
		{name: "bad selector", in: Batch{Labels: []string{"a=b"}, Selector: "a=(b"}, wantFields: []string{"selector"}},
		{name: "blank selector", in: Batch{Labels: []string{"a=b"}, Selector: " "}, wantFields: []string{"selector"}},
		{name: "whitespace selector", in: Batch{Labels: []string{"a=b"}, Selector: "\t\n "}, wantFields: []string{"selector"}},
		{name: "blank selector and all", in: Batch{Labels: []string{"a=b"}, Selector: " ", All: true}, wantFields: []string{"nodes"}},
		{name: "NaN percent", in: Batch{Labels: []string{"a=b"}, All: true, MaxFailures: "NaN%"}, wantFields: []string{"max_failures"}},
		{name: "Inf percent", in: Batch{Labels: []string{"a=b"}, All: true, MaxFailures: "Inf%"}, wantFields: []string{"max_failures"}},
		{name: "overflowing percent", in: Batch{Labels: []string{"a=b"}, All: true, MaxFailures: "1e400%"}, wantFields: []string{"max_failures"}},
		{name: "negative zero percent", in: Batch{Labels: []string{"a=b"}, All: true, MaxFailures: "-0%"}, wantFields: []string{"max_failures"}},
		{name: "concurrency too high", in: Batch{Labels: []string{"a=b"}, All: true, Concurrency: 6}, wantFields: []string{"concurrency"}},
		{name: "concurrency negative", in: Batch{Labels: []string{"a=b"}, All: true, Concurrency: -1}, wantFields: []string{"concurrency"}},
		{name: "key too long", in: Batch{Labels: []string{"a=b"}, All: true, IdempotencyKey: "123456789"}, wantFields: []string{"idempotency_key"}},
		{name: "bad max_failures", in: Batch{Labels: []string{"a=b"}, All: true, MaxFailures: "lots"}, wantFields: []string{"max_failures"}},
		{name: "bad percent", in: Batch{Labels: []string{"a=b"}, All: true, MaxFailures: "150%"}, wantFields: []string{"max_failures"}},
		{name: "several at once", in: Batch{Labels: []string{"a b"}, Nodes: []string{"X"}, Concurrency: 9}, wantFields: []string{"labels[0]", "nodes[0]", "concurrency"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, e := tt.in.Validate(lim, change.DefaultProtection())
			var got []string
			if e != nil {
				if e.Status() != http.StatusUnprocessableEntity || e.Code() != codeInvalid {
					t.Errorf("Validate status, code = %d, %s, want 422, invalid", e.Status(), e.Code())
				}
				for _, f := range e.Fields {
					got = append(got, f.Field)
					if f.Reason == "" {
						t.Errorf("field %s has no reason", f.Field)
					}
				}
			}
			if diff := cmp.Diff(tt.wantFields, got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("Validate(%+v) refused fields (-want +got):\n%s\nerror: %v", tt.in, diff, e)
			}
			if e == nil && spec == nil {
				t.Fatalf("Validate(%+v) = nil spec and nil error", tt.in)
			}
		})
	}
}

func TestValidateSpec(t *testing.T) {
	in := Batch{Labels: []string{"team=ml", "old-"}, Nodes: []string{"n2", "n1"}, Concurrency: 2, DryRun: true, IdempotencyKey: "k"}
	spec, e := in.Validate(DefaultLimits(), change.DefaultProtection())
	if e != nil {
		t.Fatalf("Validate = %v", e)
	}
	want := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}, {Key: "old", Remove: true}}}
	if diff := cmp.Diff(want, spec.Set); diff != "" {
		t.Errorf("spec.Set (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"n2", "n1"}, spec.Nodes); diff != "" {
		t.Errorf("spec.Nodes (-want +got):\n%s", diff)
	}
	if !spec.DryRun || spec.Concurrency != 2 || spec.IdempotencyKey != "k" {
		t.Errorf("spec options = %+v", spec)
	}
}

func TestConcurrency(t *testing.T) {
	tests := []struct{ total, max, want int }{
		{1, 50, 1}, {20, 50, 1}, {21, 50, 2}, {500, 50, 25}, {10000, 50, 50}, {10000, 8, 8},
	}
	for _, tt := range tests {
		if got := Concurrency(tt.total, tt.max); got != tt.want {
			t.Errorf("Concurrency(%d, %d) = %d, want %d", tt.total, tt.max, got, tt.want)
		}
	}
}

func TestSeedBodies(t *testing.T) {
	tests := []struct {
		name string
		got  func() (*Batch, *apierror.Error)
		want *Batch
	}{
		{"labels add", (&SeedLabels{Nodes: []string{"n1"}, Labels: map[string]string{"z": "1", "a": "2"}}).Batch,
			&Batch{Nodes: []string{"n1"}, Seed: true, Changes: &change.Set{Labels: []change.Label{{Key: "a", Value: "2"}, {Key: "z", Value: "1"}}}}},
		{"labels remove", (&SeedLabels{Nodes: []string{"n1"}, Labels: map[string]string{"a": "ignored"}, Operation: "remove"}).Batch,
			&Batch{Nodes: []string{"n1"}, Seed: true, Changes: &change.Set{Labels: []change.Label{{Key: "a", Remove: true}}}}},
		{"taints add", (&SeedTaints{Nodes: []string{"n1"}, Taints: []SeedTaint{{Key: "gpu", Value: "true", Effect: "NoSchedule"}, {Key: "x", Effect: "NoExecute"}}}).Batch,
			&Batch{Nodes: []string{"n1"}, Seed: true, Changes: &change.Set{Taints: []change.Taint{{Key: "gpu", Value: "true", Effect: "NoSchedule"}, {Key: "x", Effect: "NoExecute"}}}}},
		{"taints remove", (&SeedTaints{Nodes: []string{"n1"}, Taints: []SeedTaint{{Key: "gpu", Value: "true", Effect: "NoSchedule"}, {Key: "x"}}, Operation: "remove"}).Batch,
			&Batch{Nodes: []string{"n1"}, Seed: true, Changes: &change.Set{Taints: []change.Taint{{Key: "gpu", Effect: "NoSchedule", Remove: true}, {Key: "x", Remove: true}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := tt.got()
			if e != nil {
				t.Fatalf("Batch() = %v", e)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Batch() (-want +got):\n%s", diff)
			}
		})
	}
	if _, e := (&SeedLabels{Operation: "toggle"}).Batch(); e == nil || e.Fields[0].Field != "operation" {
		t.Errorf("operation toggle: error = %v, want a field error on operation", e)
	}
}

// TestSeedBodiesKeepMeaning checks that seed bodies whose fields would
// change meaning if rendered to kubectl syntax are refused with a 422 naming
// the field, and that the harmless ones are accepted as written.
func TestSeedBodiesKeepMeaning(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		taints     bool
		wantFields []string    // refused: these fields, in order
		want       *change.Set // accepted: exactly this change
	}{
		{name: "taint effect with dash does not become a removal", taints: true,
			body:       `{"nodes":["n1"],"taints":[{"key":"gpu","effect":"NoSchedule-"}],"operation":"add"}`,
			wantFields: []string{"taints[0].effect"}},
		{name: "taint key with effect is not that taint", taints: true,
			body:       `{"nodes":["n1"],"taints":[{"key":"gpu:NoSchedule"}]}`,
			wantFields: []string{"taints[0].key", "taints[0].effect"}},
		{name: "taint key with effect on remove", taints: true,
			body:       `{"nodes":["n1"],"taints":[{"key":"gpu:NoSchedule"}],"operation":"remove"}`,
			wantFields: []string{"taints[0].key"}},
		{name: "taint key with equals", taints: true,
			body:       `{"nodes":["n1"],"taints":[{"key":"gpu=true","effect":"NoSchedule"}]}`,
			wantFields: []string{"taints[0].key"}},
		{name: "taint value with colon", taints: true,
			body:       `{"nodes":["n1"],"taints":[{"key":"gpu","value":"x:NoExecute","effect":"NoSchedule"}]}`,
			wantFields: []string{"taints[0].value"}},
		{name: "taint unknown effect", taints: true,
			body:       `{"nodes":["n1"],"taints":[{"key":"a","effect":"NoSchedule"},{"key":"gpu","effect":"Evict"}]}`,
			wantFields: []string{"taints[1].effect"}},
		{name: "taint unknown effect on remove", taints: true,
			body:       `{"nodes":["n1"],"taints":[{"key":"gpu","effect":"NoSchedule-"}],"operation":"remove"}`,
			wantFields: []string{"taints[0].effect"}},
		{name: "taint remove ignores value", taints: true,
			body: `{"nodes":["n1"],"taints":[{"key":"gpu","value":"x:y","effect":"NoSchedule"}],"operation":"remove"}`,
			want: &change.Set{Taints: []change.Taint{{Key: "gpu", Effect: "NoSchedule", Remove: true}}}},
		{name: "label key with equals on remove",
			body:       `{"nodes":["n1"],"labels":{"a=b":""},"operation":"remove"}`,
			wantFields: []string{"labels[0].key"}},
		{name: "label key with equals on add",
			body:       `{"nodes":["n1"],"labels":{"a=b":"c"}}`,
			wantFields: []string{"labels[0].key"}},
		{name: "label key ending in dash",
			body:       `{"nodes":["n1"],"labels":{"team-":"x"}}`,
			wantFields: []string{"labels[0].key"}},
		{name: "label value ending in dash",
			body:       `{"nodes":["n1"],"labels":{"team":"ml-"}}`,
			wantFields: []string{"labels[0].value"}},
		{name: "label value with comma and equals",
			body:       `{"nodes":["n1"],"labels":{"a":"b,c=d"}}`,
			wantFields: []string{"labels[0].value"}},
		{name: "label empty value is kept",
			body: `{"nodes":["n1"],"labels":{"team":""}}`,
			want: &change.Set{Labels: []change.Label{{Key: "team"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b *Batch
			var e *apierror.Error
			if tt.taints {
				var body SeedTaints
				if e := Decode(strings.NewReader(tt.body), &body); e != nil {
					t.Fatalf("Decode: %v", e)
				}
				b, e = body.Batch()
			} else {
				var body SeedLabels
				if e := Decode(strings.NewReader(tt.body), &body); e != nil {
					t.Fatalf("Decode: %v", e)
				}
				b, e = body.Batch()
			}
			if e != nil {
				t.Fatalf("Batch() = %v", e)
			}
			spec, e := b.Validate(DefaultLimits(), change.DefaultProtection())
			if tt.want != nil {
				if e != nil {
					t.Fatalf("Validate() = %v, want accepted", e)
				}
				if diff := cmp.Diff(*tt.want, spec.Set); diff != "" {
					t.Errorf("Validate() set (-want +got):\n%s", diff)
				}
				return
			}
			if e == nil {
				t.Fatalf("Validate() accepted %+v, want 422 on %v", spec.Set, tt.wantFields)
			}
			if e.Status() != http.StatusUnprocessableEntity {
				t.Errorf("status = %d, want 422", e.Status())
			}
			var got []string
			for _, f := range e.Fields {
				got = append(got, f.Field)
			}
			if diff := cmp.Diff(tt.wantFields, got); diff != "" {
				t.Errorf("refused fields (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzBatch feeds arbitrary bodies through Decode and Validate: they must
// never panic, and a body they accept must name a change and a target.
func FuzzBatch(f *testing.F) {
	for _, s := range []string{
		`{"labels":["team=ml","old-"],"nodes":["n1","n2"]}`,
		`{"taints":["gpu=true:NoSchedule","x-"],"selector":"pool=gpu,zone!=c","concurrency":3}`,
		`{"changes":{"labels":[{"key":"a","value":"b"}],"taints":[{"key":"k","effect":"NoSchedule"}]},"all":true,"max_failures":"5%"}`,
		`{"labels":["a=b"],"all":true,"max_failures":10,"dry_run":true,"idempotency_key":"x"}`,
		`{"labels":[""],"nodes":[""]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b Batch
		if e := Decode(strings.NewReader(s), &b); e != nil {
			if e.Status() < 400 || e.Status() > 499 {
				t.Fatalf("Decode(%q) status %d, want 4xx", s, e.Status())
			}
			return
		}
		spec, e := b.Validate(DefaultLimits(), change.DefaultProtection())
		if e != nil {
			if e.Status() != http.StatusUnprocessableEntity || len(e.Fields) == 0 {
				t.Fatalf("Validate(%q) = %+v, want 422 with fields", s, e)
			}
			return
		}
		if len(spec.Set.Labels)+len(spec.Set.Taints) == 0 {
			t.Fatalf("Validate(%q) accepted a batch with no change", s)
		}
		if spec.Nodes == nil && spec.Selector == nil && !spec.All {
			t.Fatalf("Validate(%q) accepted a batch with no target", s)
		}
		if spec.Selector != nil && spec.Selector.Empty() {
			t.Fatalf("Validate(%q) accepted a selector that selects every node without all:true", s)
		}
		if err := exactKeys(s, batchKeys); err != nil {
			t.Fatalf("Decode(%q) accepted a body with %v", s, err)
		}
	})
}

// batchKeys are the top-level keys of a Batch body.
var batchKeys = map[string]bool{
	"labels": true, "taints": true, "changes": true, "nodes": true, "selector": true, "all": true,
	"concurrency": true, "dry_run": true, "idempotency_key": true, "max_failures": true,
}

// exactKeys walks the JSON value s with encoding/json's tokenizer: no
// object may hold a key twice, and the top-level object's keys must be in
// known, exactly as spelled.
func exactKeys(s string, known map[string]bool) error {
	dec := json.NewDecoder(strings.NewReader(s))
	type frame struct {
		keys   map[string]bool
		object bool
		expect bool // the next string is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // not JSON at all: Decode refused it already or will
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, ok := tok.(string); ok && top != nil && top.object && top.expect {
			if top.keys[k] {
				return fmt.Errorf("key %q twice", k)
			}
			if len(stack) == 1 && !known[k] {
				return fmt.Errorf("key %q, which is no field", k)
			}
			top.keys[k] = true
			top.expect = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, object: true, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].expect = true
		}
	}
}

// TestFingerprint: requests that ask for the same thing, however spelled,
// share a fingerprint; requests that differ in anything that changes the
// batch do not.
func TestFingerprint(t *testing.T) {
	fp := func(t *testing.T, body string) string {
		t.Helper()
		var b Batch
		if e := Decode(strings.NewReader(body), &b); e != nil {
			t.Fatalf("Decode(%s): %v", body, e)
		}
		spec, e := b.Validate(DefaultLimits(), change.DefaultProtection())
		if e != nil {
			t.Fatalf("Validate(%s): %v", body, e)
		}
		return spec.Fingerprint()
	}
	base := `{"labels":["team=ml"],"nodes":["n1","n2"],"idempotency_key":"k"}`
	same := []string{
		`{"nodes":["n2","n1"],"labels":["team=ml"],"idempotency_key":"k"}`,
		`{"labels":["team=ml"],"nodes":["n1","n2"],"idempotency_key":"another key"}`,
		`{"changes":{"labels":[{"key":"team","value":"ml"}]},"nodes":["n1","n2"]}`,
		` {"labels": ["team=ml"], "nodes": ["n1", "n2"]} `,
	}
	different := []string{
		`{"labels":["team=ai"],"nodes":["n1","n2"]}`,
		`{"labels":["team=ml"],"nodes":["n1"]}`,
		`{"labels":["team=ml"],"nodes":["n1","n2","n3"]}`,
		`{"labels":["team=ml"],"selector":"a=b"}`,
		`{"labels":["team=ml"],"all":true}`,
		`{"labels":["team=ml"],"nodes":["n1","n2"],"concurrency":2}`,
		`{"labels":["team=ml"],"nodes":["n1","n2"],"dry_run":true}`,
		`{"labels":["team=ml"],"nodes":["n1","n2"],"max_failures":1}`,
		`{"taints":["team=ml:NoSchedule"],"nodes":["n1","n2"]}`,
	}
	want := fp(t, base)
	for _, body := range same {
		if got := fp(t, body); got != want {
			t.Errorf("Fingerprint(%s) = %s, want %s (that of %s)", body, got, want, base)
		}
	}
	seen := map[string]string{want: base}
	for _, body := range different {
		got := fp(t, body)
		if other, ok := seen[got]; ok {
			t.Errorf("Fingerprint(%s) = Fingerprint(%s) = %s, want them different", body, other, got)
		}
		seen[got] = body
	}
	if a, b := fp(t, `{"labels":["a=b"],"selector":"x=1,y=2"}`), fp(t, `{"labels":["a=b"],"selector":"y=2, x=1"}`); a != b {
		t.Errorf("selectors x=1,y=2 and y=2, x=1 have fingerprints %s and %s, want one", a, b)
	}
}

// The codes the tests expect, from the one table.
var (
	codeMalformed = apierror.Kinds[apierror.Malformed].Code
	codeTooLarge  = apierror.Kinds[apierror.TooLarge].Code
	codeInvalid   = apierror.Kinds[apierror.Invalid].Code
)
