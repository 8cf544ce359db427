package auth

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/nodebatch/nodebatch/shared/apierror"
)

// Middleware lets through only requests with a valid bearer token, with the
// Principal in their context. Others get 401 (or 503 when the identity
// provider is unreachable) and a JSON body
// {"error":{"code":"unauthenticated","message":…}} (HTTPError).
func Middleware(v *Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := v.Authenticate(r)
		if err == nil {
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
			return
		}
		WriteError(w, err)
		v.log.LogAttrs(r.Context(), levelFor(err), "request refused",
			slog.String("path", r.URL.Path), slog.String("reason", err.Error()))
	})
}

// WriteError writes the HTTP answer for an error returned by Verify or
// Authenticate (the relay uses it for refused WebSocket upgrades).
func WriteError(w http.ResponseWriter, err error) {
	apierror.Write(w, HTTPError(err))
}

// Challenge is the WWW-Authenticate challenge of a 401 (RFC 6750).
const Challenge = `Bearer realm="nodebatch"`

// HTTPError is the answer to an error returned by Verify or Authenticate:
// 401 unauthenticated with a Bearer challenge, or 503 unavailable when
// the token could not be checked.
func HTTPError(err error) *apierror.Error {
	challenge := Challenge
	e := apierror.Wrap(apierror.Unauthenticated, err, "a bearer token is required")
	switch {
	case errors.Is(err, ErrUnavailable):
		e = apierror.Wrap(apierror.Unavailable, err, "the identity provider is unavailable; retry later")
		e.Header = http.Header{"Retry-After": {"5"}}
		challenge = ""
	case errors.Is(err, ErrInvalidToken):
		challenge += `, error="invalid_token"`
		e.Message = err.Error()
	case !errors.Is(err, ErrNoToken):
		e = apierror.Wrap(apierror.Unavailable, err, "could not verify the token")
		challenge = ""
	}
	if e.Header == nil {
		e.Header = http.Header{}
	}
	if challenge != "" {
		e.Header.Set("WWW-Authenticate", challenge)
	}
	e.Header.Set("Cache-Control", "no-store")
	return e
}

func levelFor(err error) slog.Level {
	switch {
	case errors.Is(err, ErrInvalidToken):
		return slog.LevelWarn
	case errors.Is(err, ErrNoToken):
		return slog.LevelInfo
	default:
		return slog.LevelError
	}
}
