package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
)

func TestLoad(t *testing.T) {
	defaults := Config{
		Project: "p", Topic: DefaultTopic, InlineMax: 5, MaxNodes: 10000, MaxConcurrency: 50, MaxChanges: 100,
		BodyLimit: 1 << 20, KubeQPS: 500, KubeBurst: 1000, ConflictRetries: 10,
		RatePerMinute: 30, RateBurst: 10, PreviewPerMinute: 30, PreviewBurst: 10,
		Guard:           Guard{ConfirmOver: DefaultConfirmOver, SeedNoExecute: true},
		SeedWaitSeconds: 240, SeedWaiters: 2,
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
			"NODEBATCH_PREVIEW_PER_MINUTE": "4", "NODEBATCH_PREVIEW_BURST": "3",
			"NODEBATCH_SEED_WAIT_SECONDS": "60", "NODEBATCH_SEED_WAITERS": "4",
		}, want: func(c Config) Config {
			c.Kubeconfig, c.Topic, c.InlineMax, c.MaxNodes, c.MaxConcurrency, c.MaxChanges = "/k", "t", 0, 7, 3, 2
			c.BodyLimit, c.KubeQPS, c.KubeBurst, c.ConflictRetries = 2048, 50, 60, 1
			c.ProtectedPrefixes = []string{"example.com", "corp.io"}
			c.RatePerMinute, c.RateBurst = 6, 2
			c.PreviewPerMinute, c.PreviewBurst = 4, 3
			c.SeedWaitSeconds, c.SeedWaiters = 60, 4
			return c
		}},
		{name: "rate limit off", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_RATE_PER_MINUTE": "0"},
			want: func(c Config) Config { c.RatePerMinute = 0; return c }},
		{name: "negative rate", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_RATE_PER_MINUTE": "-1"}, wantErr: true},
		{name: "preview limit off", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_PREVIEW_PER_MINUTE": "0"},
			want: func(c Config) Config { c.PreviewPerMinute = 0; return c }},
		{name: "zero preview burst", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_PREVIEW_BURST": "0"}, wantErr: true},
		{name: "zero burst", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_RATE_BURST": "0"}, wantErr: true},
		{name: "zero seed wait", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_SEED_WAIT_SECONDS": "0"}, wantErr: true},
		{name: "zero seed waiters", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_SEED_WAITERS": "0"}, wantErr: true},
		// 0 would be nodepatch's default (10), not "no retries": refused.
		{name: "zero conflict retries", env: map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_CONFLICT_RETRIES": "0"}, wantErr: true},
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

// TestProtection: NODEBATCH_PROTECTED_PREFIXES adds to the built-in
// protections; setting it never unprotects kubernetes.io/ or k8s.io/.
func TestProtection(t *testing.T) {
	tests := []struct {
		name      string
		env       string // NODEBATCH_PROTECTED_PREFIXES
		protected []string
		writable  []string
	}{
		{name: "unset", env: "",
			protected: []string{"kubernetes.io/hostname", "node.kubernetes.io/x", "k8s.io/x", "sub.k8s.io/x"},
			writable:  []string{"team", "node-role.kubernetes.io/worker", "example.com/a", "notkubernetes.io/x"}},
		{name: "adds a domain", env: "example.com",
			protected: []string{"kubernetes.io/hostname", "node.kubernetes.io/x", "k8s.io/x", "example.com/a", "sub.example.com/a"},
			writable:  []string{"team", "node-role.kubernetes.io/worker", "corp.io/a"}},
		{name: "several, with a slash", env: " example.com/, corp.io ",
			protected: []string{"kubernetes.io/hostname", "k8s.io/x", "example.com/a", "corp.io/a"},
			writable:  []string{"team", "node-role.kubernetes.io/worker"}},
		{name: "protects the default exception by name", env: "node-role.kubernetes.io",
			protected: []string{"kubernetes.io/hostname", "node-role.kubernetes.io/worker"},
			writable:  []string{"team"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(func(k string) string {
				return map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_PROTECTED_PREFIXES": tt.env}[k]
			})
			if err != nil {
				t.Fatal(err)
			}
			prot := c.Protection()
			for _, key := range tt.protected {
				if errs := (change.Set{Labels: []change.Label{{Key: key, Value: "x"}}}).Validate(nil, prot); len(errs) == 0 {
					t.Errorf("with NODEBATCH_PROTECTED_PREFIXES=%q, key %q is writable, want protected", tt.env, key)
				}
			}
			for _, key := range tt.writable {
				if errs := (change.Set{Labels: []change.Label{{Key: key, Value: "x"}}}).Validate(nil, prot); len(errs) > 0 {
					t.Errorf("with NODEBATCH_PROTECTED_PREFIXES=%q, key %q is refused (%v), want writable", tt.env, key, errs)
				}
			}
		})
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

func TestPreviewLimiter(t *testing.T) {
	if l := (Config{PreviewPerMinute: 0, PreviewBurst: 10}).PreviewLimiter(); l != nil {
		t.Errorf("PreviewLimiter with PreviewPerMinute 0 = %v, want nil (no limit)", l)
	}
	l := (Config{PreviewPerMinute: 4, PreviewBurst: 3}).PreviewLimiter()
	if l == nil {
		t.Fatal("PreviewLimiter = nil, want a limiter")
	}
	if l.PerMinute() != 4 || l.Burst() != 3 || l.Name() != "previews_per_user_per_minute" {
		t.Errorf("PreviewLimiter = %s %d/min burst %d, want previews_per_user_per_minute 4/min burst 3", l.Name(), l.PerMinute(), l.Burst())
	}
}

// TestPatcher: the patcher carries nodebatch's field manager and the
// settings' conflict retries.
func TestPatcher(t *testing.T) {
	c, err := Load(func(k string) string {
		return map[string]string{"NODEBATCH_PROJECT": "p", "NODEBATCH_CONFLICT_RETRIES": "3"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	want := nodepatch.Patcher{FieldManager: nodepatch.DefaultFieldManager, MaxConflictRetries: 3}
	if got := c.Patcher(); got != want {
		t.Errorf("Patcher() = %+v, want %+v", got, want)
	}
}

// TestWithRate: a client configuration handed in (the in-process product's)
// gets the settings' rate limits, as one loaded from KUBECONFIG does, and
// the original is left alone.
func TestWithRate(t *testing.T) {
	c, err := Load(func(k string) string { return map[string]string{"NODEBATCH_PROJECT": "p"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	in := &rest.Config{Host: "https://k"}
	got := c.WithRate(in)
	if got.QPS != DefaultKubeQPS || got.Burst != DefaultKubeBurst || got.UserAgent != "nodebatch" || got.Host != in.Host {
		t.Errorf("WithRate() = QPS %v burst %d agent %q host %q, want %d %d nodebatch %s", got.QPS, got.Burst, got.UserAgent, got.Host, DefaultKubeQPS, DefaultKubeBurst, in.Host)
	}
	if in.QPS != 0 {
		t.Errorf("WithRate changed its argument: QPS %v", in.QPS)
	}
}
