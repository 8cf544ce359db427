package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

// apiError is the API's error answer.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Fields  []struct {
			Field, Value, Reason string
		} `json:"fields"`
	} `json:"error"`
}

// TestLimits: each limit on a batch request is enforced with a clear
// error naming it, before anything is written.
func TestLimits(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	p := startProduct(t, env, product.Options{})
	alice := mustToken(t, p, "alice", false)
	node := names[0]
	quoted := func(prefix string, n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("%q", fmt.Sprintf("%s%d", prefix, i))
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
		wantText   string // in the message or a field
	}{
		{"body over 1 MiB", `{"labels":["a=b"],"nodes":[` + quoted("node-padding-to-exceed-the-limit-", 40_000) + `]}`, 413, "too_large", "exceeds 1048576 bytes"},
		{"more than 10,000 nodes", `{"labels":["a=b"],"nodes":[` + quoted("n", 10_001) + `]}`, 422, "invalid", "must have at most 10000 items"},
		{"more than 100 label changes", `{"labels":[` + quoted("k=", 101) + `],"nodes":["` + node + `"]}`, 422, "invalid", "must have at most 100 items"},
		{"more than 100 changes in all", `{"labels":[` + quoted("k=", 60) + `],"taints":[` + strings.ReplaceAll(quoted("t", 41)+",", `",`, `:NoSchedule",`) + `"t:NoSchedule"],"nodes":["` + node + `"]}`, 422, "invalid", "at most 100"},
		{"concurrency over 50", `{"labels":["a=b"],"nodes":["` + node + `"],"concurrency":51}`, 422, "invalid", "must be between 1 and 50"},
		{"idempotency key over 256 bytes", `{"labels":["a=b"],"nodes":["` + node + `"],"idempotency_key":"` + strings.Repeat("k", 257) + `"}`, 422, "invalid", "idempotency_key"},
		{"label value over 63 characters", `{"labels":["a=` + strings.Repeat("v", 64) + `"],"nodes":["` + node + `"]}`, 422, "invalid", "must be no more than 63"},
		{"two JSON objects", `{"labels":["a=b"],"nodes":["` + node + `"]}{}`, 400, "malformed", "one JSON object"},
		{"unknown field", `{"labels":["a=b"],"nodes":["` + node + `"],"admin":true}`, 400, "malformed", `"field":"admin","reason":"unknown field"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := call(t, http.MethodPost, p.APIURL+"/v1/batches", alice, tt.body)
			var e apiError
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("answer %d %.300s is not a JSON error: %v", code, b, err)
			}
			if code != tt.wantStatus || e.Error.Code != tt.wantCode || !strings.Contains(string(b), tt.wantText) {
				t.Errorf("POST = %d %.500s, want %d %s mentioning %q", code, b, tt.wantStatus, tt.wantCode, tt.wantText)
			}
		})
	}
	// Nothing of the refused requests was recorded: alice has no batch.
	iter := p.Firestore.Collection("batches").Where("owner", "==", "alice@example.com").Documents(t.Context())
	docs, err := iter.GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 0 {
		t.Errorf("refused requests recorded %d batches, want 0", len(docs))
	}
}

// TestRelayLimits: a client message over 4 KiB closes the connection
// with 1009 (message too big); the 101st subscription on one connection is
// refused with a message saying why; malformed messages are answered, not
// fatal.
func TestRelayLimits(t *testing.T) {
	env := harness.Start(t)
	p := startProduct(t, env, product.Options{})
	alice := mustToken(t, p, "alice", false)

	t.Run("message size", func(t *testing.T) {
		conn, _, err := dial(t.Context(), p.RelayURL, alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		big := `{"type":"subscribe","task_id":"` + strings.Repeat("a", 5000) + `"}`
		if err := conn.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		var ce *websocket.CloseError
		for {
			_, _, err = conn.ReadMessage()
			if err != nil {
				break
			}
		}
		if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
			t.Errorf("after a 5,000-byte message: %v, want close 1009 (message too big)", err)
		}
	})

	t.Run("subscriptions per connection", func(t *testing.T) {
		// A subscription the relay answered "not found" is over and stops
		// counting, so the limit is checked with 100 running batches that
		// stay subscribed (written straight to the store: the API's rate
		// limit would take minutes to create them).
		now := time.Now()
		for i := range 100 {
			b := &store.BatchDoc{ID: fmt.Sprintf("held-%03d", i), Owner: "alice@example.com", Total: 1, Concurrency: 1, Lanes: 1,
				AttemptTotal: 1, Attempt: 1, State: model.StateRunning, CreatedAt: now, StartedAt: now, AttemptStartedAt: now}
			if err := b.SetChange(change.Set{Labels: []change.Label{{Key: "held", Value: "true"}}}); err != nil {
				t.Fatal(err)
			}
			if err := p.Store.Create(t.Context(), b, nil); err != nil {
				t.Fatalf("create batch %s: %v", b.ID, err)
			}
		}
		conn, _, err := dial(t.Context(), p.RelayURL, alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := range 100 {
			if err := conn.WriteJSON(map[string]string{"type": "subscribe", "task_id": fmt.Sprintf("held-%03d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := conn.WriteJSON(map[string]string{"type": "subscribe", "task_id": "held-100"}); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			var m progress.Message
			if err := conn.ReadJSON(&m); err != nil {
				t.Fatalf("no refusal of the 101st subscription: %v", err)
			}
			if m.Type == progress.TypeError && m.TaskID != "held-100" {
				t.Errorf("subscription %s refused: %+v", m.TaskID, m)
			}
			if m.TaskID == "held-100" {
				if m.Type != progress.TypeError || !strings.Contains(m.Message, "too many subscriptions") {
					t.Errorf("101st subscription answered %+v, want a refusal saying too many subscriptions", m)
				}
				return
			}
		}
	})

	t.Run("malformed messages", func(t *testing.T) {
		conn, _, err := dial(t.Context(), p.RelayURL, alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for _, msg := range []string{`not json`, `{"type":"subscribe"}`, `{"type":"subscribe","task_id":"../../etc"}`, `{"type":"subscribe_all","all_users":true}`, `{"type":"x"}`, `[1,2]`} {
			if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			var m progress.Message
			if err := conn.ReadJSON(&m); err != nil {
				t.Fatalf("after %q: %v, want an error message and an open connection", msg, err)
			}
			if m.Type != progress.TypeError || m.Message == "" {
				t.Errorf("after %q: %+v, want an error message", msg, m)
			}
		}
	})
}

// TestRateLimit: past its burst, a user's next batch in the same minute is
// refused with 429, Retry-After and the rate_limited error naming the
// limit, and nothing is recorded; a repeated idempotent request is not
// charged; another user is unaffected.
func TestRateLimit(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	const burst = 3
	// One batch per minute sustained: the test's few seconds cannot refill
	// a token, so the burst+1-th batch is refused whatever the pace.
	p := startProduct(t, env, product.Options{RatePerMinute: 1, RateBurst: burst})
	alice := mustToken(t, p, "alice", false)
	bob := mustToken(t, p, "heidi", false) // another user who may patch nodes
	body := func(key string) string {
		return `{"labels":["nodebatch.dev/rate=x"],"nodes":["` + names[0] + `"],"dry_run":true,"idempotency_key":"` + key + `"}`
	}
	post := func(token, body string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.APIURL+"/v1/batches", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST /v1/batches: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("POST /v1/batches: read body: %v", err)
		}
		return resp.StatusCode, resp.Header, b
	}
	batchID := func(code int, b []byte) string {
		t.Helper()
		var c struct {
			BatchID string `json:"batch_id"`
		}
		if code/100 != 2 || json.Unmarshal(b, &c) != nil || c.BatchID == "" {
			t.Fatalf("POST /v1/batches = %d %.500s, want 2xx with a batch_id", code, b)
		}
		return c.BatchID
	}

	var first string
	for i := range burst {
		code, _, b := post(alice, body(fmt.Sprintf("alice-%d", i)))
		id := batchID(code, b)
		if i == 0 {
			first = id
		}
	}
	// The same idempotent request again finds its batch: not charged, so
	// not refused although alice's bucket is empty.
	code, _, b := post(alice, body("alice-0"))
	if got := batchID(code, b); got != first {
		t.Errorf("repeated idempotent request answered batch %s, want %s", got, first)
	}

	code, hdr, b := post(alice, body("alice-over"))
	if code != http.StatusTooManyRequests {
		t.Fatalf("batch %d of alice in a minute = %d %.500s, want 429", burst+1, code, b)
	}
	if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After = %q, want whole seconds in [1, 60]", hdr.Get("Retry-After"))
	}
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("429 answer %.500s is not a JSON error: %v", b, err)
	}
	if e.Error.Code != "rate_limited" || !strings.Contains(e.Error.Message, "batches") || !strings.Contains(e.Error.Message, "1 per minute") {
		t.Errorf("429 error = %+v, want code rate_limited and a message naming the per-minute limit", e.Error)
	}

	// Another user has a bucket of their own.
	code, _, b = post(bob, body("bob-0"))
	batchID(code, b)

	// The refused request recorded nothing: alice has exactly burst batches.
	docs, err := p.Firestore.Collection("batches").Where("owner", "==", "alice@example.com").Documents(t.Context()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != burst {
		t.Errorf("alice has %d batches recorded, want %d", len(docs), burst)
	}
}
