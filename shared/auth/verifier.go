package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// ErrUnavailable means a token could not be checked because the identity
// provider's keys could not be fetched: a server-side failure (503), not the
// caller's fault.
var ErrUnavailable = errors.New("identity provider unavailable")

// maxTokenBytes refuses oversized tokens before any parsing.
const maxTokenBytes = 16 << 10

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	byIssuer   map[string][]*checker // by "iss"; scheduler checkers first
	keySets    []*keySet
	adminClaim string
	adminValue string
	log        *slog.Logger
}

// checker verifies tokens of one issuer for one audience.
type checker struct {
	idt       *oidc.IDTokenVerifier
	scheduler bool
	allow     map[string]bool // lower-case service-account emails (scheduler only)
	kube      KubeMapping     // users only
	// qualify makes every owner id "{issuer}#{sub}" (every issuer but the
	// primary, so the same email from two issuers is two owners).
	qualify bool
	// admins: this issuer's admin claim counts (Config.AdminIssuers).
	admins bool
}

// NewVerifier discovers every configured issuer (OIDC discovery, then its
// JWKS) and fails if one cannot be reached or the configuration would accept
// tokens it should not (no issuer, no audience, an allowlist made moot).
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	v := &Verifier{
		byIssuer:   map[string][]*checker{},
		adminClaim: cfg.AdminClaim,
		adminValue: cfg.AdminValue,
		log:        cfg.Logger,
	}
	keySets := map[string]*keySet{}
	add := func(issuer, audience string, c *checker) error {
		ks, ok := keySets[issuer]
		if !ok {
			var err error
			if ks, err = discover(ctx, client, issuer); err != nil {
				return err
			}
			keySets[issuer] = ks
			v.keySets = append(v.keySets, ks)
		}
		c.idt = oidc.NewVerifier(issuer, ks, &oidc.Config{
			ClientID:             audience,
			SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256},
		})
		v.byIssuer[issuer] = append(v.byIssuer[issuer], c)
		return nil
	}
	if s := cfg.Scheduler; s != nil {
		c := &checker{scheduler: true, allow: map[string]bool{}}
		for _, e := range s.Allowlist {
			c.allow[strings.ToLower(e)] = true
		}
		if err := add(s.IssuerURL, s.Audience, c); err != nil {
			return nil, fmt.Errorf("new verifier: scheduler issuer: %w", err)
		}
	}
	admins := map[string]bool{}
	for _, u := range cfg.AdminIssuers {
		admins[u] = true
	}
	for i, is := range cfg.Issuers {
		c := &checker{kube: is.Kube, qualify: i > 0, admins: admins[is.URL]}
		if err := add(is.URL, is.Audience, c); err != nil {
			return nil, fmt.Errorf("new verifier: %w", err)
		}
	}
	return v, nil
}

