// Package scheduler is a local stand-in for Cloud Scheduler: it reads a
// jobs file, and at each tick of a job's unix-cron schedule it sends the HTTP
// request Cloud Scheduler would send (method, body, headers, the
// X-CloudScheduler* headers, User-Agent and an OIDC bearer token minted for
// the job's service account), retrying a failed run per the job's retry
// config with the same schedule time. It lets the scheduler → batch function
// path run end to end on one machine.
package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Job is one scheduled HTTP call, with the fields of a Cloud Scheduler job
// that has an http_target (google_cloud_scheduler_job in infra/).
type Job struct {
	// Name is the job ID; it is sent as X-CloudScheduler-JobName.
	Name string `json:"name"`
	// Schedule is a unix-cron expression ("0 22 * * *").
	Schedule string `json:"schedule"`
	// TimeZone is the IANA zone the schedule is read in; UTC when empty.
	TimeZone string `json:"time_zone,omitempty"`
	// Target is the absolute URL called at each tick.
	Target string `json:"target"`
	// Method is the HTTP method; POST when empty.
	Method string `json:"method,omitempty"`
	// Headers are extra request headers (Content-Type among them).
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the request body: a JSON string is sent as its text, any other
	// JSON value as its JSON encoding.
	Body json.RawMessage `json:"body,omitempty"`
	// ServiceAccount is the identity the OIDC token is minted for; no
	// Authorization header is sent when it is empty.
	ServiceAccount string `json:"service_account,omitempty"`
	// Audience is the token's audience; Target when empty, as in Cloud
	// Scheduler.
	Audience string `json:"audience,omitempty"`
	// AttemptDeadline bounds one attempt; 3 minutes when zero (Cloud
	// Scheduler's default for HTTP targets).
	AttemptDeadline Duration `json:"attempt_deadline,omitempty"`
	// Retry is the retry config of a failed run.
	Retry RetryConfig `json:"retry,omitempty"`
}

