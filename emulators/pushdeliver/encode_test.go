package pushdeliver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/go-cmp/cmp"
)

func TestNewRequest(t *testing.T) {
	pt := time.Date(2026, 11, 27, 3, 0, 0, 123000000, time.FixedZone("x", 3600))
	m := &pubsub.Message{
		ID:          "42",
		Data:        []byte(`{"node":"n-1"}`),
		Attributes:  map[string]string{"ce-type": "dev.nodebatch.node.patch.v1"},
		PublishTime: pt,
		OrderingKey: "b1/3",
	}
	tg := target{endpoint: "http://127.0.0.1:1/x", topic: "projects/p/topics/t", subscription: "projects/p/subscriptions/s"}
	wantMsg := map[string]any{
		"data":        "eyJub2RlIjoibi0xIn0=",
		"attributes":  map[string]any{"ce-type": "dev.nodebatch.node.patch.v1"},
		"messageId":   "42",
		"publishTime": "2026-11-27T02:00:00.123Z",
		"orderingKey": "b1/3",
	}
	envMsg := map[string]any{"message_id": "42", "publish_time": "2026-11-27T02:00:00.123Z"}
	for k, v := range wantMsg {
		envMsg[k] = v
	}
	tests := []struct {
		name        string
		format      Format
		wantHeaders map[string]string
		wantBody    map[string]any
	}{
		{
			name:   "cloudevent",
			format: FormatCloudEvent,
			wantHeaders: map[string]string{
				"Content-Type":   "application/json",
				"Ce-Specversion": "1.0",
				"Ce-Type":        "google.cloud.pubsub.topic.v1.messagePublished",
				"Ce-Source":      "//pubsub.googleapis.com/projects/p/topics/t",
				"Ce-Id":          "42",
				"Ce-Time":        "2026-11-27T02:00:00.123Z",
			},
			wantBody: map[string]any{"message": wantMsg, "subscription": "projects/p/subscriptions/s"},
		},
		{
			name:        "push envelope",
			format:      FormatPushEnvelope,
			wantHeaders: map[string]string{"Content-Type": "application/json"},
			wantBody:    map[string]any{"message": envMsg, "subscription": "projects/p/subscriptions/s", "deliveryAttempt": 3.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := newRequest(context.Background(), tt.format, tg, m, 3)
			if err != nil {
				t.Fatalf("newRequest: %v", err)
			}
			if req.Method != http.MethodPost || req.URL.String() != tg.endpoint {
				t.Errorf("request = %s %s, want POST %s", req.Method, req.URL, tg.endpoint)
			}
			gotHeaders := map[string]string{}
			for k := range req.Header {
				gotHeaders[k] = req.Header.Get(k)
			}
			if diff := cmp.Diff(tt.wantHeaders, gotHeaders); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			b, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			var gotBody map[string]any
			if err := json.Unmarshal(b, &gotBody); err != nil {
				t.Fatalf("decode body %s: %v", b, err)
			}
			if diff := cmp.Diff(tt.wantBody, gotBody); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []Format{FormatCloudEvent, FormatPushEnvelope} {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v, want %v", f.String(), got, err, f)
		}
	}
	if _, err := ParseFormat("binary"); err == nil {
		t.Errorf("ParseFormat(%q) = nil error, want an error", "binary")
	}
}

func TestBackoff(t *testing.T) {
	d := &Deliverer{cfg: Config{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	tests := []struct {
		attempt int
		ceiling time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{30, time.Second},
	}
	for _, tt := range tests {
		for range 50 {
			got := d.backoff(tt.attempt)
			if got < tt.ceiling/2 || got > tt.ceiling {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tt.attempt, got, tt.ceiling/2, tt.ceiling)
			}
		}
	}
}

func TestKeyLocks(t *testing.T) {
	var k keyLocks
	var mu sync.Mutex
	inKey := map[string]int{}
	maxInKey := 0
	var wg sync.WaitGroup
	for i := range 200 {
		key := []string{"a", "b", "c", "d"}[i%4]
		wg.Go(func() {
			unlock := k.lock(key)
			mu.Lock()
			inKey[key]++
			maxInKey = max(maxInKey, inKey[key])
			mu.Unlock()
			time.Sleep(100 * time.Microsecond)
			mu.Lock()
			inKey[key]--
			mu.Unlock()
			unlock()
		})
	}
	wg.Wait()
	if maxInKey != 1 {
		t.Errorf("max holders of one key = %d, want 1", maxInKey)
	}
	if len(k.m) != 0 {
		t.Errorf("key locks left after all unlocked: %d, want 0", len(k.m))
	}
	// The empty key is never locked: two holders at once must not block.
	u1, u2 := k.lock(""), k.lock("")
	u1()
	u2()
}
