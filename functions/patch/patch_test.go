package patch

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUndecodableEventsAreAcked: an event that can never be processed is
// acknowledged (2xx), not redelivered forever. The runner is never reached.
func TestUndecodableEventsAreAcked(t *testing.T) {
	h := &Handler{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mux, err := h.Mux(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tests := []struct {
		name, path, ceType, body string
		want                     int
	}{
		{"not a messagePublished event", "/", "com.example.other", `{}`, http.StatusOK},
		{"data not MessagePublishedData", "/", "google.cloud.pubsub.topic.v1.messagePublished", `[1,2]`, http.StatusOK},
		{"message of another type", "/", "google.cloud.pubsub.topic.v1.messagePublished",
			`{"message":{"data":"e30=","attributes":{"ce-specversion":"1.0","ce-type":"x"}},"subscription":"s"}`, http.StatusOK},
		{"dead letter garbage", "/deadletter", "google.cloud.pubsub.topic.v1.messagePublished", `{"message":{"data":"!!"}}`, http.StatusOK},
		{"neither a CloudEvent nor a push envelope", "/", "", `hello`, http.StatusBadRequest},
		{"push envelope of another message", "/projects/p/topics/t", "",
			`{"message":{"data":"e30=","attributes":{"ce-specversion":"1.0","ce-type":"x"},"messageId":"9"},"subscription":"projects/p/subscriptions/s"}`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if tt.ceType != "" {
				req.Header.Set("ce-specversion", "1.0")
				req.Header.Set("ce-id", "1")
				req.Header.Set("ce-source", "//pubsub.googleapis.com/projects/p/topics/t")
				req.Header.Set("ce-type", tt.ceType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("POST %s = %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}
