package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type target struct {
	Labels  []string          `json:"labels"`
	All     bool              `json:"all"`
	Changes *changes          `json:"changes,omitempty"`
	Extra   map[string]string `json:"extra,omitempty"`
}

type changes struct {
	Key string `json:"key"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	tests := []struct {
		name    string
		in      string
		want    target
		wantErr error // compared with errors.Is, or a *Error by value
		wantAs  any   // a pointer for errors.As
	}{
		{name: "plain", in: `{"labels":["x=1"],"all":true}`, want: target{Labels: []string{"x=1"}, All: true}},
		{name: "nested", in: ` {"changes":{"key":"k"},"extra":{"a":"1","A":"2"}} `, want: target{Changes: &changes{Key: "k"}, Extra: map[string]string{"a": "1", "A": "2"}}},
		{name: "key in the wrong case", in: `{"labels":["x=1"],"ALL":true}`, wantErr: &Error{Field: "ALL"}},
		{name: "duplicate key", in: `{"all":false,"all":true}`, wantErr: &Error{Field: "all", Duplicate: true}},
		{name: "duplicate nested key", in: `{"changes":{"key":"a","key":"b"}}`, wantErr: &Error{Field: "changes.key", Duplicate: true}},
		{name: "duplicate map key", in: `{"extra":{"a":"1","a":"2"}}`, wantErr: &Error{Field: "extra.a", Duplicate: true}},
		{name: "nested key in the wrong case", in: `{"changes":{"Key":"a"}}`, wantErr: &Error{Field: "changes.Key"}},
		{name: "unknown field", in: `{"nope":1}`, wantAs: new(error)},
		{name: "two values", in: `{}{}`, wantErr: ErrTrailing},
		{name: "trailing garbage", in: `{} x`, wantErr: ErrTrailing},
		{name: "empty", in: ``, wantErr: io.EOF},
		{name: "cut", in: `{"all":`, wantErr: io.ErrUnexpectedEOF},
		{name: "syntax", in: `{all}`, wantAs: &syntax},
		{name: "type", in: `{"all":"yes"}`, wantAs: &typ},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got target
			err := Decode([]byte(tt.in), &got)
			switch {
			case tt.wantAs != nil:
				if err == nil {
					t.Fatalf("Decode(%s) error = nil, want one", tt.in)
				}
				if p, ok := tt.wantAs.(*error); !ok || p == nil {
					break
				}
				if !errors.As(err, tt.wantAs) {
					t.Fatalf("Decode(%s) error = %v (%T), want %T", tt.in, err, err, tt.wantAs)
				}
			case tt.wantErr != nil:
				var want *Error
				if errors.As(tt.wantErr, &want) {
					var se *Error
					if !errors.As(err, &se) {
						t.Fatalf("Decode(%s) error = %v, want %v", tt.in, err, tt.wantErr)
					}
					if diff := cmp.Diff(want, se); diff != "" {
						t.Errorf("Decode(%s) error (-want +got):\n%s", tt.in, diff)
					}
					return
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Decode(%s) error = %v, want %v", tt.in, err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("Decode(%s) error = %v", tt.in, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Decode(%s) (-want +got):\n%s", tt.in, diff)
				}
			}
		})
	}
}

func TestDecodeNeedsAPointer(t *testing.T) {
	t.Parallel()
	if err := Decode([]byte(`{}`), target{}); err == nil {
		t.Error("Decode into a non-pointer succeeded, want an error")
	}
}

// keysStrict reports whether every object in data has distinct keys, each
// matching a field of target exactly (top level and changes).
func keysStrict(t *testing.T, data []byte) bool {
	t.Helper()
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return true // not an object: nothing to check
	}
	seen := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return true
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		k := tok.(string)
		switch k {
		case "labels", "all", "changes", "extra":
		default:
			return false
		}
		if seen[k] {
			return false
		}
		seen[k] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return true
		}
	}
	return true
}

// FuzzDecode: no panic on any input; what is accepted is what encoding/json
// decodes, and its top-level keys are exact and distinct.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"labels":["x=1"],"all":true}`, `{"labels":["x=1"],"ALL":true}`, `{"all":false,"all":true}`,
		`{"changes":{"key":"a","key":"b"}}`, `{}{}`, ``, `null`, `[]`, `{"extra":{"a":"1","a":"2"}}`,
		"{\"a\u0000ll\":true}", `{"\u0061ll":true}`, `{"al\u212a":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got target
		if err := Decode(data, &got); err != nil {
			return
		}
		var std target
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("Decode accepted %q, which encoding/json refuses: %v", data, err)
		}
		if diff := cmp.Diff(std, got); diff != "" {
			t.Errorf("Decode(%q) differs from encoding/json (-want +got):\n%s", data, diff)
		}
		if !keysStrict(t, data) {
			t.Errorf("Decode accepted %q: a key is inexact or given twice", data)
		}
	})
}
