package config

import (
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nodebatch/nodebatch/relay/ui"
	"github.com/nodebatch/nodebatch/shared/auth"
)

// identity is the smallest environment Load accepts: the two required
// identity settings.
var identity = map[string]string{"NODEBATCH_OIDC_ISSUER": "https://issuer.example.com", "NODEBATCH_OIDC_AUDIENCE": "nodebatch"}

func env(extra map[string]string) func(string) string {
	m := map[string]string{}
	for k, v := range identity {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func TestLoad(t *testing.T) {
	api, _ := url.Parse(DefaultAPIURL)
	other, _ := url.Parse("https://api.example.com")
	defaults := Config{
		Addr: DefaultAddr, Project: DefaultProject, APIURL: api,
		Features:          CoreFeatures,
		MaxTicketsPerUser: 20, MaxConnsPerUser: 100, NodesPerMinute: 60, NodesBurst: 20,
	}
	with := func(f func(*Config)) Config { c := defaults; f(&c); return c }
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{"unset takes the defaults", nil, defaults},
		{"PORT wins over the address", map[string]string{"NODEBATCH_RELAY_ADDR": "127.0.0.1:1", "PORT": "8080"}, with(func(c *Config) { c.Addr = ":8080" })},
		{"address", map[string]string{"NODEBATCH_RELAY_ADDR": "0.0.0.0:9"}, with(func(c *Config) { c.Addr = "0.0.0.0:9" })},
		{"project from GOOGLE_CLOUD_PROJECT", map[string]string{"GOOGLE_CLOUD_PROJECT": "g"}, with(func(c *Config) { c.Project = "g" })},
		{"NODEBATCH_PROJECT wins", map[string]string{"GOOGLE_CLOUD_PROJECT": "g", "NODEBATCH_PROJECT": "n"}, with(func(c *Config) { c.Project = "n" })},
		{"API proxy off", map[string]string{"NODEBATCH_API_URL": "off"}, with(func(c *Config) { c.APIURL = nil })},
		{"API elsewhere", map[string]string{"NODEBATCH_API_URL": "https://api.example.com"}, with(func(c *Config) { c.APIURL = other })},
		{"old feature list is harmless", map[string]string{"NODEBATCH_UI_FEATURES": "cancel,retry,revert,history"}, defaults},
		{"extra features follow the core ones", map[string]string{"NODEBATCH_UI_FEATURES": " preview, cancel"}, with(func(c *Config) { c.Features = append(append([]string{}, CoreFeatures...), "preview") })},
		{"0 node lists: no limit", map[string]string{"NODEBATCH_NODES_PER_MINUTE": "0"}, with(func(c *Config) { c.NodesPerMinute = 0 })},
		{"limits", map[string]string{"NODEBATCH_RELAY_MAX_TICKETS_PER_USER": "3", "NODEBATCH_RELAY_MAX_CONNS_PER_USER": "2000", "NODEBATCH_NODES_PER_MINUTE": "600", "NODEBATCH_NODES_BURST": "600"},
			with(func(c *Config) {
				c.MaxTicketsPerUser, c.MaxConnsPerUser, c.NodesPerMinute, c.NodesBurst = 3, 2000, 600, 600
			})},
		{"origins, seed token, dev issuer, kubeconfig, log level", map[string]string{
			"NODEBATCH_ALLOWED_ORIGINS": "https://a.example.com, *", "NODEBATCH_SEED_TOKEN_QUERY": "true",
			"NODEBATCH_DEV_ISSUER": "1", "KUBECONFIG": "/k", "NODEBATCH_LOG_LEVEL": "debug",
		}, with(func(c *Config) {
			c.AllowedOrigins = []string{"https://a.example.com", "*"}
			c.SeedTokenQuery, c.DevIssuer, c.Kubeconfig, c.LogLevel = true, true, "/k", slog.LevelDebug
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(env(tt.env))
			if err != nil {
				t.Fatalf("Load() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Config{}, "Auth")); diff != "" {
				t.Errorf("Load() (-want +got):\n%s", diff)
			}
			if got.Auth.Issuers[0].URL != identity["NODEBATCH_OIDC_ISSUER"] {
				t.Errorf("Load().Auth.Issuers = %v, want the issuer of NODEBATCH_OIDC_ISSUER", got.Auth.Issuers)
			}
		})
	}
}

// TestLoadRefuses: a bad value is an error naming the setting, never a
// silent default.
func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"tickets 0", map[string]string{"NODEBATCH_RELAY_MAX_TICKETS_PER_USER": "0"}, "NODEBATCH_RELAY_MAX_TICKETS_PER_USER"},
		{"connections 0", map[string]string{"NODEBATCH_RELAY_MAX_CONNS_PER_USER": "0"}, "NODEBATCH_RELAY_MAX_CONNS_PER_USER"},
		{"negative node lists", map[string]string{"NODEBATCH_NODES_PER_MINUTE": "-1"}, "NODEBATCH_NODES_PER_MINUTE"},
		{"burst 0", map[string]string{"NODEBATCH_NODES_BURST": "0"}, "NODEBATCH_NODES_BURST"},
		{"not a number", map[string]string{"NODEBATCH_NODES_BURST": "many"}, "NODEBATCH_NODES_BURST"},
		{"relative API URL", map[string]string{"NODEBATCH_API_URL": "api"}, "NODEBATCH_API_URL"},
		{"seed token not a bool", map[string]string{"NODEBATCH_SEED_TOKEN_QUERY": "yes please"}, "NODEBATCH_SEED_TOKEN_QUERY"},
		{"dev issuer not a bool", map[string]string{"NODEBATCH_DEV_ISSUER": "maybe"}, "NODEBATCH_DEV_ISSUER"},
		{"no issuer", map[string]string{"NODEBATCH_OIDC_ISSUER": ""}, auth.EnvIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load() error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

// TestUI: /config.json always lists the core controls and offers the
// development sign-in only with the development issuer.
func TestUI(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want ui.Config
	}{
		{"cloud", nil, ui.Config{Issuer: "https://issuer.example.com", ClientID: "nodebatch", Features: CoreFeatures}},
		{"local", map[string]string{"NODEBATCH_DEV_ISSUER": "true", "NODEBATCH_OIDC_ISSUER": "http://127.0.0.1:8093/"}, ui.Config{
			Issuer: "http://127.0.0.1:8093/", ClientID: "nodebatch", Features: CoreFeatures,
			DevIssuer: true, DevTokenURL: "http://127.0.0.1:8093/token", DevUsers: DevUsers,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.UI()); diff != "" {
				t.Errorf("UI() (-want +got):\n%s", diff)
			}
		})
	}
}
