// Package schedule recognises requests sent by Cloud Scheduler and derives
// the idempotency key that makes a retried scheduler run start at most one
// batch.
//
// Cloud Scheduler retries a run whose target answered non-2xx or timed out,
// and every attempt of one run carries the same X-CloudScheduler-ScheduleTime.
// The job name plus that schedule time therefore names the run, not the
// attempt: the batch function uses it as the batch's idempotency key, so a
// retry after a lost 202 finds the batch the first attempt created.
package schedule

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Header names Cloud Scheduler sets on every HTTP target request.
const (
	HeaderScheduler    = "X-CloudScheduler"
	HeaderJobName      = "X-CloudScheduler-JobName"
	HeaderScheduleTime = "X-CloudScheduler-ScheduleTime"
	// UserAgent is the User-Agent Cloud Scheduler sends.
	UserAgent = "Google-Cloud-Scheduler"
)

// KeyPrefix starts every idempotency key derived from scheduler headers, so
// a scheduler key can never collide with a key a user chose by hand.
const KeyPrefix = "scheduler:"

// maxJobName bounds the job name taken from a header: Cloud Scheduler's own
// limit is 500 characters for the full resource name.
const maxJobName = 500

// IdempotencyKey returns the idempotency key of a scheduler-triggered
// request: "scheduler:{job name}@{schedule time in RFC 3339 UTC}". It reports
// false when r is not a Cloud Scheduler request (X-CloudScheduler is not
// "true") or when the job name or the schedule time is missing or malformed,
// in which case the caller treats the request as an ordinary one.
//
// The headers are not proof of origin: anyone can send them. That is
// harmless because the batch function scopes idempotency keys by the
// authenticated caller, so a forged header can only deduplicate the forger's
// own requests.
func IdempotencyKey(r *http.Request) (string, bool) {
	if !strings.EqualFold(strings.TrimSpace(r.Header.Get(HeaderScheduler)), "true") {
		return "", false
	}
	job := strings.TrimSpace(r.Header.Get(HeaderJobName))
	// A job name that is not UTF-8 would make an idempotency key Firestore
	// refuses to store (every run would answer 503); Cloud Scheduler's own
	// names are ASCII.
	if job == "" || len(job) > maxJobName || strings.ContainsAny(job, "@\n\r") || !utf8.ValidString(job) {
		return "", false
	}
	at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(r.Header.Get(HeaderScheduleTime)))
	if err != nil {
		return "", false
	}
	return Key(job, at), true
}

// MaxKeyLen bounds the keys Key returns, so they fit the batch function's
// idempotency-key limit (256 bytes).
const MaxKeyLen = 256

// maxPlainJob is the longest job name kept verbatim in a key; longer names
// (Cloud Scheduler allows 500 characters) are replaced by their SHA-256.
const maxPlainJob = 180

// Key builds the idempotency key of run at of job. Equal instants give equal
// keys whatever offset or precision the header was written with. The key is
// at most MaxKeyLen bytes.
func Key(job string, at time.Time) string {
	if len(job) > maxPlainJob {
		sum := sha256.Sum256([]byte(job))
		job = "sha256-" + hex.EncodeToString(sum[:])
	}
	return KeyPrefix + job + "@" + FormatTime(at)
}

// FormatTime writes t as Cloud Scheduler writes X-CloudScheduler-ScheduleTime:
// RFC 3339 in UTC ("Zulu").
func FormatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// SetHeaders sets on h the headers Cloud Scheduler sends for run at of job.
// The local scheduler runner uses it, so both sides share one definition.
func SetHeaders(h http.Header, job string, at time.Time) {
	h.Set(HeaderScheduler, "true")
	h.Set(HeaderJobName, job)
	h.Set(HeaderScheduleTime, FormatTime(at))
	h.Set("User-Agent", UserAgent)
}