// RetryConfig mirrors Cloud Scheduler's retry_config. The interval between
// attempts starts at MinBackoff, doubles MaxDoublings times, then grows
// linearly by the last doubled interval, capped at MaxBackoff.
type RetryConfig struct {
	// RetryCount is how many times a failed run is retried (0 to 5).
	RetryCount int `json:"retry_count,omitempty"`
	// MaxRetryDuration bounds the time spent retrying one run; 0 is no bound.
	MaxRetryDuration Duration `json:"max_retry_duration,omitempty"`
	// MinBackoff is the first interval; 5s when zero.
	MinBackoff Duration `json:"min_backoff,omitempty"`
	// MaxBackoff caps every interval; 1h when zero.
	MaxBackoff Duration `json:"max_backoff,omitempty"`
	// MaxDoublings is how often the interval doubles; 5 when nil.
	MaxDoublings *int `json:"max_doublings,omitempty"`
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("5s", "1m30s"), as Terraform writes Cloud Scheduler durations.
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parse duration %q: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// Defaults from Cloud Scheduler's API reference.
const (
	defaultAttemptDeadline = 3 * time.Minute
	defaultMinBackoff      = 5 * time.Second
	defaultMaxBackoff      = time.Hour
	defaultMaxDoublings    = 5
	maxRetryCount          = 5
)

// jobName is Cloud Scheduler's job ID rule.
var jobName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,500}$`)

var methods = map[string]bool{
	http.MethodPost: true, http.MethodGet: true, http.MethodPut: true, http.MethodDelete: true,
	http.MethodPatch: true, http.MethodHead: true, http.MethodOptions: true,
}

// LoadJobs decodes and validates a jobs file: a JSON array of Job. Unknown
// fields are refused so a misspelt setting is not silently ignored.
func LoadJobs(r io.Reader) ([]Job, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var jobs []Job
	if err := dec.Decode(&jobs); err != nil {
		return nil, fmt.Errorf("decode jobs file: %w", err)
	}
	seen := make(map[string]bool, len(jobs))
	var errs []error
	for i, j := range jobs {
		if err := j.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("job %d: %w", i, err))
			continue
		}
		if seen[j.Name] {
			errs = append(errs, fmt.Errorf("job %d: duplicate name %q", i, j.Name))
		}
		seen[j.Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("validate jobs file: %w", err)
	}
	return jobs, nil
}

// Validate reports every problem of j, each naming its field.
func (j Job) Validate() error {
	var errs []error
	if !jobName.MatchString(j.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1-500 of [A-Za-z0-9_-]", j.Name))
	}
	if _, err := j.schedule(); err != nil {
		errs = append(errs, err)
	}
	if u, err := url.Parse(j.Target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("target %q: want an absolute http(s) URL", j.Target))
	}
	if !methods[j.method()] {
		errs = append(errs, fmt.Errorf("method %q: not an HTTP method Cloud Scheduler supports", j.Method))
	}
	if _, err := j.body(); err != nil {
		errs = append(errs, err)
	}
	if j.Audience != "" && j.ServiceAccount == "" {
		errs = append(errs, fmt.Errorf("audience %q set without service_account", j.Audience))
	}
	if n := j.Retry.RetryCount; n < 0 || n > maxRetryCount {
		errs = append(errs, fmt.Errorf("retry.retry_count %d: want 0 to %d", n, maxRetryCount))
	}
	if d := j.Retry.MaxDoublings; d != nil && (*d < 0 || *d > 16) {
		errs = append(errs, fmt.Errorf("retry.max_doublings %d: want 0 to 16", *d))
	}
	if mn, mx := j.Retry.minBackoff(), j.Retry.maxBackoff(); mn > mx {
		errs = append(errs, fmt.Errorf("retry.min_backoff %v is above retry.max_backoff %v", mn, mx))
	}
	return errors.Join(errs...)
}

// schedule parses the job's cron spec in its time zone.
func (j Job) schedule() (cron.Schedule, error) {
	tz := j.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return nil, fmt.Errorf("time_zone %q: %w", j.TimeZone, err)
	}
	if strings.Contains(j.Schedule, "TZ=") {
		return nil, fmt.Errorf("schedule %q: set the zone in time_zone, not in the spec", j.Schedule)
	}
	s, err := cron.ParseStandard("CRON_TZ=" + tz + " " + j.Schedule)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", j.Schedule, err)
	}
	return s, nil
}

func (j Job) method() string {
	if j.Method == "" {
		return http.MethodPost
	}
	return strings.ToUpper(j.Method)
}

func (j Job) audience() string {
	if j.Audience == "" {
		return j.Target
	}
	return j.Audience
}

func (j Job) attemptDeadline() time.Duration {
	if j.AttemptDeadline == 0 {
		return defaultAttemptDeadline
	}
	return time.Duration(j.AttemptDeadline)
}

// body returns the bytes sent as the request body.
func (j Job) body() ([]byte, error) {
	raw := bytes.TrimSpace(j.Body)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		return []byte(s), nil
	}
	return raw, nil
}

func (c RetryConfig) minBackoff() time.Duration {
	if c.MinBackoff == 0 {
		return defaultMinBackoff
	}
	return time.Duration(c.MinBackoff)
}

func (c RetryConfig) maxBackoff() time.Duration {
	if c.MaxBackoff == 0 {
		return defaultMaxBackoff
	}
	return time.Duration(c.MaxBackoff)
}

func (c RetryConfig) maxDoublings() int {
	if c.MaxDoublings == nil {
		return defaultMaxDoublings
	}
	return *c.MaxDoublings
}

// Backoff is the wait before retry n (0 for the first retry): MinBackoff
// doubled n times while n <= MaxDoublings, then increased linearly by the
// last doubled interval, never above MaxBackoff. With min 10s, max 300s and
// 3 doublings: 10s, 20s, 40s, 80s, 160s, 240s, 300s (Cloud Scheduler's
// documented example).
func (c RetryConfig) Backoff(n int) time.Duration {
	mn, mx, d := c.minBackoff(), c.maxBackoff(), c.maxDoublings()
	var b time.Duration
	if n <= d {
		b = mn << n
	} else {
		b = (mn << d) * time.Duration(n-d+1)
	}
	if b > mx || b <= 0 {
		return mx
	}
	return b
}