func validate(cfg *Config) error {
	if len(cfg.Issuers) == 0 && cfg.Scheduler == nil {
		return errors.New("no issuer configured (there is no unauthenticated mode)")
	}
	seen := map[ClaimMapping]string{}
	for i := range cfg.Issuers {
		is := &cfg.Issuers[i]
		if is.URL == "" || is.Audience == "" {
			return fmt.Errorf("issuer %q: URL and audience are required", is.URL)
		}
		is.Kube.defaults()
		// The same email from two issuers must be two Kubernetes users.
		if other, ok := seen[is.Kube.Username]; ok && other != is.URL {
			return fmt.Errorf("issuers %q and %q map to Kubernetes users with the same username claim and prefix %q: give each its own prefix (%s)", other, is.URL, is.Kube.Username.Prefix, EnvClaimMappings)
		}
		seen[is.Kube.Username] = is.URL
	}
	if len(cfg.AdminIssuers) == 0 && len(cfg.Issuers) > 0 {
		cfg.AdminIssuers = []string{cfg.Issuers[0].URL}
	}
	for _, u := range cfg.AdminIssuers {
		if !slices.ContainsFunc(cfg.Issuers, func(is IssuerConfig) bool { return is.URL == u }) {
			return fmt.Errorf("admin issuer %q is not a configured user issuer", u)
		}
	}
	if cfg.AdminClaim == "" {
		cfg.AdminClaim = "roles"
	}
	if cfg.AdminValue == "" {
		cfg.AdminValue = "admin"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := cfg.Scheduler
	if s == nil {
		return nil
	}
	if s.IssuerURL == "" {
		s.IssuerURL = GoogleIssuer
	}
	if s.Audience == "" || len(s.Allowlist) == 0 {
		return errors.New("scheduler: audience and a non-empty allowlist are required")
	}
	for _, is := range cfg.Issuers {
		if is.URL == s.IssuerURL && is.Audience == s.Audience {
			return errors.New("scheduler: a user issuer with the same issuer and audience would accept any account, bypassing the allowlist")
		}
	}
	return nil
}

// discover reads the issuer's discovery document and primes its key set.
func discover(ctx context.Context, client *http.Client, issuer string) (*keySet, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return nil, fmt.Errorf("discover issuer %q: %w", issuer, err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return nil, fmt.Errorf("discover issuer %q: no jwks_uri", issuer)
	}
	ks := &keySet{url: meta.JWKSURI, client: client, minRefresh: minRefresh}
	if _, err := ks.refresh(ctx); err != nil {
		return nil, fmt.Errorf("discover issuer %q: %w", issuer, err)
	}
	return ks, nil
}

// Verify checks rawToken and returns who it names. Errors wrap ErrNoToken,
// ErrInvalidToken (with a short reason) or ErrUnavailable, and never contain
// the token.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Principal, error) {
	if rawToken == "" {
		return Principal{}, fmt.Errorf("verify token: %w", ErrNoToken)
	}
	if len(rawToken) > maxTokenBytes {
		return Principal{}, invalid("too large")
	}
	iss, ok := unverifiedIssuer(rawToken)
	if !ok {
		return Principal{}, invalid("malformed")
	}
	checkers := v.byIssuer[routeIssuer(iss)]
	if len(checkers) == 0 {
		return Principal{}, invalid("unknown issuer")
	}
	reason := ""
	for _, c := range checkers {
		p, why, err := v.check(ctx, c, rawToken)
		if err != nil {
			return Principal{}, err
		}
		if why == "" {
			return p, nil
		}
		if reason == "" || reason == reasonAudience {
			reason = why // prefer the reason of the checker whose audience matched
		}
	}
	return Principal{}, invalid(reason)
}

const reasonAudience = "wrong audience"

func invalid(reason string) error {
	return fmt.Errorf("verify token: %w: %s", ErrInvalidToken, reason)
}

// check returns a principal, or a refusal reason, or an error that is not
// the token's fault (context done, provider unreachable).
func (v *Verifier) check(ctx context.Context, c *checker, raw string) (Principal, string, error) {
	fp := &fetchProblem{}
	tok, err := c.idt.Verify(context.WithValue(ctx, fetchProblemKey{}, fp), raw)
	if err != nil {
		if ctx.Err() != nil {
			return Principal{}, "", fmt.Errorf("verify token: %w", ctx.Err())
		}
		if fp.err != nil {
			return Principal{}, "", fmt.Errorf("verify token: %w: %w", ErrUnavailable, fp.err)
		}
		return Principal{}, classify(err), nil
	}
	var cl claims
	if err := tok.Claims(&cl.std); err != nil {
		return Principal{}, "malformed claims", nil
	}
	if err := tok.Claims(&cl.all); err != nil {
		return Principal{}, "malformed claims", nil
	}
	email := ""
	if cl.std.EmailVerified {
		email = cl.std.Email
	}
	p := Principal{Email: email, Name: cl.std.Name, Issuer: tok.Issuer, Expiry: tok.Expiry}
	if c.scheduler {
		if email == "" {
			return Principal{}, "no verified email", nil
		}
		if !c.allow[strings.ToLower(email)] {
			return Principal{}, "service account not allowlisted", nil
		}
		p.Scheduler = true
		p.Subject = "scheduler:" + strings.ToLower(email)
		p.KubeUser = strings.ToLower(email) // GKE: a Google service account is its email
		return p, "", nil
	}
	switch {
	case email != "" && !c.qualify && ownerSafe(email):
		p.Subject = email
	case tok.Subject != "":
		p.Subject = tok.Issuer + "#" + tok.Subject
	default:
		return Principal{}, "no subject", nil
	}
	p.Admin = c.admins && hasRole(cl.all[v.adminClaim], v.adminValue)
	p.KubeUser, p.KubeGroups = c.kube.kubeUser(cl.all, bool(cl.std.EmailVerified))
	return p, "", nil
}

