package request

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Error codes in an error answer's "code".
const (
	CodeMalformed       = "malformed"       // 400: not JSON, unknown field, wrong type
	CodeInvalid         = "invalid"         // 422: well-formed but refused (field errors)
	CodeTooLarge        = "too_large"       // 413: body over the limit
	CodeNotFound        = "not_found"       // 404
	CodeUnauthenticated = "unauthenticated" // 401
	CodeForbidden       = "forbidden"       // 403
	CodeConflict        = "conflict"        // 409
	// CodeIdempotencyMismatch: 409, the idempotency key was used by the
	// same owner for a different request.
	CodeIdempotencyMismatch = "idempotency_mismatch"
	CodeUnavailable         = "unavailable" // 503: a backend failed; safe to retry
	CodeInternal            = "internal"    // 500
)

// FieldError names one refused field, its value and why.
type FieldError struct {
	Field  string `json:"field"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason"`
}

// Error is an API error answer: {"error":{"code","message","fields"}}.
type Error struct {
	Status  int          `json:"-"`
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
}

// Error implements error.
func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = fmt.Sprintf("%s: %s", f.Field, f.Reason)
	}
	return e.Message + ": " + strings.Join(parts, "; ")
}

// Write sends e as a JSON answer.
func (e *Error) Write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error *Error `json:"error"`
	}{e})
}

// Errorf returns an Error with status, code and a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid turns apimachinery field errors into a 422 answer (nil when errs
// is empty).
func Invalid(errs field.ErrorList) *Error {
	if len(errs) == 0 {
		return nil
	}
	e := &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid, Message: "the batch request is invalid"}
	for _, fe := range errs {
		e.Fields = append(e.Fields, FieldError{Field: fe.Field, Value: valueString(fe), Reason: reason(fe)})
	}
	return e
}

func valueString(fe *field.Error) string {
	if fe.BadValue == nil || fe.Type == field.ErrorTypeRequired {
		return ""
	}
	switch v := fe.BadValue.(type) {
	case string:
		return v
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(fe.BadValue)
}

func reason(fe *field.Error) string {
	if fe.Detail != "" {
		return fe.Detail
	}
	return fe.Type.String()
}
