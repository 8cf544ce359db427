package auth

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
)

// GoogleIssuer is the issuer of Google-signed ID tokens (Cloud Scheduler,
// Pub/Sub push, Cloud Tasks).
const GoogleIssuer = "https://accounts.google.com"

// Config says whose tokens a Verifier accepts.
type Config struct {
	// Issuers are the user identity providers.
	Issuers []IssuerConfig
	// AdminClaim names the claim holding roles (a string, space-separated
	// string or array of strings); default "roles".
	AdminClaim string
	// AdminValue is the role that makes a user an admin; default "admin".
	AdminValue string
	// AdminIssuers are the issuers whose admin claim counts (an admin of one
	// identity provider is not an admin of nodebatch by virtue of any other);
	// default the primary issuer, Issuers[0].
	AdminIssuers []string
	// Scheduler, when set, also accepts Google-signed tokens of allowlisted
	// service accounts.
	Scheduler *SchedulerConfig

	// HTTPClient fetches discovery documents and JWKS; default a client with
	// a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives refusals (never tokens); default slog.Default().
	Logger *slog.Logger
}

// IssuerConfig is one user identity provider. The first of Config.Issuers
// is the primary one: its users' owner ids (Principal.Subject) are their
// verified emails, as they always were; every other issuer's are qualified,
// "{issuer}#{sub}", so the same email from two issuers is two owners.
type IssuerConfig struct {
	URL      string // issuer URL; discovery at URL/.well-known/openid-configuration
	Audience string // required "aud" (the client id)
	// Kube maps this issuer's tokens to Kubernetes users and groups; the
	// zero value is username = verified email, no prefix, no groups.
	Kube KubeMapping
}

// SchedulerConfig accepts Cloud Scheduler's OIDC tokens.
type SchedulerConfig struct {
	// IssuerURL defaults to GoogleIssuer; locally it is the development
	// issuer's Google stand-in (http://127.0.0.1:8093/google).
	IssuerURL string
	// Audience is the required "aud": the URL of the function being called.
	Audience string
	// Allowlist holds the service-account emails that may call.
	Allowlist []string
}

// Environment variables read by LoadConfig.
const (
	EnvIssuer             = "NODEBATCH_OIDC_ISSUER"
	EnvAudience           = "NODEBATCH_OIDC_AUDIENCE"
	EnvAdminClaim         = "NODEBATCH_ADMIN_CLAIM"
	EnvAdminValue         = "NODEBATCH_ADMIN_VALUE"
	EnvAdminIssuers       = "NODEBATCH_ADMIN_ISSUERS"
	EnvSchedulerIssuer    = "NODEBATCH_SCHEDULER_ISSUER"
	EnvSchedulerAudience  = "NODEBATCH_SCHEDULER_AUDIENCE"
	EnvSchedulerAllowlist = "NODEBATCH_SCHEDULER_ALLOWLIST"
	EnvUsernameClaim      = "NODEBATCH_OIDC_USERNAME_CLAIM"
	EnvUsernamePrefix     = "NODEBATCH_OIDC_USERNAME_PREFIX"
	EnvGroupsClaim        = "NODEBATCH_OIDC_GROUPS_CLAIM"
	EnvGroupsPrefix       = "NODEBATCH_OIDC_GROUPS_PREFIX"
	EnvClaimMappings      = "NODEBATCH_OIDC_CLAIM_MAPPINGS"
)

// LoadConfig builds a Config from settings looked up with getenv (main
// passes os.Getenv; tests pass a map). See docs/config.md.
func LoadConfig(getenv func(string) string) (Config, error) {
	var c Config
	aud := strings.TrimSpace(getenv(EnvAudience))
	mappings, err := parseMappings(getenv(EnvClaimMappings))
	if err != nil {
		return Config{}, fmt.Errorf("load auth config: %w", err)
	}
	common := KubeMapping{
		Username: ClaimMapping{Claim: strings.TrimSpace(getenv(EnvUsernameClaim)), Prefix: getenv(EnvUsernamePrefix)},
		Groups:   ClaimMapping{Claim: strings.TrimSpace(getenv(EnvGroupsClaim)), Prefix: getenv(EnvGroupsPrefix)},
	}
	for _, u := range splitList(getenv(EnvIssuer)) {
		is := IssuerConfig{URL: u, Audience: aud, Kube: common}
		if m, ok := mappings[u]; ok {
			is.Kube = m
			delete(mappings, u)
		}
		c.Issuers = append(c.Issuers, is)
	}
	for u := range mappings {
		return Config{}, fmt.Errorf("load auth config: %s names issuer %q, which is not in %s", EnvClaimMappings, u, EnvIssuer)
	}
	if len(c.Issuers) == 0 {
		return Config{}, fmt.Errorf("load auth config: %s is required", EnvIssuer)
	}
	if aud == "" {
		return Config{}, fmt.Errorf("load auth config: %s is required", EnvAudience)
	}
	c.AdminClaim = strings.TrimSpace(getenv(EnvAdminClaim))
	c.AdminValue = strings.TrimSpace(getenv(EnvAdminValue))
	c.AdminIssuers = splitList(getenv(EnvAdminIssuers))
	for _, u := range c.AdminIssuers {
		if !slices.ContainsFunc(c.Issuers, func(is IssuerConfig) bool { return is.URL == u }) {
			return Config{}, fmt.Errorf("load auth config: %s names issuer %q, which is not in %s", EnvAdminIssuers, u, EnvIssuer)
		}
	}
	if allow := splitList(getenv(EnvSchedulerAllowlist)); len(allow) > 0 {
		c.Scheduler = &SchedulerConfig{
			IssuerURL: strings.TrimSpace(getenv(EnvSchedulerIssuer)),
			Audience:  strings.TrimSpace(getenv(EnvSchedulerAudience)),
			Allowlist: allow,
		}
		if c.Scheduler.Audience == "" {
			return Config{}, fmt.Errorf("load auth config: %s is required when %s is set", EnvSchedulerAudience, EnvSchedulerAllowlist)
		}
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
