package scheduler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/scheduler"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/request"
)

// sent is what the target saw of one request.
type sent struct {
	Method       string
	Path         string
	Body         string
	ContentType  string
	UserAgent    string
	Scheduler    string
	JobName      string
	ScheduleTime string
	Auth         string
}

// target is an httptest server that records requests and answers with the
// next status of a script (the last one repeats).
type target struct {
	mu       sync.Mutex
	statuses []int
	got      []sent
	srv      *httptest.Server
	notify   chan struct{}
}

func newTarget(t *testing.T, statuses ...int) *target {
	t.Helper()
	tg := &target{statuses: statuses, notify: make(chan struct{}, 100)}
	tg.srv = httptest.NewServer(http.HandlerFunc(tg.serve))
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	tg.mu.Lock()
	tg.got = append(tg.got, sent{
		Method: r.Method, Path: r.URL.Path, Body: string(b),
		ContentType: r.Header.Get("Content-Type"), UserAgent: r.Header.Get("User-Agent"),
		Scheduler: r.Header.Get("X-CloudScheduler"), JobName: r.Header.Get("X-CloudScheduler-JobName"),
		ScheduleTime: r.Header.Get("X-CloudScheduler-ScheduleTime"), Auth: r.Header.Get("Authorization"),
	})
	i := min(len(tg.got)-1, len(tg.statuses)-1)
	status := tg.statuses[i]
	tg.mu.Unlock()
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"attempt":%d}`, i+1)
	tg.notify <- struct{}{}
}

func (tg *target) requests() []sent {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]sent(nil), tg.got...)
}

// fakeToken mints "tok(sa|aud)" so tests see which identity and audience
// the runner asked for.
func fakeToken(_ context.Context, sa, aud string) (string, error) {
	return "tok(" + sa + "|" + aud + ")", nil
}

func intp(i int) *int { return &i }

func TestRunOnceSendsWhatCloudSchedulerSends(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		job  func(url string) scheduler.Job
		want func(url string) sent
	}{
		{
			name: "json body with oidc token",
			job: func(url string) scheduler.Job {
				return scheduler.Job{
					Name: "spot-nightly", Schedule: "0 22 * * *", Target: url + "/v1/batches",
					Headers:        map[string]string{"Content-Type": "application/json"},
					Body:           json.RawMessage(`{"selector":"pool=spot","changes":["x=y:NoSchedule"]}`),
					ServiceAccount: "scheduler@p.iam.gserviceaccount.com", Audience: "https://batch.example",
				}
			},
			want: func(url string) sent {
				return sent{
					Method: "POST", Path: "/v1/batches", Body: `{"selector":"pool=spot","changes":["x=y:NoSchedule"]}`,
					ContentType: "application/json", UserAgent: "Google-Cloud-Scheduler", Scheduler: "true",
					JobName: "spot-nightly", ScheduleTime: "2026-11-27T22:00:00Z",
					Auth: "Bearer tok(scheduler@p.iam.gserviceaccount.com|https://batch.example)",
				}
			},
		},
		{
			name: "audience defaults to target, string body as text, default content type",
			job: func(url string) scheduler.Job {
				return scheduler.Job{
					Name: "j", Schedule: "*/5 * * * *", Target: url + "/hook?x=1", Method: "put",
					Body: json.RawMessage(`"plain text"`), ServiceAccount: "sa@p.iam.gserviceaccount.com",
				}
			},
			want: func(url string) sent {
				return sent{
					Method: "PUT", Path: "/hook", Body: "plain text", ContentType: "application/octet-stream",
					UserAgent: "Google-Cloud-Scheduler", Scheduler: "true", JobName: "j",
					ScheduleTime: "2026-11-27T22:00:00Z", Auth: "Bearer tok(sa@p.iam.gserviceaccount.com|" + url + "/hook?x=1)",
				}
			},
		},
		{
			name: "no service account, no token, no body",
			job: func(url string) scheduler.Job {
				return scheduler.Job{Name: "ping", Schedule: "@hourly", Target: url + "/", Method: "GET"}
			},
			want: func(url string) sent {
				return sent{
					Method: "GET", Path: "/", UserAgent: "Google-Cloud-Scheduler", Scheduler: "true",
					JobName: "ping", ScheduleTime: "2026-11-27T22:00:00Z",
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := newTarget(t, http.StatusAccepted)
			r := scheduler.NewRunner(tg.srv.Client(), fakeToken, nil)
			res, err := r.RunOnce(context.Background(), tt.job(tg.srv.URL), at.In(time.FixedZone("X", -5*3600)))
			if err != nil {
				t.Fatalf("RunOnce() error = %v", err)
			}
			if diff := cmp.Diff([]sent{tt.want(tg.srv.URL)}, tg.requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			wantRes := scheduler.Result{Attempts: 1, StatusCode: http.StatusAccepted, Body: []byte(`{"attempt":1}`)}
			if diff := cmp.Diff(wantRes, res); diff != "" {
				t.Errorf("RunOnce() result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunOnceRetriesWithSameScheduleTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		statuses     []int
		retryCount   int
		wantAttempts int
		wantStatus   int
		wantErr      bool
	}{
		{name: "succeeds on third attempt", statuses: []int{503, 500, 202}, retryCount: 3, wantAttempts: 3, wantStatus: 202},
		{name: "4xx is retried too", statuses: []int{429, 200}, retryCount: 1, wantAttempts: 2, wantStatus: 200},
		{name: "retries exhausted", statuses: []int{500}, retryCount: 2, wantAttempts: 3, wantStatus: 500, wantErr: true},
		{name: "no retry configured", statuses: []int{502}, retryCount: 0, wantAttempts: 1, wantStatus: 502, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := newTarget(t, tt.statuses...)
			job := scheduler.Job{
				Name: "spot-nightly", Schedule: "0 22 * * *", Target: tg.srv.URL + "/v1/batches",
				Body: json.RawMessage(`{}`), ServiceAccount: "sa@p.iam.gserviceaccount.com",
				Retry: scheduler.RetryConfig{
					RetryCount: tt.retryCount, MinBackoff: scheduler.Duration(time.Millisecond),
					MaxBackoff: scheduler.Duration(4 * time.Millisecond), MaxDoublings: intp(2),
				},
			}
			res, err := scheduler.NewRunner(tg.srv.Client(), fakeToken, nil).RunOnce(context.Background(), job, at)
			if (err != nil) != tt.wantErr {
				t.Fatalf("RunOnce() error = %v, want error %v", err, tt.wantErr)
			}
			if res.Attempts != tt.wantAttempts || res.StatusCode != tt.wantStatus {
				t.Errorf("RunOnce() = %d attempts, status %d, want %d, %d", res.Attempts, res.StatusCode, tt.wantAttempts, tt.wantStatus)
			}
			got := tg.requests()
			if len(got) != tt.wantAttempts {
				t.Fatalf("target saw %d requests, want %d", len(got), tt.wantAttempts)
			}
			for i, r := range got {
				if r.ScheduleTime != "2026-11-27T22:00:00Z" || r.JobName != "spot-nightly" || r.Body != "{}" || r.Auth == "" {
					t.Errorf("attempt %d = %+v, want the run's schedule time, job name, body and a token", i+1, r)
				}
			}
		})
	}
}

func TestRunOnceTokenFailure(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, http.StatusOK)
	job := scheduler.Job{Name: "j", Schedule: "@daily", Target: tg.srv.URL, ServiceAccount: "sa@p.iam.gserviceaccount.com"}
	failing := func(context.Context, string, string) (string, error) { return "", fmt.Errorf("issuer down") }
	for name, r := range map[string]*scheduler.Runner{
		"token source fails": scheduler.NewRunner(tg.srv.Client(), failing, nil),
		"no token source":    scheduler.NewRunner(tg.srv.Client(), nil, nil),
	} {
		if _, err := r.RunOnce(context.Background(), job, time.Now()); err == nil {
			t.Errorf("%s: RunOnce() error = nil, want an error", name)
		}
	}
	if n := len(tg.requests()); n != 0 {
		t.Errorf("target saw %d requests without a token, want 0", n)
	}
}

func TestRunOnceRefusesInvalidJob(t *testing.T) {
	t.Parallel()
	_, err := scheduler.NewRunner(nil, fakeToken, nil).RunOnce(context.Background(), scheduler.Job{Name: "bad name"}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("RunOnce(invalid job) error = %v, want one naming the name", err)
	}
}

func TestRunFiresOnSchedule(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, http.StatusOK)
	job := scheduler.Job{Name: "tick", Schedule: "@every 1s", Target: tg.srv.URL + "/tick"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- scheduler.NewRunner(tg.srv.Client(), nil, nil).Run(ctx, []scheduler.Job{job}) }()
	select {
	case <-tg.notify:
	case <-time.After(30 * time.Second):
		t.Fatal("no scheduled request within 30s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	r := tg.requests()[0]
	at, err := time.Parse(time.RFC3339, r.ScheduleTime)
	if err != nil || at.Nanosecond() != 0 || r.JobName != "tick" {
		t.Errorf("scheduled request = %+v, want job %q and a whole-second RFC 3339 schedule time", r, "tick")
	}
}

func TestRunRefusesInvalidJobs(t *testing.T) {
	t.Parallel()
	err := scheduler.NewRunner(nil, nil, nil).Run(context.Background(), []scheduler.Job{{Name: "x", Schedule: "not cron", Target: "http://h/"}})
	if err == nil || !strings.Contains(err.Error(), "schedule") {
		t.Errorf("Run(bad schedule) error = %v, want one naming the schedule", err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	// Cloud Scheduler's documented example: min 10s, max 300s, 3 doublings.
	c := scheduler.RetryConfig{
		MinBackoff: scheduler.Duration(10 * time.Second), MaxBackoff: scheduler.Duration(300 * time.Second), MaxDoublings: intp(3),
	}
	var got []time.Duration
	for n := range 8 {
		got = append(got, c.Backoff(n))
	}
	s := time.Second
	want := []time.Duration{10 * s, 20 * s, 40 * s, 80 * s, 160 * s, 240 * s, 300 * s, 300 * s}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Backoff(0..7) (-want +got):\n%s", diff)
	}
	if got, want := (scheduler.RetryConfig{}).Backoff(0), 5*time.Second; got != want {
		t.Errorf("default Backoff(0) = %v, want %v", got, want)
	}
	if got, want := (scheduler.RetryConfig{}).Backoff(60), time.Hour; got != want {
		t.Errorf("default Backoff(60) = %v, want %v", got, want)
	}
}

func TestLoadJobsExample(t *testing.T) {
	t.Parallel()
	f, err := os.Open("jobs.example.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	jobs, err := scheduler.LoadJobs(f)
	if err != nil {
		t.Fatalf("LoadJobs(jobs.example.json) error = %v", err)
	}
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
	}
	if diff := cmp.Diff([]string{"spot-nightly-taint", "spot-morning-untaint"}, names); diff != "" {
		t.Errorf("job names (-want +got):\n%s", diff)
	}
}

// TestExampleBodiesAreValidRequests: the example jobs send bodies the batch
// function accepts (strict decode and full validation).
func TestExampleBodiesAreValidRequests(t *testing.T) {
	t.Parallel()
	f, err := os.Open("jobs.example.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	jobs, err := scheduler.LoadJobs(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		var b request.Batch
		if e := request.Decode(bytes.NewReader(j.Body), &b); e != nil {
			t.Errorf("job %s: body %s does not decode: %v", j.Name, j.Body, e)
			continue
		}
		if _, e := b.Validate(request.DefaultLimits(), change.DefaultProtection()); e != nil {
			t.Errorf("job %s: body %s is refused: %v", j.Name, j.Body, e)
		}
		if ct := j.Headers["Content-Type"]; ct != "application/json" {
			t.Errorf("job %s: Content-Type %q, want application/json", j.Name, ct)
		}
	}
}

func TestLoadJobsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, json, wantInErr string
	}{
		{"not an array", `{"name":"x"}`, "decode"},
		{"unknown field", `[{"name":"x","schedule":"@daily","target":"http://h/","retries":3}]`, "retries"},
		{"bad name", `[{"name":"a b","schedule":"@daily","target":"http://h/"}]`, "name"},
		{"bad schedule", `[{"name":"x","schedule":"61 * * * *","target":"http://h/"}]`, "schedule"},
		{"zone in spec", `[{"name":"x","schedule":"CRON_TZ=UTC 0 1 * * *","target":"http://h/"}]`, "time_zone"},
		{"bad zone", `[{"name":"x","schedule":"@daily","time_zone":"Mars/Olympus","target":"http://h/"}]`, "time_zone"},
		{"relative target", `[{"name":"x","schedule":"@daily","target":"/v1/batches"}]`, "target"},
		{"bad method", `[{"name":"x","schedule":"@daily","target":"http://h/","method":"FETCH"}]`, "method"},
		{"too many retries", `[{"name":"x","schedule":"@daily","target":"http://h/","retry":{"retry_count":6}}]`, "retry_count"},
		{"bad duration", `[{"name":"x","schedule":"@daily","target":"http://h/","retry":{"min_backoff":"soon"}}]`, "soon"},
		{"min above max", `[{"name":"x","schedule":"@daily","target":"http://h/","retry":{"min_backoff":"2m","max_backoff":"1m"}}]`, "min_backoff"},
		{"audience without account", `[{"name":"x","schedule":"@daily","target":"http://h/","audience":"a"}]`, "audience"},
		{"duplicate", `[{"name":"x","schedule":"@daily","target":"http://h/"},{"name":"x","schedule":"@daily","target":"http://h/"}]`, "duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := scheduler.LoadJobs(strings.NewReader(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("LoadJobs(%s) error = %v, want one containing %q", tt.json, err, tt.wantInErr)
			}
		})
	}
}

func FuzzLoadJobs(f *testing.F) {
	b, err := os.ReadFile("jobs.example.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add(`[{"name":"x","schedule":"@every 1s","target":"http://h/","body":"\"s\""}]`)
	f.Fuzz(func(t *testing.T, s string) {
		jobs, err := scheduler.LoadJobs(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, j := range jobs {
			if err := j.Validate(); err != nil {
				t.Errorf("LoadJobs accepted job %q that Validate refuses: %v", j.Name, err)
			}
		}
	})
}
