package oidcdev

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultRefreshTTL is how long a refresh token stays usable when
// Options.RefreshTTL is zero.
const DefaultRefreshTTL = 24 * time.Hour

// CodeTTL is how long an authorization code may wait for its exchange.
const CodeTTL = time.Minute

// maxGrants bounds the codes and refresh tokens the issuer remembers, so a
// loop of sign-ins cannot grow its memory without end (the oldest go first).
const maxGrants = 10000

// User is one development identity the sign-in page offers.
type User struct {
	Name   string   // "sub" and "name"; the e-mail is Name@example.com
	Role   string   // "user" (no roles claim) or a role such as "admin"
	Groups []string // "groups"
}

// DefaultUsers are offered when Options.Users is empty: the identities the
// local stack's tests and `make run` sign in as.
var DefaultUsers = []User{{Name: "alice", Role: "user"}, {Name: "bob", Role: "user"}, {Name: "admin", Role: "admin"}}

// Options configures the authorization-code and refresh-token grants.
type Options struct {
	// Users are the identities offered by the sign-in page (DefaultUsers
	// when empty).
	Users []User
	// RedirectOrigins are origins (scheme://host:port) a redirect URI may
	// have besides loopback ones, e.g. the relay UI's origin when it is not
	// served from a loopback address.
	RedirectOrigins []string
	// TokenTTL is the lifetime of ID tokens issued by the grants
	// (DefaultTTL when zero). A short one exercises renewal.
	TokenTTL time.Duration
	// RefreshTTL is the lifetime of a refresh token (DefaultRefreshTTL when zero).
	RefreshTTL time.Duration
}

// Configure replaces the grant options. It refuses a bad user name, origin
// or lifetime and then changes nothing.
func (i *Issuer) Configure(o Options) error {
	if len(o.Users) == 0 {
		o.Users = DefaultUsers
	}
	seen := map[string]bool{}
	for _, u := range o.Users {
		if !validName(u.Name) {
			return fmt.Errorf("oidcdev: user name %q: want 1-64 letters, digits, '.', '_' or '-'", u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("oidcdev: user %q listed twice", u.Name)
		}
		seen[u.Name] = true
	}
	origins := map[string]bool{}
	for _, s := range o.RedirectOrigins {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("oidcdev: redirect origin %q: want scheme://host[:port]", s)
		}
		origins[u.Scheme+"://"+u.Host] = true
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTTL
	}
	if o.TokenTTL < time.Second || o.TokenTTL > MaxTTL {
		return fmt.Errorf("oidcdev: token lifetime %s outside [1s, %s]", o.TokenTTL, MaxTTL)
	}
	if o.RefreshTTL == 0 {
		o.RefreshTTL = DefaultRefreshTTL
	}
	if o.RefreshTTL < time.Second || o.RefreshTTL > 30*24*time.Hour {
		return fmt.Errorf("oidcdev: refresh token lifetime %s outside [1s, 720h]", o.RefreshTTL)
	}
	g := &i.grants
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users = append([]User(nil), o.Users...)
	g.origins = origins
	g.tokenTTL, g.refreshTTL = o.TokenTTL, o.RefreshTTL
	return nil
}

// SetTokenTTL changes the lifetime of ID tokens issued from now on (tests
// shorten it to see a session renewed mid-way).
func (i *Issuer) SetTokenTTL(d time.Duration) error {
	if d < time.Second || d > MaxTTL {
		return fmt.Errorf("oidcdev: token lifetime %s outside [1s, %s]", d, MaxTTL)
	}
	i.grants.mu.Lock()
	defer i.grants.mu.Unlock()
	i.grants.tokenTTL = d
	return nil
}

// RevokeRefreshTokens forgets every refresh token, as an identity provider
// does when a session ends: the next renewal needs the user again.
func (i *Issuer) RevokeRefreshTokens() {
	i.grants.mu.Lock()
	defer i.grants.mu.Unlock()
	i.grants.refresh = map[string]*refreshToken{}
}

// Users returns the identities the sign-in page offers.
func (i *Issuer) Users() []User {
	i.grants.mu.Lock()
	defer i.grants.mu.Unlock()
	return append([]User(nil), i.grants.users...)
}

// grants is the issuer's memory of authorization codes and refresh tokens.
type grants struct {
	mu         sync.Mutex
	now        func() time.Time // tests move the clock
	users      []User
	origins    map[string]bool
	tokenTTL   time.Duration
	refreshTTL time.Duration
	codes      map[string]*authCode
	refresh    map[string]*refreshToken
}

func (g *grants) init() {
	g.now = time.Now
	g.users = DefaultUsers
	g.origins = map[string]bool{}
	g.tokenTTL, g.refreshTTL = DefaultTTL, DefaultRefreshTTL
	g.codes = map[string]*authCode{}
	g.refresh = map[string]*refreshToken{}
}

// session is what a code or a refresh token stands for: who signed in, to
// which client, with which scopes.
type session struct {
	user     User
	clientID string
	scope    string
	// family names the chain of refresh tokens of one sign-in: a reused
	// (already rotated) token revokes the whole chain (OAuth 2.0 Security
	// BCP, refresh token rotation).
	family string
}

