package nodepatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Resource: "nodes"}
	wrap := func(err error) error { return fmt.Errorf("patch node %q: %w", "n", err) }
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"not found", wrap(apierrors.NewNotFound(gr, "n")), Permanent},
		{"invalid", wrap(apierrors.NewInvalid(schema.GroupKind{Kind: "Node"}, "n", field.ErrorList{field.Invalid(field.NewPath("metadata", "labels"), "bad key", "x")})), Permanent},
		{"forbidden", wrap(apierrors.NewForbidden(gr, "n", errors.New("no"))), Permanent},
		{"bad request", wrap(apierrors.NewBadRequest("no")), Permanent},
		{"unauthorized", wrap(apierrors.NewUnauthorized("no")), Permanent},
		{"other 4xx", wrap(apierrors.NewGenericServerResponse(418, "patch", gr, "n", "", 0, false)), Permanent},
		{"conflict", wrap(apierrors.NewConflict(gr, "n", errors.New("modified"))), Transient},
		{"429", wrap(apierrors.NewTooManyRequests("slow down", 2)), Transient},
		{"500", wrap(apierrors.NewInternalError(errors.New("boom"))), Transient},
		{"503", wrap(apierrors.NewServiceUnavailable("down")), Transient},
		{"502", wrap(apierrors.NewGenericServerResponse(502, "patch", gr, "n", "", 0, false)), Transient},
		{"server timeout", wrap(apierrors.NewServerTimeout(gr, "patch", 1)), Transient},
		{"gateway timeout", wrap(apierrors.NewTimeoutError("slow", 1)), Transient},
		{"deadline", wrap(context.DeadlineExceeded), Transient},
		{"canceled", wrap(context.Canceled), Transient},
		{"conn refused", wrap(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), Transient},
		{"eof", wrap(io.ErrUnexpectedEOF), Transient},
		{"unknown", errors.New("something"), Transient},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%s: %v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want time.Duration
		ok   bool
	}{
		{fmt.Errorf("x: %w", apierrors.NewTooManyRequests("slow down", 3)), 3 * time.Second, true},
		{apierrors.NewInternalError(errors.New("boom")), 0, false},
		{errors.New("x"), 0, false},
		{nil, 0, false},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.err)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RetryAfter(%v) = %v, %v, want %v, %v", tt.err, got, ok, tt.want, tt.ok)
		}
	}
}
