// Package apierror is nodebatch's one error model over HTTP: a handler
// returns an error, the error has a Kind, one table (Kinds) gives each
// kind its HTTP status and its code, and one writer (Write) renders every
// error answer as {"error":{"code","message",…}} — for the batch API, the
// relay and the UI endpoints alike. After golang/pkgsite's derrors: the
// code and the status of an answer are decided here, never by the handler
// that refuses.
package apierror

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Kind is what went wrong, as a client must understand it.
type Kind int

// The kinds. Kinds maps each to its status and code; docs/api.md's error
// table lists them (TestDocsTable keeps the two equal).
const (
	Internal              Kind = iota // 500: a bug or an unexpected failure
	Malformed                         // 400: not JSON, unknown or repeated field, wrong type, bad query or path parameter
	Unauthenticated                   // 401: no or invalid credential
	Forbidden                         // 403
	NotFound                          // 404
	MethodNotAllowed                  // 405
	Conflict                          // 409: the batch's state forbids the control
	IdempotencyMismatch               // 409: the idempotency key names a different request
	ConfirmationRequired              // 409: the confirmation guard holds the batch back
	TooLarge                          // 413: body over the limit
	Invalid                           // 422: well-formed but refused, with field errors
	RateLimited                       // 429: a per-user limit (Limit says which)
	BadGateway                        // 502: the relay could not reach the batch API
	KubernetesUnavailable             // 502: the UI's node list could not reach the API server
	Unavailable                       // 503: a backend failed; retry
)

// Class is a kind's place on the wire.
type Class struct {
	Status int
	Code   string
}

// Kinds is the one table of kinds → status and code.
var Kinds = map[Kind]Class{
	Internal:              {http.StatusInternalServerError, "internal"},
	Malformed:             {http.StatusBadRequest, "malformed"},
	Unauthenticated:       {http.StatusUnauthorized, "unauthenticated"},
	Forbidden:             {http.StatusForbidden, "forbidden"},
	NotFound:              {http.StatusNotFound, "not_found"},
	MethodNotAllowed:      {http.StatusMethodNotAllowed, "method_not_allowed"},
	Conflict:              {http.StatusConflict, "conflict"},
	IdempotencyMismatch:   {http.StatusConflict, "idempotency_mismatch"},
	ConfirmationRequired:  {http.StatusConflict, "confirmation_required"},
	TooLarge:              {http.StatusRequestEntityTooLarge, "too_large"},
	Invalid:               {http.StatusUnprocessableEntity, "invalid"},
	RateLimited:           {http.StatusTooManyRequests, "rate_limited"},
	BadGateway:            {http.StatusBadGateway, "unavailable"},
	KubernetesUnavailable: {http.StatusBadGateway, "kubernetes_unavailable"},
	Unavailable:           {http.StatusServiceUnavailable, "unavailable"},
}

// FieldError names one refused field (a body key's path, a query or path
// parameter), its value and why.
type FieldError struct {
	Field  string `json:"field"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason"`
}

// Limit is the per-user limit a RateLimited error hit.
type Limit struct {
	Name       string        // e.g. "batches_per_user_per_minute"
	PerMinute  int           // 0: not a per-minute limit (not shown)
	Burst      int           // 0: not shown
	RetryAfter time.Duration // sent as Retry-After, in whole seconds (at least 1)
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, at least 1.
func (l *Limit) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(l.RetryAfter.Seconds())))
}

// Error is an error answer. Build it with New, Wrap or the helpers; the
// zero Kind is Internal.
type Error struct {
	Kind    Kind
	Message string
	Fields  []FieldError
	// Limit is the limit a RateLimited error hit (its members join the
	// body, and Retry-After is sent).
	Limit *Limit
	// Details, when not nil, is a value that encodes as a JSON object
	// whose members follow the standard ones in the body (the
	// confirmation guard's nodes, reasons and impact).
	Details any
	// KeyOrder sends the body's members in key order instead of the
	// standard order (code, message, fields, limit…). Four relay refusals
	// were first sent that way, encoded from Go maps, and keep their bytes
	// (relay/testdata/golden): their task_id field errors and their
	// per-user connection and ticket limits.
	KeyOrder bool
	// Header holds headers the answer carries (WWW-Authenticate,
	// Cache-Control, Retry-After of an unavailable identity provider).
	Header http.Header
	// Err is the cause, for logs and errors.Is; never shown to clients.
	Err error
}

// New returns an error of kind with a formatted message.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind with a formatted message and cause err.
func Wrap(kind Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...), Err: err}
}

// Field returns an error of kind naming one field.
func Field(kind Kind, field, value, reason, format string, args ...any) *Error {
	e := New(kind, format, args...)
	e.Fields = []FieldError{{Field: field, Value: value, Reason: reason}}
	return e
}

// Limited returns a RateLimited error for limit.
func Limited(limit Limit, format string, args ...any) *Error {
	e := New(RateLimited, format, args...)
	e.Limit = &limit
	return e
}

// Status is the HTTP status of e's kind.
func (e *Error) Status() int { return class(e.Kind).Status }

// Code is the code of e's kind.
func (e *Error) Code() string { return e.Kind.Code() }

// Code is k's code on the wire (Kinds); clients compare an answer's code
// with it instead of a literal.
func (k Kind) Code() string { return class(k).Code }

func class(k Kind) Class {
	if c, ok := Kinds[k]; ok {
		return c
	}
	return Kinds[Internal]
}

// Error implements error: the message and each field's reason.
func (e *Error) Error() string {
	s := e.Message
	for i, f := range e.Fields {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		s += sep + f.Field + ": " + f.Reason
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf is the kind of err: the kind of the first *Error in its chain,
// Internal when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// From returns err as an *Error: the first in its chain, or an Internal
// error wrapping it (its text is not shown).
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Wrap(Internal, err, "internal error")
}

// Write sends err as the error answer: the kind's status, e.Header, and
// {"error":{…}}. Anything but an *Error is answered 500 internal without
// its text.
func Write(w http.ResponseWriter, err error) {
	e := From(err)
	h := w.Header()
	for k, v := range e.Header {
		h[k] = v
	}
	if e.Limit != nil {
		h.Set("Retry-After", strconv.Itoa(e.Limit.RetryAfterSeconds()))
	}
	body, merr := e.body()
	if merr != nil {
		e = Wrap(Internal, merr, "encode error answer")
		body, _ = e.body()
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(e.Status())
	_, _ = w.Write(body)
}

// HandlerFunc is an HTTP handler that returns its error answer instead of
// writing it; ServeHTTP writes it with Write.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// ServeHTTP implements http.Handler.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		Write(w, err)
	}
}
