package ratelimit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clock is a manual clock for one test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)} }

// step is one call of a scenario: advance the clock, then Allow(key).
type step struct {
	advance   time.Duration
	key       string
	wantOK    bool
	wantRetry time.Duration
}

func TestAllow(t *testing.T) {
	t.Parallel()
	burst := func(key string, n int) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{key: key, wantOK: true}
		}
		return s
	}
	cat := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{
			name: "burst then refused with the time to the next token",
			cfg:  Config{PerMinute: 30, Burst: 3},
			steps: cat(burst("alice", 3), []step{
				{key: "alice", wantOK: false, wantRetry: 2 * time.Second},
				{advance: time.Second, key: "alice", wantOK: false, wantRetry: time.Second},
				{advance: time.Second, key: "alice", wantOK: true},
				{key: "alice", wantOK: false, wantRetry: 2 * time.Second},
			}),
		},
		{
			name: "keys are independent",
			cfg:  Config{PerMinute: 1, Burst: 1},
			steps: []step{
				{key: "alice", wantOK: true},
				{key: "alice", wantOK: false, wantRetry: time.Minute},
				{key: "bob", wantOK: true},
				{key: "scheduler:sa@x", wantOK: true},
				{key: "bob", wantOK: false, wantRetry: time.Minute},
			},
		},
		{
			name: "refusals spend nothing",
			cfg:  Config{PerMinute: 60, Burst: 1},
			steps: []step{
				{key: "a", wantOK: true},
				{key: "a", wantOK: false, wantRetry: time.Second},
				{key: "a", wantOK: false, wantRetry: time.Second},
				{key: "a", wantOK: false, wantRetry: time.Second},
				{advance: time.Second, key: "a", wantOK: true},
			},
		},
		{
			name:  "defaults: 10 at once, then one every 2 s",
			cfg:   Config{},
			steps: cat(burst("u", DefaultBurst), []step{{key: "u", wantOK: false, wantRetry: 2 * time.Second}}),
		},
		{
			name: "idle refills to the burst, never beyond",
			cfg:  Config{PerMinute: 60, Burst: 2},
			steps: cat(burst("u", 2), []step{{advance: time.Hour, key: "u", wantOK: true}, {key: "u", wantOK: true},
				{key: "u", wantOK: false, wantRetry: time.Second}}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			tt.cfg.Now = c.now
			l := New(tt.cfg)
			for i, s := range tt.steps {
				c.add(s.advance)
				ok, retry := l.Allow(s.key)
				if ok != s.wantOK || retry != s.wantRetry {
					t.Fatalf("step %d: Allow(%q) = %v, %v, want %v, %v", i, s.key, ok, retry, s.wantOK, s.wantRetry)
				}
			}
		})
	}
}

// TestSweep: buckets of idle keys are dropped once enough new keys arrive,
// and a dropped key starts again with a full bucket (the same as before).
func TestSweep(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := New(Config{PerMinute: 60, Burst: 1, Now: c.now})
	for i := range sweepEvery - 1 {
		l.Allow(fmt.Sprintf("idle-%d", i))
	}
	if got := l.Len(); got != sweepEvery-1 {
		t.Fatalf("Len() = %d, want %d", got, sweepEvery-1)
	}
	c.add(time.Second) // every idle bucket is full again
	l.Allow("new")
	if got := l.Len(); got != 1 {
		t.Fatalf("Len() after sweep = %d, want 1", got)
	}
	if ok, _ := l.Allow("idle-0"); !ok {
		t.Error("Allow(idle-0) after its bucket was dropped = false, want true")
	}
}

// TestSweepKeepsBusyKeys: a key that has not refilled is not dropped (that
// would hand it a fresh burst).
func TestSweepKeepsBusyKeys(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := New(Config{PerMinute: 1, Burst: 1, Now: c.now})
	l.Allow("busy")
	for i := range sweepEvery {
		l.Allow(fmt.Sprintf("k-%d", i))
	}
	if ok, _ := l.Allow("busy"); ok {
		t.Error("Allow(busy) after a sweep = true, want false: its bucket was still empty")
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := New(Config{PerMinute: 60, Burst: 50, Now: c.now})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 200 {
		wg.Go(func() {
			if ok, _ := l.Allow("same"); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("200 concurrent Allow on a burst of 50 allowed %d, want 50", allowed)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := New(Config{PerMinute: 6, Burst: 1, Now: c.now})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	h := l.Middleware(func(r *http.Request) (string, bool) {
		u := r.Header.Get("X-User")
		return u, u != ""
	}, next)
	do := func(user string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/v1/batches", nil)
		if user != "" {
			r.Header.Set("X-User", user)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("alice"); w.Code != http.StatusAccepted {
		t.Fatalf("first request = %d, want 202", w.Code)
	}
	w := do("alice")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("second request = %d, want 429", w.Code)
	}
	if got := w.Header().Get("Retry-After"); got != "10" {
		t.Errorf("Retry-After = %q, want %q", got, "10")
	}
	var body ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	var want ErrorBody
	want.Error.Code = "rate_limited"
	want.Error.Message = "too many batches: at most 6 per minute per user (bursts of 1); retry in 10 s"
	want.Error.Limit = "batches_per_user_per_minute"
	want.Error.PerMinute, want.Error.Burst, want.Error.RetryAfterSeconds = 6, 1, 10
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("429 body mismatch (-want +got):\n%s", diff)
	}
	if w := do(""); w.Code != http.StatusAccepted {
		t.Errorf("request without a key = %d, want 202 (passed through uncounted)", w.Code)
	}
	if w := do("bob"); w.Code != http.StatusAccepted {
		t.Errorf("other user = %d, want 202", w.Code)
	}
}

func TestWriteErrorRoundsUp(t *testing.T) {
	t.Parallel()
	l := New(Config{})
	for _, tt := range []struct {
		in   time.Duration
		want string
	}{{0, "1"}, {time.Millisecond, "1"}, {1500 * time.Millisecond, "2"}, {2 * time.Second, "2"}} {
		w := httptest.NewRecorder()
		l.WriteError(w, tt.in)
		if got := w.Header().Get("Retry-After"); got != tt.want {
			t.Errorf("WriteError(%v): Retry-After = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestNamedLimit: a limiter configured with a name and a noun answers with
// them; the batch limiter's answer is unchanged (TestMiddleware).
func TestNamedLimit(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := New(Config{PerMinute: 6, Burst: 1, Now: c.now, Name: PreviewName, What: "previews"})
	if ok, _ := l.Allow("alice"); !ok {
		t.Fatal("first preview refused")
	}
	ok, wait := l.Allow("alice")
	if ok {
		t.Fatal("second preview allowed, want refused")
	}
	w := httptest.NewRecorder()
	l.WriteError(w, wait)
	var body ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	var want ErrorBody
	want.Error.Code = "rate_limited"
	want.Error.Message = "too many previews: at most 6 per minute per user (bursts of 1); retry in 10 s"
	want.Error.Limit = "previews_per_user_per_minute"
	want.Error.PerMinute, want.Error.Burst, want.Error.RetryAfterSeconds = 6, 1, 10
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("429 body mismatch (-want +got):\n%s", diff)
	}
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "10" {
		t.Errorf("answer = %d, Retry-After %q, want 429 and 10", w.Code, w.Header().Get("Retry-After"))
	}
	if got := l.Name(); got != PreviewName {
		t.Errorf("Name() = %q, want %q", got, PreviewName)
	}
	if got := New(Config{}).Name(); got != Name {
		t.Errorf("default Name() = %q, want %q", got, Name)
	}
}
