package auth

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
)

// Middleware lets through only requests with a valid bearer token, with the
// Principal in their context. Others get 401 (or 503 when the identity
// provider is unreachable) and a JSON body
// {"error":{"code":"unauthenticated","message":…}}.
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
	status, code, challenge := http.StatusUnauthorized, "unauthenticated", `Bearer realm="nodebatch"`
	msg := "a bearer token is required"
	switch {
	case errors.Is(err, ErrUnavailable):
		status, code, challenge = http.StatusServiceUnavailable, "unavailable", ""
		msg = "the identity provider is unavailable; retry later"
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, ErrInvalidToken):
		challenge += `, error="invalid_token"`
		msg = err.Error()
	case !errors.Is(err, ErrNoToken):
		status, code, challenge, msg = http.StatusServiceUnavailable, "unavailable", "", "could not verify the token"
	}
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
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
