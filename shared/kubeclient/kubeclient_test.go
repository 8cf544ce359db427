package kubeclient

import (
	"context"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// apiServer answers every request with an empty NodeList and records the
// impersonation headers and how many connections were opened.
type apiServer struct {
	srv *httptest.Server

	mu    sync.Mutex
	seen  []http.Header
	conns int
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	a := &apiServer{}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := http.Header{}
		for k, v := range r.Header {
			if k == "Authorization" || len(k) > len("Impersonate") && k[:len("Impersonate")] == "Impersonate" {
				h[k] = v
			}
		}
		a.mu.Lock()
		a.seen = append(a.seen, h)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"NodeList","apiVersion":"v1","metadata":{},"items":[]}`))
	}))
	a.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			a.mu.Lock()
			a.conns++
			a.mu.Unlock()
		}
	}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *apiServer) config() *rest.Config {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	return &rest.Config{Host: a.srv.URL, BearerToken: "nodebatch-token", TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: 100, Burst: 100}
}

func TestClientHeaders(t *testing.T) {
	a := newAPIServer(t)
	pool, err := New(a.config())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tests := []struct {
		name  string
		user  User
		batch string
		want  http.Header
	}{
		{
			name: "user, groups and batch id",
			user: User{Name: "alice@example.com", Groups: []string{"team-a", "oncall"}}, batch: "20261201t221500-ab12",
			want: http.Header{
				"Authorization":     {"Bearer nodebatch-token"},
				"Impersonate-User":  {"alice@example.com"},
				"Impersonate-Group": {"team-a", "oncall"},
				"Impersonate-Extra-Nodebatch.dev%2fbatch-Id": {"20261201t221500-ab12"},
			},
		},
		{
			name: "no batch: no extra",
			user: User{Name: "bob@example.com"},
			want: http.Header{
				"Authorization":    {"Bearer nodebatch-token"},
				"Impersonate-User": {"bob@example.com"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := pool.Client(tt.user, tt.batch)
			if err != nil {
				t.Fatalf("Client: %v", err)
			}
			if _, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
				t.Fatalf("List: %v", err)
			}
			a.mu.Lock()
			got := a.seen[len(a.seen)-1]
			a.mu.Unlock()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExtraHeaderEscaped checks the header name the API server unescapes
// back to nodebatch.dev/batch-id: the "/" must be percent-encoded.
func TestExtraHeaderEscaped(t *testing.T) {
	a := newAPIServer(t)
	pool, err := New(a.config())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c, err := pool.Client(User{Name: "alice"}, "b1")
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	if _, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatalf("List: %v", err)
	}
	a.mu.Lock()
	h := a.seen[0]
	a.mu.Unlock()
	if got := h.Values("Impersonate-Extra-nodebatch.dev%2Fbatch-id"); len(got) != 1 || got[0] != "b1" {
		t.Errorf("Impersonate-Extra-nodebatch.dev%%2Fbatch-id = %q, want [b1] (headers %v)", got, h)
	}
}

// TestOneTransport: many users and batches, one after another, share one
// connection to the API server, and the same (user, batch) gets the same
// client.
func TestOneTransport(t *testing.T) {
	a := newAPIServer(t)
	pool, err := New(a.config())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for i, u := range []string{"alice", "bob", "carol", "alice", "dave"} {
		c, err := pool.Client(User{Name: u}, "batch-"+string(rune('a'+i)))
		if err != nil {
			t.Fatalf("Client(%s): %v", u, err)
		}
		if _, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
			t.Fatalf("List as %s: %v", u, err)
		}
	}
	a.mu.Lock()
	conns, reqs := a.conns, len(a.seen)
	a.mu.Unlock()
	if conns != 1 || reqs != 5 {
		t.Errorf("connections = %d for %d requests, want 1 for 5", conns, reqs)
	}
	c1, _ := pool.Client(User{Name: "alice", Groups: []string{"g"}}, "b")
	c2, _ := pool.Client(User{Name: "alice", Groups: []string{"g"}}, "b")
	c3, _ := pool.Client(User{Name: "alice"}, "b")
	if c1 != c2 {
		t.Error("Client(alice, b) twice gave two clients, want the cached one")
	}
	if c1 == c3 {
		t.Error("Client with and without groups gave the same client")
	}
}

func TestRefusals(t *testing.T) {
	a := newAPIServer(t)
	pool, err := New(a.config())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := pool.Client(User{}, "b"); !errors.Is(err, ErrNoUser) {
		t.Errorf("Client(no user) error = %v, want ErrNoUser", err)
	}
	cfg := a.config()
	cfg.Impersonate.UserName = "someone"
	if _, err := New(cfg); err == nil {
		t.Error("New(config that impersonates) = nil error, want a refusal")
	}
}

func TestHandler(t *testing.T) {
	a := newAPIServer(t)
	pool, err := New(a.config())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := pool.Handler(func(r *http.Request) User { return User{Name: r.Header.Get("X-Test-User")} }, func(c kubernetes.Interface) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := c.CoreV1().Nodes().List(r.Context(), metav1.ListOptions{}); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
			}
		})
	})
	req := httptest.NewRequest(http.MethodGet, "/v1/nodes", nil)
	req.Header.Set("X-Test-User", "bob@example.com")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	a.mu.Lock()
	seen := len(a.seen)
	var got string
	if seen > 0 {
		got = a.seen[0].Get("Impersonate-User")
	}
	a.mu.Unlock()
	if rec.Code != http.StatusOK || got != "bob@example.com" {
		t.Errorf("as bob: %d, Impersonate-User %q; want 200 as bob@example.com", rec.Code, got)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/nodes", nil))
	a.mu.Lock()
	after := len(a.seen)
	a.mu.Unlock()
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `"forbidden"`) || after != seen {
		t.Errorf("no user: %d %s, %d more API requests; want 403 forbidden and none", rec.Code, rec.Body, after-seen)
	}
}
