package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// signingAlgs are the only algorithms accepted ("none" and HMAC never are).
var signingAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// minRefresh bounds how often an unknown or forged "kid" can make us refetch
// the JWKS, so a flood of bad tokens does not become a flood of requests to
// the identity provider. A rotated key is picked up on the next refresh.
const minRefresh = 10 * time.Second

const maxJWKSBytes = 1 << 20

// keySet is a cached remote JWKS implementing oidc.KeySet.
type keySet struct {
	url        string
	client     *http.Client
	minRefresh time.Duration

	mu   sync.RWMutex
	keys []jose.JSONWebKey

	fetchMu   sync.Mutex // serializes fetches; guards attempted and lastErr
	attempted time.Time
	lastErr   error
}

// fetchProblem is set by keySet when it could not fetch keys, so the
// Verifier can tell "provider unreachable" from "bad token" even though
// go-oidc flattens the error to text.
type fetchProblem struct{ err error }

type fetchProblemKey struct{}

func noteFetchProblem(ctx context.Context, err error) {
	if p, ok := ctx.Value(fetchProblemKey{}).(*fetchProblem); ok {
		p.err = err
	}
}

func (k *keySet) cached() []jose.JSONWebKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys
}

// VerifySignature returns the payload of jwt if a key of the set signed it.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, signingAlgs)
	if err != nil {
		return nil, errors.New("malformed jws")
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	if p, ok := verifyWith(jws, kid, k.cached()); ok {
		return p, nil
	}
	keys, err := k.refresh(ctx)
	if err != nil {
		noteFetchProblem(ctx, err)
		return nil, err
	}
	if p, ok := verifyWith(jws, kid, keys); ok {
		return p, nil
	}
	return nil, errors.New("signature matches no key")
}

func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, bool) {
	for i := range keys {
		if (kid != "" && keys[i].KeyID != kid) || (keys[i].Use != "" && keys[i].Use != "sig") {
			continue
		}
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true
		}
	}
	return nil, false
}

// refresh fetches the key set unless an attempt was made in the last
// minRefresh, in which case it returns what that attempt left.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	if !k.attempted.IsZero() && time.Since(k.attempted) < k.minRefresh {
		return k.cached(), k.lastErr
	}
	k.attempted = time.Now()
	keys, err := k.fetch(ctx)
	k.lastErr = err
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return keys, nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %q: %w", k.url, err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %q: %w", k.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks %q: status %s", k.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %q: %w", k.url, err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("fetch jwks %q: decode: %w", k.url, err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) == nil && key.Valid() && key.IsPublic() {
			keys = append(keys, key) // keys of unknown types are skipped, not fatal
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("fetch jwks %q: no usable public keys", k.url)
	}
	return keys, nil
}
