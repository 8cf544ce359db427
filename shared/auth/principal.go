// Package auth verifies OIDC bearer tokens and turns them into principals.
//
// Two kinds of caller are accepted, and nothing else: users holding an ID
// token from one of the configured issuers (signature checked against the
// issuer's JWKS, issuer, audience, expiry), and Cloud Scheduler presenting a
// Google-signed ID token for an allowlisted service account. There is no way
// to switch verification off: locally the stack runs a development issuer
// (emulators/oidcdev) and the very same code path verifies its tokens.
//
// Errors never carry the token, and nothing here logs it.
package auth

import (
	"context"
	"errors"
	"time"
)

// ErrNoToken means the request carried no bearer token.
var ErrNoToken = errors.New("no bearer token")

// ErrInvalidToken means a token was presented and refused. The wrapping error
// says why (expired, wrong audience, ...) without quoting the token.
var ErrInvalidToken = errors.New("invalid token")

// Principal is an authenticated caller.
type Principal struct {
	// Subject is the stable owner id recorded on batches, qualified by the
	// issuer so that the same email from two issuers is two owners. For
	// users of the primary issuer (the first configured) it is the "email"
	// claim when present and email_verified is true (the owner ids batches
	// always had, so existing batches stay their owners'), otherwise
	// "{issuer}#{sub}"; for users of any other issuer it is always
	// "{issuer}#{sub}". For the scheduler it is
	// "scheduler:{service-account-email}".
	Subject   string
	Email     string // verified email, or "" when absent or unverified
	Name      string
	Admin     bool // the admin claim of an admin issuer holds the admin value; never true for the scheduler
	Scheduler bool // a Google-signed token of an allowlisted service account
	Issuer    string
	Expiry    time.Time // when the token stops being valid (long-lived connections re-check)

	// KubeUser and KubeGroups are the caller as the Kubernetes API server
	// sees them (the issuer's KubeMapping; the scheduler: its email), which
	// nodebatch impersonates for every call it makes for the caller.
	// KubeUser is "" when the token maps to no user (ErrNoKubeUser).
	KubeUser   string
	KubeGroups []string
}

// CanSee reports whether p may see and control a batch owned by owner.
func (p Principal) CanSee(owner string) bool {
	return p.Admin || (p.Subject != "" && p.Subject == owner)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal Middleware put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
