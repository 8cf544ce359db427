// Package oidcdev is a development OpenID Connect issuer: a discovery
// document, a JWKS endpoint and a token-minting endpoint, so the local stack
// verifies exactly the tokens production would (RS256 JWTs checked against a
// fetched JWKS) without a real identity provider.
//
// It mints a token for anyone who asks. It exists for tests and `make run`
// only and must never be deployed or reachable from another machine.
//
// One process can act as several issuers: each Issuer serves its endpoints
// under the path of its own issuer URL, so the user issuer can live at
// http://127.0.0.1:8093 and a stand-in for Google (which signs Cloud
// Scheduler's ID tokens) at http://127.0.0.1:8093/google.
package oidcdev

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultTTL is the lifetime of a minted token when Claims.TTL is zero.
const DefaultTTL = time.Hour

// MaxTTL bounds Claims.TTL so a development token cannot live for days.
const MaxTTL = 24 * time.Hour

// Issuer signs ID tokens with one RSA-2048 key and publishes its public half.
// It also runs the authorization-code flow (PKCE S256) and the
// refresh-token grant for its development users (see Options).
type Issuer struct {
	url    string
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
	grants grants
}

// Claims describes a token to mint.
type Claims struct {
	Subject  string   // "sub"; required
	Email    string   // "email"; when set, "email_verified" is true unless UnverifiedEmail
	Name     string   // "name"
	Roles    []string // "roles"
	Groups   []string // "groups"
	Audience []string // "aud"; required (a client id for users, the target URL for scheduler tokens)
	Nonce    string   // "nonce", when set (the authorization request's)
	TTL      time.Duration

	// UnverifiedEmail mints "email_verified": false (tests).
	UnverifiedEmail bool
	// IssuedAt, ExpiresAt and NotBefore override the computed times (tests:
	// expired and not-yet-valid tokens). Zero means computed / absent.
	IssuedAt, ExpiresAt, NotBefore time.Time
}

// New returns an issuer for issuerURL with a freshly generated key.
func New(issuerURL string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("oidcdev: generate key: %w", err)
	}
	return newIssuer(issuerURL, key)
}

// Load returns an issuer for issuerURL whose key is read from path (PEM,
// PKCS#8), so a restarted issuer keeps validating tokens it minted before.
func Load(issuerURL, path string) (*Issuer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("oidcdev: load key %q: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("oidcdev: load key %q: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("oidcdev: load key %q: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok || rk.N.BitLen() < 2048 {
		return nil, fmt.Errorf("oidcdev: load key %q: want an RSA key of at least 2048 bits", path)
	}
	return newIssuer(issuerURL, rk)
}

// LoadOrCreate loads the key at path, or generates one and saves it there.
func LoadOrCreate(issuerURL, path string) (*Issuer, error) {
	i, err := Load(issuerURL, path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return i, err
	}
	if i, err = New(issuerURL); err != nil {
		return nil, err
	}
	return i, i.Save(path)
}

// Save writes the private key to path (mode 0600, atomically).
func (i *Issuer) Save(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(i.key)
	if err != nil {
		return fmt.Errorf("oidcdev: save key %q: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".oidcdev-key-*")
	if err != nil {
		return fmt.Errorf("oidcdev: save key %q: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return fmt.Errorf("oidcdev: save key %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("oidcdev: save key %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("oidcdev: save key %q: %w", path, err)
	}
	return nil
}

func newIssuer(issuerURL string, key *rsa.PrivateKey) (*Issuer, error) {
	u, err := url.Parse(issuerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oidcdev: issuer URL %q: want http(s)://host[/path]", issuerURL)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("oidcdev: key thumbprint: %w", err)
	}
	kid := fmt.Sprintf("%x", tp[:8])
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("oidcdev: signer: %w", err)
	}
	i := &Issuer{url: strings.TrimSuffix(issuerURL, "/"), key: key, kid: kid, signer: signer}
	i.grants.init()
	return i, nil
}

// URL returns the issuer URL, the "iss" of every token it mints.
func (i *Issuer) URL() string { return i.url }

// KeyID returns the "kid" of the signing key (tests forge tokens with it).
func (i *Issuer) KeyID() string { return i.kid }

// JWKS returns the public key set served at /jwks.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}}
}

// Mint signs an ID token for c.
func (i *Issuer) Mint(c Claims) (string, error) {
	if c.Subject == "" {
		return "", errors.New("oidcdev: mint: subject is required")
	}
	if len(c.Audience) == 0 {
		return "", errors.New("oidcdev: mint: audience is required")
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 || ttl > MaxTTL {
		return "", fmt.Errorf("oidcdev: mint: ttl %s outside (0, %s]", ttl, MaxTTL)
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	exp := c.ExpiresAt
	if exp.IsZero() {
		exp = iat.Add(ttl)
	}
	claims := map[string]any{
		"iss": i.url,
		"sub": c.Subject,
		"iat": iat.Unix(),
		"exp": exp.Unix(),
		"jti": randomID(),
	}
	if len(c.Audience) == 1 {
		claims["aud"] = c.Audience[0]
	} else {
		claims["aud"] = c.Audience
	}
	if !c.NotBefore.IsZero() {
		claims["nbf"] = c.NotBefore.Unix()
	}
	if c.Email != "" {
		claims["email"] = c.Email
		claims["email_verified"] = !c.UnverifiedEmail
	}
	if c.Nonce != "" {
		claims["nonce"] = c.Nonce
	}
	if c.Name != "" {
		claims["name"] = c.Name
	}
	if len(c.Roles) > 0 {
		claims["roles"] = c.Roles
	}
	if len(c.Groups) > 0 {
		claims["groups"] = c.Groups
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("oidcdev: mint: %w", err)
	}
	jws, err := i.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("oidcdev: mint: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("oidcdev: mint: serialize: %w", err)
	}
	return tok, nil
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return fmt.Sprintf("%x", b)
}
