package schedule_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/schedule"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers map[string]string
		want    string
		wantOK  bool
	}{
		{
			name: "scheduler request",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-JobName":      "spot-nightly",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00Z",
			},
			want:   "scheduler:spot-nightly@2026-11-27T22:00:00Z",
			wantOK: true,
		},
		{
			name: "job name not UTF-8",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-JobName":      "spot-\xffnightly",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00Z",
			},
		},
		{
			name: "offset normalised to UTC",
			headers: map[string]string{
				"X-CloudScheduler":              "TRUE",
				"X-CloudScheduler-JobName":      "spot-nightly",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T23:00:00+01:00",
			},
			want:   "scheduler:spot-nightly@2026-11-27T22:00:00Z",
			wantOK: true,
		},
		{
			name: "fractional seconds kept",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-JobName":      "projects/p/locations/l/jobs/j",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00.250Z",
			},
			want:   "scheduler:projects/p/locations/l/jobs/j@2026-11-27T22:00:00.25Z",
			wantOK: true,
		},
		{
			name: "not a scheduler request",
			headers: map[string]string{
				"X-CloudScheduler-JobName":      "spot-nightly",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00Z",
			},
		},
		{
			name: "scheduler flag false",
			headers: map[string]string{
				"X-CloudScheduler":              "false",
				"X-CloudScheduler-JobName":      "spot-nightly",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00Z",
			},
		},
		{
			name: "missing job name",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00Z",
			},
		},
		{
			name: "job name with separator",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-JobName":      "a@b",
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00Z",
			},
		},
		{
			name: "job name too long",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-JobName":      strings.Repeat("j", 501),
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00Z",
			},
		},
		{
			name: "long job name hashed",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-JobName":      strings.Repeat("j", 500),
				"X-CloudScheduler-ScheduleTime": "2026-11-27T22:00:00.123456789-11:00",
			},
			want:   "scheduler:sha256-" + sha256Hex(strings.Repeat("j", 500)) + "@2026-11-28T09:00:00.123456789Z",
			wantOK: true,
		},
		{
			name: "missing schedule time",
			headers: map[string]string{
				"X-CloudScheduler":         "true",
				"X-CloudScheduler-JobName": "spot-nightly",
			},
		},
		{
			name: "malformed schedule time",
			headers: map[string]string{
				"X-CloudScheduler":              "true",
				"X-CloudScheduler-JobName":      "spot-nightly",
				"X-CloudScheduler-ScheduleTime": "yesterday at ten",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/v1/batches", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			got, ok := schedule.IdempotencyKey(r)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("IdempotencyKey() = %q, %v, want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestSetHeadersRoundTrip checks that what the runner sends is what the
// batch function recognises, and that two attempts of one run share a key
// while two runs do not.
func TestSetHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	run := time.Date(2026, 11, 27, 22, 0, 0, 0, time.FixedZone("CET", 3600))
	keyOf := func(job string, at time.Time) string {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/v1/batches", nil)
		schedule.SetHeaders(r.Header, job, at)
		k, ok := schedule.IdempotencyKey(r)
		if !ok {
			t.Fatalf("IdempotencyKey(SetHeaders(%q, %v)) not recognised; headers %v", job, at, r.Header)
		}
		return k
	}
	first, retry := keyOf("spot-nightly", run), keyOf("spot-nightly", run.UTC())
	if diff := cmp.Diff(first, retry); diff != "" {
		t.Errorf("key of a retry differs (-want +got):\n%s", diff)
	}
	if next := keyOf("spot-nightly", run.Add(24*time.Hour)); next == first {
		t.Errorf("next day's run has the same key %q", next)
	}
	if other := keyOf("gpu-nightly", run); other == first {
		t.Errorf("another job's run has the same key %q", other)
	}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	schedule.SetHeaders(r.Header, "j", run)
	want := http.Header{
		"X-Cloudscheduler":              {"true"},
		"X-Cloudscheduler-Jobname":      {"j"},
		"X-Cloudscheduler-Scheduletime": {"2026-11-27T21:00:00Z"},
		"User-Agent":                    {"Google-Cloud-Scheduler"},
	}
	if diff := cmp.Diff(want, r.Header); diff != "" {
		t.Errorf("SetHeaders() headers (-want +got):\n%s", diff)
	}
}

func FuzzIdempotencyKey(f *testing.F) {
	f.Add("spot-nightly", "2026-11-27T22:00:00Z")
	f.Add("", "")
	f.Add("a@b", "2026-11-27T22:00:00+01:00")
	f.Add("spot-\xffnightly", "2026-11-27T22:00:00Z")
	f.Fuzz(func(t *testing.T, job, at string) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("X-CloudScheduler", "true")
		r.Header.Set("X-CloudScheduler-JobName", job)
		r.Header.Set("X-CloudScheduler-ScheduleTime", at)
		k, ok := schedule.IdempotencyKey(r)
		if !ok {
			return
		}
		if len(k) > schedule.MaxKeyLen {
			t.Errorf("IdempotencyKey(%q, %q) is %d bytes, want at most %d", job, at, len(k), schedule.MaxKeyLen)
		}
		if !utf8.ValidString(k) {
			t.Errorf("IdempotencyKey(%q, %q) = %q: not UTF-8, which Firestore refuses to store", job, at, k)
		}
		if !strings.HasPrefix(k, schedule.KeyPrefix) || strings.Count(k, "@") != 1 {
			t.Errorf("IdempotencyKey(%q, %q) = %q: want one %q and prefix %q", job, at, k, "@", schedule.KeyPrefix)
		}
	})
}
