package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nodebatch/nodebatch/shared/schedule"
)

// TokenFunc mints an OIDC ID token for serviceAccount with audience, as
// Cloud Scheduler does with the job's oidc_token settings. Locally it asks
// the development issuer (emulators/oidcdev).
type TokenFunc func(ctx context.Context, serviceAccount, audience string) (string, error)

// Runner sends scheduled requests; create one with NewRunner.
type Runner struct {
	client *http.Client
	token  TokenFunc
	logger *slog.Logger
}

// NewRunner returns a Runner that sends with client and mints tokens with
// token (nil when no job has a service account). A nil client is a fresh
// http.Client; a nil logger discards logs.
func NewRunner(client *http.Client, token TokenFunc, logger *slog.Logger) *Runner {
	if client == nil {
		client = &http.Client{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{client: client, token: token, logger: logger}
}

// Result is the outcome of one run of a job.
type Result struct {
	// Attempts is how many requests were sent, the first one included.
	Attempts int
	// StatusCode is the status of the last response; 0 when none came.
	StatusCode int
	// Body is the start (at most 64 KiB) of the last response body.
	Body []byte
}

// maxBody bounds how much of a response is kept.
const maxBody = 64 << 10

// RunOnce performs the run of job scheduled at scheduleTime: one request,
// then retries per job.Retry while the target answers non-2xx or the
// attempt fails, every attempt carrying the same X-CloudScheduler-ScheduleTime
// (that is what makes the batch function's idempotency key work). It returns
// an error when every attempt failed or ctx ended.
func (r *Runner) RunOnce(ctx context.Context, job Job, scheduleTime time.Time) (Result, error) {
	if err := job.Validate(); err != nil {
		return Result{}, fmt.Errorf("run job %q: %w", job.Name, err)
	}
	body, _ := job.body() // validated above
	log := r.logger.With("job", job.Name, "schedule_time", schedule.FormatTime(scheduleTime))
	started := time.Now()
	var res Result
	var last error
	for attempt := 0; ; attempt++ {
		res.Attempts = attempt + 1
		status, respBody, err := r.attempt(ctx, job, scheduleTime, body)
		res.StatusCode, res.Body = status, respBody
		if err == nil {
			log.Info("scheduled run succeeded", "attempts", res.Attempts, "status", status)
			return res, nil
		}
		last = err
		if attempt >= job.Retry.RetryCount {
			break
		}
		wait := job.Retry.Backoff(attempt)
		if mx := time.Duration(job.Retry.MaxRetryDuration); mx > 0 && time.Since(started)+wait > mx {
			break
		}
		log.Warn("scheduled run attempt failed; retrying", "attempt", res.Attempts, "error", err, "backoff", wait.String())
		if err := sleep(ctx, wait); err != nil {
			return res, fmt.Errorf("run job %q at %s: %w", job.Name, schedule.FormatTime(scheduleTime), err)
		}
	}
	return res, fmt.Errorf("run job %q at %s: %d attempts failed, last: %w", job.Name, schedule.FormatTime(scheduleTime), res.Attempts, last)
}

// attempt sends one request and reports an error unless it answered 2xx.
func (r *Runner) attempt(ctx context.Context, job Job, scheduleTime time.Time, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, job.attemptDeadline())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, job.method(), job.Target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
	}
	for k, v := range job.Headers {
		req.Header.Set(k, v)
	}
	if len(body) > 0 && req.Header.Get("Content-Type") == "" {
		// Cloud Scheduler's default for a body without a Content-Type header.
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	schedule.SetHeaders(req.Header, job.Name, scheduleTime)
	if job.ServiceAccount != "" {
		if r.token == nil {
			return 0, nil, fmt.Errorf("mint token for %q: runner has no token source", job.ServiceAccount)
		}
		tok, err := r.token(ctx, job.ServiceAccount, job.audience())
		if err != nil {
			return 0, nil, fmt.Errorf("mint token for %q: %w", job.ServiceAccount, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", req.Method, job.Target, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, respBody, fmt.Errorf("read response of %s %s: %w", req.Method, job.Target, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, respBody, fmt.Errorf("%s %s: status %d: %s", req.Method, job.Target, resp.StatusCode, bytes.TrimSpace(respBody[:min(len(respBody), 200)]))
	}
	return resp.StatusCode, respBody, nil
}

// Run runs jobs on their schedules until ctx ends. Runs of one job never
// overlap: a tick that passes while the previous run is still retrying is
// skipped, as Cloud Scheduler does not start a job's next run while one is in
// progress. Failed runs are logged, not returned.
func (r *Runner) Run(ctx context.Context, jobs []Job) error {
	for _, j := range jobs {
		if err := j.Validate(); err != nil {
			return fmt.Errorf("run scheduler: job %q: %w", j.Name, err)
		}
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, j)
		}()
	}
	wg.Wait()
	return nil
}

// loop fires job at every tick of its schedule until ctx ends.
func (r *Runner) loop(ctx context.Context, job Job) {
	sched, _ := job.schedule() // validated by Run
	for {
		next := sched.Next(time.Now())
		if next.IsZero() {
			r.logger.Warn("schedule has no next run; job stopped", "job", job.Name)
			return
		}
		if err := sleep(ctx, time.Until(next)); err != nil {
			return
		}
		if _, err := r.RunOnce(ctx, job, next); err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return
			}
			r.logger.Error("scheduled run failed", "job", job.Name, "error", err)
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
