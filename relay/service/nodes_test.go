package service

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
)

// TestNodesListAsTheCaller: GET /v1/nodes reaches the API server as the
// signed-in user (Impersonate-User and -Group), and a caller who maps to no
// Kubernetes user gets 403 without any request reaching it. The API server
// is an httptest fake recording the headers: what is checked is the
// request the relay sends.
func TestNodesListAsTheCaller(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" as "+r.Header.Get("Impersonate-User")+" "+strings.Join(r.Header.Values("Impersonate-Group"), ","))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"NodeList","apiVersion":"v1","metadata":{},"items":[]}`))
	}))
	defer api.Close()
	h, err := NodesHandler(&rest.Config{Host: api.URL}, ratelimit.New(ratelimit.Config{PerMinute: 100, Burst: 100}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		p        auth.Principal
		wantCode int
		wantSeen []string
	}{
		{
			name:     "a user",
			p:        auth.Principal{Subject: "alice@example.com", KubeUser: "alice@example.com", KubeGroups: []string{"team-a"}},
			wantCode: http.StatusOK,
			wantSeen: []string{"/api/v1/nodes as alice@example.com team-a"},
		},
		{
			name:     "no Kubernetes user",
			p:        auth.Principal{Subject: "svc#1"},
			wantCode: http.StatusForbidden,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			r := httptest.NewRequest(http.MethodGet, "/v1/nodes", nil)
			r = r.WithContext(auth.WithPrincipal(r.Context(), tt.p))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantCode {
				t.Errorf("GET /v1/nodes = %d %s, want %d", w.Code, w.Body, tt.wantCode)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tt.wantSeen, seen); diff != "" {
				t.Errorf("requests to the API server (-want +got):\n%s", diff)
			}
		})
	}
}
