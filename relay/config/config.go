// Package config is the one place the relay's settings are read: Load takes
// an environment lookup function (os.Getenv in relay/cmd/relay, a map in the
// in-process product and tests). docs/config.md lists every variable; the
// relay's constructor (relay/service) builds the service from a Config.
package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"

	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/relay/ui"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/logging"
	"github.com/nodebatch/nodebatch/shared/setting"
)

// Defaults. A setting left unset takes its default; "0" means off only for
// NODEBATCH_NODES_PER_MINUTE (no limit, as the API's per-minute rates) and
// "off" only for NODEBATCH_API_URL; other numbers below 1 are refused.
const (
	DefaultAddr    = "127.0.0.1:8090"
	DefaultProject = "nodebatch-local"
	DefaultAPIURL  = "http://127.0.0.1:8080"
	// APIOff is the NODEBATCH_API_URL value that turns the API proxy off.
	APIOff = "off"
)

// CoreFeatures are the UI's controls that are the product: always served in
// /config.json, whatever NODEBATCH_UI_FEATURES says (issue 20).
var CoreFeatures = []string{"cancel", "retry", "revert", "history"}

// DevUsers are the identities the UI offers to "sign in as" with the
// development issuer (NODEBATCH_DEV_ISSUER).
var DevUsers = []ui.DevUser{{Name: "alice", Role: "user"}, {Name: "bob", Role: "user"}, {Name: "admin", Role: "admin"}}

// Config is the relay's settings.
type Config struct {
	Addr           string     // NODEBATCH_RELAY_ADDR; PORT (Cloud Run) wins as ":PORT"
	Project        string     // NODEBATCH_PROJECT, else GOOGLE_CLOUD_PROJECT, else DefaultProject
	AllowedOrigins []string   // NODEBATCH_ALLOWED_ORIGINS (comma-separated)
	SeedTokenQuery bool       // NODEBATCH_SEED_TOKEN_QUERY
	APIURL         *url.URL   // NODEBATCH_API_URL; nil when "off"
	Kubeconfig     string     // KUBECONFIG; empty: no GET /v1/nodes
	DevIssuer      bool       // NODEBATCH_DEV_ISSUER
	Features       []string   // CoreFeatures, then NODEBATCH_UI_FEATURES' others
	LogLevel       slog.Level // NODEBATCH_LOG_LEVEL

	MaxTicketsPerUser int // NODEBATCH_RELAY_MAX_TICKETS_PER_USER
	MaxConnsPerUser   int // NODEBATCH_RELAY_MAX_CONNS_PER_USER
	NodesPerMinute    int // NODEBATCH_NODES_PER_MINUTE; 0: no limit
	NodesBurst        int // NODEBATCH_NODES_BURST

	Auth auth.Config // the identity settings (auth.LoadConfig)
}

// Load reads the settings through getenv.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		Addr:           setting.String(getenv, "NODEBATCH_RELAY_ADDR", DefaultAddr),
		Project:        setting.String(getenv, "NODEBATCH_PROJECT", DefaultProject),
		AllowedOrigins: setting.List(getenv, "NODEBATCH_ALLOWED_ORIGINS"),
		Kubeconfig:     getenv("KUBECONFIG"),
		Features:       features(setting.List(getenv, "NODEBATCH_UI_FEATURES")),
		LogLevel:       logging.ParseLevel(getenv("NODEBATCH_LOG_LEVEL")),
	}
	if getenv("NODEBATCH_PROJECT") == "" && getenv("GOOGLE_CLOUD_PROJECT") != "" {
		c.Project = getenv("GOOGLE_CLOUD_PROJECT")
	}
	if p := getenv("PORT"); p != "" { // Cloud Run
		c.Addr = ":" + p
	}
	var err error
	if c.SeedTokenQuery, err = setting.Bool(getenv, "NODEBATCH_SEED_TOKEN_QUERY", false); err != nil {
		return c, err
	}
	if c.DevIssuer, err = setting.Bool(getenv, "NODEBATCH_DEV_ISSUER", false); err != nil {
		return c, err
	}
	if api := setting.String(getenv, "NODEBATCH_API_URL", DefaultAPIURL); api != APIOff {
		if c.APIURL, err = url.Parse(api); err != nil || c.APIURL.Host == "" {
			return c, fmt.Errorf("load relay config: NODEBATCH_API_URL=%q: not an absolute URL (or %q)", api, APIOff)
		}
	}
	ints := []struct {
		name     string
		dst      *int
		def, min int
	}{
		{"NODEBATCH_RELAY_MAX_TICKETS_PER_USER", &c.MaxTicketsPerUser, relay.DefaultMaxTicketsPerUser, 1},
		{"NODEBATCH_RELAY_MAX_CONNS_PER_USER", &c.MaxConnsPerUser, relay.DefaultMaxConnsPerUser, 1},
		{"NODEBATCH_NODES_PER_MINUTE", &c.NodesPerMinute, ui.DefaultNodesPerMinute, 0},
		{"NODEBATCH_NODES_BURST", &c.NodesBurst, ui.DefaultNodesBurst, 1},
	}
	for _, i := range ints {
		if *i.dst, err = setting.Int(getenv, i.name, i.def, i.min); err != nil {
			return c, err
		}
	}
	if c.Auth, err = auth.LoadConfig(getenv); err != nil {
		return c, err
	}
	return c, nil
}

// UI is what /config.json tells the pages: the issuer to sign in with, the
// controls, and the development sign-in when DevIssuer.
func (c Config) UI() ui.Config {
	u := ui.Config{
		Issuer:   c.Auth.Issuers[0].URL,
		ClientID: c.Auth.Issuers[0].Audience,
		Features: c.Features,
	}
	if c.DevIssuer {
		u.DevIssuer = true
		u.DevTokenURL = strings.TrimSuffix(u.Issuer, "/") + "/token"
		u.DevUsers = DevUsers
	}
	return u
}

// features is CoreFeatures followed by the other features of list. Listing
// a core feature (as deployments configured before they were core did) is
// harmless.
func features(list []string) []string {
	out := slices.Clone(CoreFeatures)
	for _, f := range list {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}
