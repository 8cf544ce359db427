package batch

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nodebatch/nodebatch/shared/apierror"
)

// TestServe: the adapter writes a returned error with the one writer, logs
// a backend failure's cause once and never shows it to the client.
func TestServe(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   string
		wantLog    string // "" : nothing logged
	}{
		{"refusal, not logged", apierror.New(apierror.NotFound, "batch %q not found", "b"), 404,
			`{"error":{"code":"not_found","message":"batch \"b\" not found"}}`, ""},
		{"backend failure", failed("read batch", errors.New("firestore: deadline exceeded")), 503,
			`{"error":{"code":"unavailable","message":"read batch failed; try again"}}`, "firestore: deadline exceeded"},
		{"unexpected error", errors.New("nil map"), 500,
			`{"error":{"code":"internal","message":"internal error"}}`, "nil map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := &Handler{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			rec := httptest.NewRecorder()
			h.serve(func(http.ResponseWriter, *http.Request) error { return tt.err }).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code != tt.wantStatus || strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Errorf("answer = %d %s, want %d %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			switch {
			case tt.wantLog == "" && logs.Len() > 0:
				t.Errorf("logged %q, want nothing", logs.String())
			case tt.wantLog != "" && strings.Count(logs.String(), tt.wantLog) != 1:
				t.Errorf("log %q, want the cause %q once", logs.String(), tt.wantLog)
			}
		})
	}
}
