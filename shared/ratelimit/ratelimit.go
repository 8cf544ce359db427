// Package ratelimit limits how often each caller may do something — for
// nodebatch, how many batches one principal may submit per minute — with one
// token bucket per key (golang.org/x/time/rate). It answers refusals the way
// the API answers every error: 429 Too Many Requests, Retry-After in whole
// seconds, and a JSON body naming the limit.
//
// Wiring (functions/batch): a Handler field `RateLimit *ratelimit.Limiter`
// (nil: no limit), checked in submit after the idempotency-key lookup (a
// repeated idempotent request is not counted) and before the node list:
//
//	if ok, wait := h.RateLimit.Allow(p.Subject); !ok {
//		h.RateLimit.WriteError(w, wait)
//		return
//	}
//
// built from NODEBATCH_RATE_PER_MINUTE / NODEBATCH_RATE_BURST. The limit is
// per instance: N instances allow N times as much.
//
// Keys are authenticated principal subjects, so the number of buckets is
// bounded by the number of real callers; buckets idle long enough to have
// refilled are dropped, because a fresh bucket is identical to a full one.
package ratelimit

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nodebatch/nodebatch/shared/apierror"
)

// Name is the batch limit's name in error answers and docs (the default
// Config.Name).
const Name = "batches_per_user_per_minute"

// PreviewName is the name of the per-user preview limit (previews and
// dry-run submits list every node and send dry-run writes).
const PreviewName = "previews_per_user_per_minute"

// Defaults when a Config field is zero.
const (
	DefaultPerMinute = 30
	DefaultBurst     = 10
	// sweepEvery is how many new buckets may be created between sweeps of
	// idle ones.
	sweepEvery = 1024
)

// Config shapes a Limiter.
type Config struct {
	// PerMinute is the sustained number of events per key per minute.
	PerMinute int
	// Burst is how many events a key may spend at once after being idle.
	Burst int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Name is the limit's name in error answers (ErrorBody's "limit");
	// default Name, the batch limit's.
	Name string
	// What is what is counted, plural, in error messages ("too many
	// previews"); default "batches".
	What string
}

// Limiter is a set of token buckets, one per key. It is safe for concurrent
// use.
type Limiter struct {
	perMinute int
	burst     int
	name      string
	what      string
	every     rate.Limit
	now       func() time.Time
	fullAfter time.Duration // an idle bucket is full again after this

	mu      sync.Mutex
	buckets map[string]*bucket
	created int // buckets created since the last sweep
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// New returns a Limiter; zero fields of cfg take the defaults.
func New(cfg Config) *Limiter {
	if cfg.PerMinute <= 0 {
		cfg.PerMinute = DefaultPerMinute
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Name == "" {
		cfg.Name = Name
	}
	if cfg.What == "" {
		cfg.What = "batches"
	}
	every := rate.Limit(float64(cfg.PerMinute) / 60)
	return &Limiter{
		perMinute: cfg.PerMinute,
		burst:     cfg.Burst,
		name:      cfg.Name,
		what:      cfg.What,
		every:     every,
		now:       cfg.Now,
		fullAfter: time.Duration(float64(cfg.Burst) / float64(every) * float64(time.Second)),
		buckets:   map[string]*bucket{},
	}
}

// PerMinute is the sustained limit, for messages.
func (l *Limiter) PerMinute() int { return l.perMinute }

// Burst is the burst size, for messages.
func (l *Limiter) Burst() int { return l.burst }

// Name is the limit's name in error answers.
func (l *Limiter) Name() string { return l.name }

// Allow spends one token of key's bucket. When none is left it spends
// nothing and returns false with how long until one is.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		l.created++
		if l.created >= sweepEvery {
			l.sweepLocked(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Duration(math.MaxInt64)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len is the number of buckets held (for tests and metrics).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// sweepLocked drops buckets idle long enough to be full again.
func (l *Limiter) sweepLocked(now time.Time) {
	l.created = 0
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.fullAfter {
			delete(l.buckets, k)
		}
	}
}

// ErrorBody is the JSON answer of a refusal as a client decodes it, shaped
// like every API error ({"error":{"code","message",…}}) plus the limit that
// was hit. Refusals are written by apierror.Write (Limiter.Error).
type ErrorBody struct {
	Error struct {
		Code              string `json:"code"`
		Message           string `json:"message"`
		Limit             string `json:"limit"`
		PerMinute         int    `json:"per_minute"`
		Burst             int    `json:"burst"`
		RetryAfterSeconds int    `json:"retry_after_seconds"`
	} `json:"error"`
}

// Error is the refusal of a request over the limit: 429 rate_limited
// naming the limit, with Retry-After (whole seconds, at least 1).
func (l *Limiter) Error(retryAfter time.Duration) *apierror.Error {
	lim := apierror.Limit{Name: l.name, PerMinute: l.perMinute, Burst: l.burst, RetryAfter: retryAfter}
	return apierror.Limited(lim, "too many %s: at most %d per minute per user (bursts of %d); retry in %d s", l.what, l.perMinute, l.burst, lim.RetryAfterSeconds())
}

// WriteError answers 429 with Retry-After and an ErrorBody naming the
// limit (Error).
func (l *Limiter) WriteError(w http.ResponseWriter, retryAfter time.Duration) {
	apierror.Write(w, l.Error(retryAfter))
}

// Middleware limits requests to next by key(r). A request for which key
// returns ok=false (for example: no principal; the handler will refuse it
// anyway) is passed through uncounted. Put it inside the authentication
// middleware so the key is a verified subject.
func (l *Limiter) Middleware(key func(*http.Request) (string, bool), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := key(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if allowed, wait := l.Allow(k); !allowed {
			l.WriteError(w, wait)
			return
		}
		next.ServeHTTP(w, r)
	})
}
