// Package config is the one place the functions' settings are read: from an
// environment lookup function handed in by a main (functions/cmd/serve) or
// by a Cloud Run entry point's lazy initialisation. docs/config.md lists
// every variable.
package config

import (
	"fmt"

	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/setting"
	"k8s.io/client-go/tools/clientcmd"
)

// Defaults: each is defined here, or in the package that applies it and
// referenced here, once. A setting left unset takes its default; "0" means
// off only where the table in docs/config.md says so (INLINE_MAX and the
// per-minute rates); elsewhere a value below the minimum is refused.
const (
	DefaultTopic          = "nodebatch-node-patch"
	DefaultInlineMax      = 5
	DefaultMaxNodes       = request.DefaultMaxNodes
	DefaultMaxConcurrency = request.DefaultMaxConcurrency
	DefaultMaxChanges     = request.DefaultMaxChanges
	DefaultBodyLimit      = 1 << 20
	DefaultKubeQPS        = 500
	DefaultKubeBurst      = 1000
	DefaultConflictTries  = nodepatch.DefaultMaxConflictRetries
	DefaultRatePerMinute  = ratelimit.DefaultPerMinute
	DefaultRateBurst      = ratelimit.DefaultBurst
	// DefaultPreviewPerMinute and DefaultPreviewBurst bound previews
	// (POST /v1/batches:preview and dry_run submits) per user: each lists
	// every node and sends a few dry-run writes.
	DefaultPreviewPerMinute = 30
	DefaultPreviewBurst     = 10
	// DefaultSeedWaitSeconds keeps the seed's waiting endpoints well inside
	// the function timeout (300 s in infra/): a request that outlives it
	// gets a gateway timeout instead of 202 {task_id}.
	DefaultSeedWaitSeconds = 240
	DefaultSeedWaiters     = 2
)

// Config is the functions' settings.
type Config struct {
	Project           string   // NODEBATCH_PROJECT, else GOOGLE_CLOUD_PROJECT
	Kubeconfig        string   // KUBECONFIG; empty: in-cluster credentials
	Topic             string   // NODEBATCH_TOPIC
	InlineMax         int      // NODEBATCH_INLINE_MAX; batches up to this size run in-process (0: never)
	MaxNodes          int      // NODEBATCH_MAX_NODES
	MaxConcurrency    int      // NODEBATCH_MAX_CONCURRENCY
	MaxChanges        int      // NODEBATCH_MAX_CHANGES
	BodyLimit         int64    // NODEBATCH_BODY_LIMIT (bytes)
	ProtectedPrefixes []string // NODEBATCH_PROTECTED_PREFIXES (comma-separated): protected in addition to change.DefaultProtection
	KubeQPS           float32  // NODEBATCH_KUBE_QPS
	KubeBurst         int      // NODEBATCH_KUBE_BURST
	ConflictRetries   int      // NODEBATCH_CONFLICT_RETRIES: taint update retries on 409
	RatePerMinute     int      // NODEBATCH_RATE_PER_MINUTE: batches per user per minute (per instance); 0: no limit
	RateBurst         int      // NODEBATCH_RATE_BURST: batches a user may submit at once
	Guard             Guard    // the confirmation guard (guard.go)
	PreviewPerMinute  int      // NODEBATCH_PREVIEW_PER_MINUTE: previews and dry runs per user per minute (per instance); 0: no limit
	PreviewBurst      int      // NODEBATCH_PREVIEW_BURST: previews a user may ask for at once
	SeedWaitSeconds   int      // NODEBATCH_SEED_WAIT_SECONDS: how long the seed's waiting endpoints wait; below the function timeout
	SeedWaiters       int      // NODEBATCH_SEED_WAITERS: waiting requests per user at once (per instance); more answer 202 {task_id} at once
}

