package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ClaimMapping names the claim a Kubernetes user name or group list is
// read from and the prefix put in front of each value: the API server's
// structured authentication configuration, jwt[].claimMappings.username
// and .groups.
type ClaimMapping struct {
	Claim  string `json:"claim"`
	Prefix string `json:"prefix"`
}

// KubeMapping maps a verified token of one issuer to a Kubernetes user and
// groups, as the cluster's own OIDC configuration for that issuer would.
type KubeMapping struct {
	// Username defaults to {Claim: "email"} with no prefix: GKE with Google
	// identities, where the user is the verified email. A username claim
	// "email" is used only when email_verified is true, as the API server
	// requires.
	Username ClaimMapping `json:"username"`
	// Groups is off when Claim is empty (the default: on GKE, Google Groups
	// are resolved by GKE and are not in ID tokens).
	Groups ClaimMapping `json:"groups"`
}

// DefaultUsernameClaim is the username claim when none is configured.
const DefaultUsernameClaim = "email"

func (m *KubeMapping) defaults() {
	if m.Username.Claim == "" {
		m.Username.Claim = DefaultUsernameClaim
	}
}

// ErrNoKubeUser means the token maps to no Kubernetes user (its username
// claim is absent, empty or an unverified email): every Kubernetes call for
// it is refused.
var ErrNoKubeUser = errors.New("token maps to no Kubernetes user")

// kubeUser applies m to a token's claims. The user is "" when the username
// claim is missing (the caller then may read its batches but never reach
// the cluster).
func (m KubeMapping) kubeUser(all map[string]json.RawMessage, emailVerified bool) (string, []string) {
	var name string
	if raw, ok := all[m.Username.Claim]; ok && json.Unmarshal(raw, &name) == nil && name != "" {
		if m.Username.Claim == "email" && !emailVerified {
			name = ""
		}
	}
	if name != "" {
		name = m.Username.Prefix + name
	}
	if m.Groups.Claim == "" {
		return name, nil
	}
	var groups []string
	raw := all[m.Groups.Claim]
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one != "" {
			groups = []string{one}
		}
	} else if json.Unmarshal(raw, &groups) != nil {
		groups = nil
	}
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		if g != "" {
			out = append(out, m.Groups.Prefix+g)
		}
	}
	if len(out) == 0 {
		out = nil
	}
	return name, out
}

// parseMappings reads NODEBATCH_OIDC_CLAIM_MAPPINGS: a JSON object from
// issuer URL to KubeMapping.
func parseMappings(s string) (map[string]KubeMapping, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var m map[string]KubeMapping
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: want a JSON object from issuer URL to {\"username\":{\"claim\",\"prefix\"},\"groups\":{\"claim\",\"prefix\"}}: %w", EnvClaimMappings, err)
	}
	return m, nil
}
