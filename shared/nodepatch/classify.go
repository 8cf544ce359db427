package nodepatch

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Class says whether retrying an error can help.
type Class int

// Error classes.
const (
	// Permanent errors are recorded as the node's failure and acknowledged:
	// retrying gives the same answer (node gone, 422, 403, 400, 401).
	Permanent Class = iota
	// Transient errors are returned so the delivery is retried: conflicts
	// left after Patcher's own retries, 429, 5xx, timeouts, broken
	// connections, deadlines.
	Transient
)

// String names the class for logs and result documents.
func (c Class) String() string {
	if c == Transient {
		return "transient"
	}
	return "permanent"
}

// Classify decides whether err is worth retrying. It is the one place that
// decides; callers do not look at status codes themselves. Unknown errors
// are Transient: a retry costs little and the dead-letter topic ends it,
// while a wrong Permanent would fail a node that would have succeeded.
func Classify(err error) Class {
	switch {
	case err == nil:
		return Permanent
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Transient
	case apierrors.IsNotFound(err), apierrors.IsInvalid(err), apierrors.IsForbidden(err),
		apierrors.IsBadRequest(err), apierrors.IsUnauthorized(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err),
		apierrors.IsRequestEntityTooLargeError(err), apierrors.IsGone(err):
		return Permanent
	case apierrors.IsConflict(err), apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err),
		apierrors.IsTimeout(err), apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err),
		apierrors.IsUnexpectedServerError(err):
		return Transient
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if code := status.Status().Code; code >= 400 && code < 500 {
			return Permanent
		}
		return Transient
	}
	// Everything else (broken connections, EOF, DNS, TLS handshakes) is
	// Transient.
	return Transient
}

// RetryAfter returns the delay the API server asked for (Retry-After on a
// 429 or a server timeout), if any.
func RetryAfter(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	s, ok := apierrors.SuggestsClientDelay(err)
	if !ok {
		return 0, false
	}
	return time.Duration(s) * time.Second, true
}