type authCode struct {
	session
	redirectURI string
	challenge   string
	nonce       string
	expires     time.Time
	used        bool
}

type refreshToken struct {
	session
	expires time.Time
	used    bool
}

// errGrant is an OAuth2 error answer (RFC 6749 §5.2).
type errGrant struct {
	code, description string
}

func (e *errGrant) Error() string { return e.code + ": " + e.description }

func invalidGrant(format string, a ...any) error {
	return &errGrant{"invalid_grant", fmt.Sprintf(format, a...)}
}

func (g *grants) user(name string) (User, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, u := range g.users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// newCode remembers a code for a signed-in user.
func (g *grants) newCode(c authCode) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.prune(now)
	c.expires = now.Add(CodeTTL)
	c.family = randomID()
	id := randomToken()
	g.codes[id] = &c
	return id
}

// redeemCode checks a code against its exchange and marks it used. A code
// presented twice is refused and the tokens it gave are revoked (RFC 6749
// §4.1.2).
func (g *grants) redeemCode(code, clientID, redirectURI, verifier string) (authCode, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.codes[code]
	switch {
	case !ok:
		return authCode{}, invalidGrant("unknown authorization code")
	case c.used:
		g.revokeFamily(c.family)
		return authCode{}, invalidGrant("authorization code already used; the tokens it gave are revoked")
	case g.now().After(c.expires):
		delete(g.codes, code)
		return authCode{}, invalidGrant("authorization code expired")
	case c.clientID != clientID:
		return authCode{}, invalidGrant("client_id does not match the authorization request")
	case c.redirectURI != redirectURI:
		return authCode{}, invalidGrant("redirect_uri does not match the authorization request")
	case !verifyPKCE(verifier, c.challenge):
		return authCode{}, invalidGrant("code_verifier does not match code_challenge")
	}
	c.used = true
	return *c, nil
}

// newRefresh issues a refresh token for s.
func (g *grants) newRefresh(s session) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.prune(now)
	id := randomToken()
	g.refresh[id] = &refreshToken{session: s, expires: now.Add(g.refreshTTL)}
	return id
}

// rotate redeems a refresh token: it is used up, and a reused one revokes
// its whole family.
func (g *grants) rotate(token, clientID string) (session, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.refresh[token]
	switch {
	case !ok:
		return session{}, invalidGrant("unknown or revoked refresh token")
	case r.used:
		g.revokeFamily(r.family)
		return session{}, invalidGrant("refresh token already used; its session is revoked, sign in again")
	case g.now().After(r.expires):
		delete(g.refresh, token)
		return session{}, invalidGrant("refresh token expired; sign in again")
	case r.clientID != clientID:
		return session{}, invalidGrant("refresh token was issued to another client_id")
	}
	r.used = true
	return r.session, nil
}

func (g *grants) revokeFamily(family string) {
	for id, r := range g.refresh {
		if r.family == family {
			delete(g.refresh, id)
		}
	}
}

// prune drops expired entries, and the oldest ones past maxGrants. Used
// refresh tokens are kept until they expire, so reuse stays detectable.
func (g *grants) prune(now time.Time) {
	for id, c := range g.codes {
		if now.After(c.expires) {
			delete(g.codes, id)
		}
	}
	for id, r := range g.refresh {
		if now.After(r.expires) {
			delete(g.refresh, id)
		}
	}
	for len(g.codes) >= maxGrants {
		dropOldest(g.codes, func(c *authCode) time.Time { return c.expires })
	}
	for len(g.refresh) >= maxGrants {
		dropOldest(g.refresh, func(r *refreshToken) time.Time { return r.expires })
	}
}

func dropOldest[T any](m map[string]T, exp func(T) time.Time) {
	var oldest string
	var at time.Time
	for id, v := range m {
		if e := exp(v); oldest == "" || e.Before(at) {
			oldest, at = id, e
		}
	}
	delete(m, oldest)
}

// redirectAllowed says whether uri may receive codes: an absolute http(s)
// URL without fragment or user info on a loopback host (any port, RFC 8252
// §7.3) or on one of the configured origins.
func (g *grants) redirectAllowed(uri string) error {
	if uri == "" {
		return errors.New("redirect_uri is required")
	}
	if len(uri) > 2048 {
		return errors.New("redirect_uri is longer than 2048 bytes")
	}
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("redirect_uri %q: want an absolute http(s) URL", uri)
	}
	if u.Fragment != "" || strings.Contains(uri, "#") {
		return fmt.Errorf("redirect_uri %q: a fragment is not allowed", uri)
	}
	if u.User != nil {
		return fmt.Errorf("redirect_uri %q: user info is not allowed", uri)
	}
	if loopbackHost(u.Hostname()) {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.origins[u.Scheme+"://"+u.Host] {
		return nil
	}
	return fmt.Errorf("redirect_uri %q: the development issuer redirects only to loopback addresses and the configured origins", uri)
}

func (g *grants) originAllowed(origin string) bool {
	if loopbackOrigin(origin) {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.origins[origin]
}

func (g *grants) ttls() (token, refresh time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tokenTTL, g.refreshTTL
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