// ownerSafe reports whether a verified email can be an owner id as it is:
// not one that could be read as another kind of owner id ("{issuer}#{sub}",
// "scheduler:{email}").
func ownerSafe(email string) bool {
	return !strings.Contains(email, "#") && !strings.HasPrefix(email, "scheduler:")
}

type claims struct {
	std struct {
		Email         string   `json:"email"`
		EmailVerified flexBool `json:"email_verified"`
		Name          string   `json:"name"`
	}
	all map[string]json.RawMessage
}

// flexBool accepts true and "true": some providers send email_verified as a string.
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true", `"true"`:
		*b = true
	default:
		*b = false
	}
	return nil
}

// hasRole reports whether raw (a string, space-separated string or array of
// strings) holds want.
func hasRole(raw json.RawMessage, want string) bool {
	var roles []string
	var s string
	if json.Unmarshal(raw, &s) == nil {
		roles = strings.Fields(s)
	} else if json.Unmarshal(raw, &roles) != nil {
		return false
	}
	for _, r := range roles {
		if r == want {
			return true
		}
	}
	return false
}

// classify turns a go-oidc error into a fixed reason, so error text never
// echoes attacker-controlled claim values.
func classify(err error) string {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return "expired"
	case strings.Contains(msg, "expected audience"):
		return reasonAudience
	case strings.Contains(msg, "nbf"):
		return "not yet valid"
	case strings.Contains(msg, "different provider"):
		return "wrong issuer"
	case strings.Contains(msg, "malformed jwt"):
		return "malformed or unsupported algorithm"
	case strings.Contains(msg, "verify signature"):
		return "bad signature"
	default:
		return "rejected"
	}
}

// routeIssuer maps the "iss" of a token to the configured issuer whose keys
// check it. Google sometimes writes its issuer without the scheme; go-oidc
// accepts that form for Google only, and so do we.
func routeIssuer(iss string) string {
	if iss == "accounts.google.com" {
		return GoogleIssuer
	}
	return iss
}

// unverifiedIssuer reads "iss" from the payload without checking anything,
// only to pick which issuer's keys to check the token against.
func unverifiedIssuer(raw string) (string, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil || c.Iss == "" {
		return "", false
	}
	return c.Iss, true
}

// Authenticate verifies the "Authorization: Bearer …" token of r.
func (v *Verifier) Authenticate(r *http.Request) (Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return Principal{}, err
	}
	return v.Verify(r.Context(), tok)
}

// BearerToken extracts the token of an "Authorization: Bearer …" header.
func BearerToken(r *http.Request) (string, error) {
	hs := r.Header.Values("Authorization")
	switch {
	case len(hs) == 0:
		return "", fmt.Errorf("read bearer token: %w", ErrNoToken)
	case len(hs) > 1:
		return "", fmt.Errorf("read bearer token: %w: several Authorization headers", ErrInvalidToken)
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(hs[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("read bearer token: %w", ErrNoToken)
	}
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", fmt.Errorf("read bearer token: %w", ErrNoToken)
	}
	return tok, nil
}
