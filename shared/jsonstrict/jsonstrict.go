// Package jsonstrict decodes a JSON body strictly: exactly one JSON value,
// no unknown fields, object keys matched case-sensitively, and no key given
// twice. Go's encoding/json matches keys case-insensitively and keeps the
// last of duplicate keys, so {"labels":["x=1"],"ALL":true} would set All;
// a request read here is refused instead.
//
// Decode runs encoding/json first (its errors, *json.SyntaxError and
// *json.UnmarshalTypeError, keep their offsets and field names for callers
// to word), then sigs.k8s.io/json's strict mode (the decoder Kubernetes
// uses) for the case-sensitive and duplicate-key checks, whose failures are
// returned as *Error.
package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	sigsjson "sigs.k8s.io/json"
)

// ErrTrailing is returned when data holds more than one JSON value.
var ErrTrailing = errors.New("more than one JSON value")

// Error is a strictness failure: Field (a path such as "changes.labels[0]"
// or "ALL") is not a field of the target, compared case-sensitively
// (Duplicate false), or is given more than once (Duplicate true).
type Error struct {
	Field     string
	Duplicate bool
}

func (e *Error) Error() string {
	if e.Duplicate {
		return fmt.Sprintf("duplicate field %q", e.Field)
	}
	return fmt.Sprintf("unknown field %q (field names are case-sensitive)", e.Field)
}

// Decode stores the one JSON value in data in v (a non-nil pointer). Its
// errors are encoding/json's (syntax, type, unknown field, io.EOF and
// io.ErrUnexpectedEOF for empty or cut input), ErrTrailing, or *Error.
// Nothing is promised about v when it fails.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailing
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("jsonstrict: Decode needs a non-nil pointer, got %T", v)
	}
	fresh := reflect.New(rv.Elem().Type()).Interface()
	strict, err := sigsjson.UnmarshalStrict(data, fresh, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil { // encoding/json accepted it; the fork should too
		return fmt.Errorf("strict decode: %w", err)
	}
	if len(strict) == 0 {
		return nil
	}
	return toError(strict[0])
}

func toError(err error) *Error {
	var fe sigsjson.FieldError
	field := ""
	if errors.As(err, &fe) {
		field = fe.FieldPath()
	}
	return &Error{Field: field, Duplicate: strings.HasPrefix(err.Error(), "duplicate field")}
}
