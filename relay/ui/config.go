package ui

import (
	"encoding/json"
	"net/http"

	"github.com/nodebatch/nodebatch/shared/apierror"
)

// Config is what the pages learn from the server at /config.json: how to
// sign in and which optional API features exist. The relay's main fills it
// from its settings; nothing here reads the environment.
type Config struct {
	// Issuer is the OIDC issuer URL the UI signs in against.
	Issuer string `json:"issuer"`
	// ClientID is the OAuth client id used for the authorization-code flow.
	ClientID string `json:"client_id,omitempty"`
	// Scopes are requested in the authorization-code flow ("openid" is always added).
	Scopes []string `json:"scopes,omitempty"`
	// DevIssuer is true when Issuer is the local development issuer
	// (emulators/oidcdev): the UI then offers "sign in as" DevUsers and
	// mints tokens from DevTokenURL instead of running the OIDC flow.
	DevIssuer bool `json:"dev_issuer"`
	// DevTokenURL is the dev issuer's token-minting endpoint (POST).
	DevTokenURL string `json:"dev_token_url,omitempty"`
	// DevUsers are the identities offered by "sign in as".
	DevUsers []DevUser `json:"dev_users,omitempty"`
	// APIBase is prefixed to /v1/... API paths; empty means same origin
	// (the relay proxies the batch API).
	APIBase string `json:"api_base"`
	// Features lists optional API features that exist on this server:
	// "cancel", "retry", "revert", "history", "preview". The UI shows a
	// control only when its feature is listed.
	Features []string `json:"features"`
	// ProtectedPrefixes are label/taint key prefixes the API refuses, so the
	// editor can refuse them before submit too.
	ProtectedPrefixes []string `json:"protected_prefixes,omitempty"`
	// AllowedPrefixes are exceptions to ProtectedPrefixes.
	AllowedPrefixes []string `json:"allowed_prefixes,omitempty"`
	// MaxConcurrency is the global cap the API applies; 0 if unknown.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// RoleClaim is the token claim holding roles ("roles" when empty), so
	// the UI knows an admin (who may list everyone's batches).
	RoleClaim string `json:"role_claim,omitempty"`
}

// DevUser is one identity offered by the development sign-in.
type DevUser struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// ConfigHandler serves cfg as JSON. Mount it at /config.json.
func ConfigHandler(cfg Config) http.Handler {
	if cfg.Features == nil {
		cfg.Features = []string{}
	}
	body, err := json.Marshal(cfg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			apierror.Write(w, apierror.New(apierror.MethodNotAllowed, "use GET"))
			return
		}
		if err != nil {
			apierror.Write(w, apierror.Wrap(apierror.Internal, err, "encode config: %v", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})
}