// Load reads the settings through getenv (os.Getenv in mains).
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		Project:    getenv("NODEBATCH_PROJECT"),
		Kubeconfig: getenv("KUBECONFIG"),
		Topic:      setting.String(getenv, "NODEBATCH_TOPIC", DefaultTopic),
	}
	if c.Project == "" {
		c.Project = getenv("GOOGLE_CLOUD_PROJECT")
	}
	if c.Project == "" {
		return c, fmt.Errorf("load config: NODEBATCH_PROJECT (or GOOGLE_CLOUD_PROJECT) is not set")
	}
	ints := []struct {
		name string
		dst  *int
		def  int
		min  int
	}{
		{"NODEBATCH_INLINE_MAX", &c.InlineMax, DefaultInlineMax, 0},
		{"NODEBATCH_MAX_NODES", &c.MaxNodes, DefaultMaxNodes, 1},
		{"NODEBATCH_MAX_CONCURRENCY", &c.MaxConcurrency, DefaultMaxConcurrency, 1},
		{"NODEBATCH_MAX_CHANGES", &c.MaxChanges, DefaultMaxChanges, 1},
		{"NODEBATCH_KUBE_BURST", &c.KubeBurst, DefaultKubeBurst, 1},
		// 0 would be read as nodepatch's default: refused rather than misread.
		{"NODEBATCH_CONFLICT_RETRIES", &c.ConflictRetries, DefaultConflictTries, 1},
		{"NODEBATCH_RATE_PER_MINUTE", &c.RatePerMinute, DefaultRatePerMinute, 0},
		{"NODEBATCH_RATE_BURST", &c.RateBurst, DefaultRateBurst, 1},
		{"NODEBATCH_PREVIEW_PER_MINUTE", &c.PreviewPerMinute, DefaultPreviewPerMinute, 0},
		{"NODEBATCH_PREVIEW_BURST", &c.PreviewBurst, DefaultPreviewBurst, 1},
		{"NODEBATCH_SEED_WAIT_SECONDS", &c.SeedWaitSeconds, DefaultSeedWaitSeconds, 1},
		{"NODEBATCH_SEED_WAITERS", &c.SeedWaiters, DefaultSeedWaiters, 1},
	}
	for _, i := range ints {
		v, err := setting.Int(getenv, i.name, i.def, i.min)
		if err != nil {
			return c, err
		}
		*i.dst = v
	}
	g, err := loadGuard(getenv)
	if err != nil {
		return c, err
	}
	c.Guard = g
	if c.MaxConcurrency > 400 {
		return c, fmt.Errorf("load config: NODEBATCH_MAX_CONCURRENCY=%d exceeds 400 (lanes are created in one commit)", c.MaxConcurrency)
	}
	bl, err := setting.Int(getenv, "NODEBATCH_BODY_LIMIT", DefaultBodyLimit, 1024)
	if err != nil {
		return c, err
	}
	c.BodyLimit = int64(bl)
	qps, err := setting.Int(getenv, "NODEBATCH_KUBE_QPS", DefaultKubeQPS, 1)
	if err != nil {
		return c, err
	}
	c.KubeQPS = float32(qps)
	if getenv("NODEBATCH_PROTECTED_PREFIXES") != "" {
		c.ProtectedPrefixes = append([]string{}, setting.List(getenv, "NODEBATCH_PROTECTED_PREFIXES")...)
	}
	return c, nil
}

// RestConfig is the Kubernetes client configuration: from Kubeconfig, or
// in-cluster credentials when it is empty, with QPS/Burst set deliberately
// (client-go's default 5/10 would cap a batch at ~5 nodes/s).
func (c Config) RestConfig() (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if c.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	return c.WithRate(rc), nil
}

// WithRate is a copy of rc with the settings' QPS and burst and nodebatch's
// user agent: what RestConfig applies to the credentials it loads.
func (c Config) WithRate(rc *rest.Config) *rest.Config {
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = c.KubeQPS, c.KubeBurst
	rc.UserAgent = "nodebatch"
	return rc
}

// Patcher is the per-node patcher: nodebatch's field manager and the
// settings' conflict retries.
func (c Config) Patcher() nodepatch.Patcher {
	return nodepatch.Patcher{FieldManager: nodepatch.DefaultFieldManager, MaxConflictRetries: c.ConflictRetries}
}

// Protection is the key protection for batches: change.DefaultProtection
// (kubernetes.io/, k8s.io/ and their subdomains, except
// node-role.kubernetes.io/), which always applies, plus
// NODEBATCH_PROTECTED_PREFIXES. The setting adds to the built-ins: setting
// it to example.com must not unprotect kubernetes.io/.
func (c Config) Protection() change.Protection {
	return change.DefaultProtection().With(c.ProtectedPrefixes...)
}

// RateLimiter is the per-user batch rate limit from the settings, or nil
// (no limit) when RatePerMinute is 0.
func (c Config) RateLimiter() *ratelimit.Limiter {
	if c.RatePerMinute <= 0 {
		return nil
	}
	return ratelimit.New(ratelimit.Config{PerMinute: c.RatePerMinute, Burst: c.RateBurst})
}

// PreviewLimiter is the per-user preview limit from the settings (it
// counts POST /v1/batches:preview and dry_run submits), or nil (no limit)
// when PreviewPerMinute is 0.
func (c Config) PreviewLimiter() *ratelimit.Limiter {
	if c.PreviewPerMinute <= 0 {
		return nil
	}
	return ratelimit.New(ratelimit.Config{PerMinute: c.PreviewPerMinute, Burst: c.PreviewBurst, Name: ratelimit.PreviewName, What: "previews"})
}

// Limits are the request limits from the settings.
func (c Config) Limits() request.Limits {
	l := request.DefaultLimits()
	l.MaxNodes, l.MaxConcurrency, l.MaxChanges = c.MaxNodes, c.MaxConcurrency, c.MaxChanges
	return l
}
