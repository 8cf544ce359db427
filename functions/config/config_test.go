package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoad(t *testing.T) {
	defaults := Config{
		Project: "p", Topic: DefaultTopic, InlineMax: 5, MaxNodes: 10000, MaxConcurrency: 50, MaxChanges: 100,
		BodyLimit: 1 << 20, KubeQPS: 500, KubeBurst: 1000, ConflictRetries: 10,
		RatePerMinute: 30, RateBurst: 10, SeedWaitSeconds: 240, SeedWaiters: 2,
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    func(Config) Config
		wantErr bool
	}{
		{name: "defaults", env: map[string]string{"NODEBATCH_PROJECT": "p"}, want: func(c Config) Config { return c }},
		{name: "google project", env: map[string]string{"GOOGLE_CLOUD_PROJECT": "p"}, want: func(c Config) Config { return c }},
		{name: "all set", env: map[string]string{
			"NODEBATCH_PROJECT": "p", "KUBECONFIG": "/k", "NODEBATCH_TOPIC": "t", "NODEBATCH_INLINE_MAX": "0",
			"NODEBATCH_MAX_NODES": "7", "NODEBATCH_MAX_CONCURRENCY": "3", "NODEBATCH_MAX_CHANGES": "2",
			"NODEBATCH_BODY_LIMIT": "2048", "NODEBATCH_KUBE_QPS": "50", "NODEBATCH_KUBE_BURST": "60",
			"NODEBATCH_CONFLICT_RETRIES": "1", "NODEBATCH_PROTECTED_PREFIXES": " example.com, corp.io ",
			"NODEBATCH_RATE_PER_MINUTE": "6", "NODEBATCH_RATE_BURST": "2",
			"NODEBATCH_SEED_WAIT_SECONDS": "60", "NODEBATCH_SEED_WAITERS": "4",
		}, want: func(c Config) Config {
			c.Kubeconfig, c.Topic, c.InlineMax, c.MaxNodes, c.MaxConcurrency, c.MaxChanges = "/k", "t", 0, 7, 3, 2
			c.BodyLimit, c.KubeQPS, c.KubeBurst, c.ConflictRetries = 2048, 50, 60, 1
			c.ProtectedPrefixes = []string{"example.com", "corp.io"}
			c.RatePerMinute, c.RateBurst = 6, 2
			c.SeedWaitSeconds, c.SeedWaiters = 60, 4
			return c
		}},
		{name: "rate limit off", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_RATE_PER_MINUTE": "0"},
			want: func(c Config) Config { c.RatePerMinute = 0; return c }},
		{name: "negative rate", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_RATE_PER_MINUTE": "-1"}, wantErr: true},
		{name: "zero burst", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_RATE_BURST": "0"}, wantErr: true},
		{name: "zero seed wait", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_SEED_WAIT_SECONDS": "0"}, wantErr: true},
		{name: "zero seed waiters", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_SEED_WAITERS": "0"}, wantErr: true},
		{name: "no project", env: map[string]string{}, wantErr: true},
		{name: "bad int", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_MAX_NODES": "many"}, wantErr: true},
		{name: "below min", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_MAX_CONCURRENCY": "0"}, wantErr: true},
		{name: "too many lanes", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_MAX_CONCURRENCY": "401"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want(defaults), got); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProtection(t *testing.T) {
	c := Config{ProtectedPrefixes: []string{"example.com"}}
	if got := c.Protection().Prefixes; !cmp.Equal(got, []string{"example.com"}) {
		t.Errorf("Protection().Prefixes = %v, want [example.com]", got)
	}
	if got := (Config{}).Protection().Prefixes; len(got) == 0 {
		t.Errorf("default Protection().Prefixes is empty")
	}
}

func TestRateLimiter(t *testing.T) {
	if l := (Config{RatePerMinute: 0, RateBurst: 10}).RateLimiter(); l != nil {
		t.Errorf("RateLimiter with RatePerMinute 0 = %v, want nil (no limit)", l)
	}
	l := (Config{RatePerMinute: 6, RateBurst: 2}).RateLimiter()
	if l == nil {
		t.Fatal("RateLimiter = nil, want a limiter")
	}
	if l.PerMinute() != 6 || l.Burst() != 2 {
		t.Errorf("RateLimiter = %d/min burst %d, want 6/min burst 2", l.PerMinute(), l.Burst())
	}
}
