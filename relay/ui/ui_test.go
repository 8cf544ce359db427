package ui_test

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodebatch/nodebatch/relay/ui"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
)

// importRe finds ES module imports and the page's script and stylesheet references.
var importRe = regexp.MustCompile(`(?:from\s+'|import\s+'|src="|href=")(\.{0,2}/?[\w./-]+\.(?:js|css))["']`)

// TestFSReferencesResolve checks that every module and stylesheet the page
// loads is embedded, so a renamed file cannot ship a broken UI.
func TestFSReferencesResolve(t *testing.T) {
	files := ui.FS()
	if _, err := fs.Stat(files, "index.html"); err != nil {
		t.Fatalf("index.html not embedded: %v", err)
	}
	checked := 0
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".html")) {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		dir := p[:strings.LastIndex("/"+p, "/")]
		for _, m := range importRe.FindAllStringSubmatch(string(b), -1) {
			ref := strings.TrimPrefix(m[1], "./")
			target := ref
			if dir != "" {
				target = dir + "/" + ref
			}
			if _, err := fs.Stat(files, cleanPath(target)); err != nil {
				t.Errorf("%s references %q: %v", p, m[1], err)
			}
			checked++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Errorf("found %d references, want the page's modules (at least 10)", checked)
	}
}

func cleanPath(p string) string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}

func TestFileServerTypes(t *testing.T) {
	srv := httptest.NewServer(http.FileServerFS(ui.FS()))
	defer srv.Close()
	for path, want := range map[string]string{"/": "text/html", "/js/main.js": "text/javascript", "/app.css": "text/css"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Content-Type"); res.StatusCode != 200 || !strings.HasPrefix(got, want) {
			t.Errorf("GET %s = %d %q, want 200 %s", path, res.StatusCode, got, want)
		}
	}
}

func TestConfigHandler(t *testing.T) {
	h := ui.ConfigHandler(ui.Config{Issuer: "http://127.0.0.1:8093", ClientID: "nodebatch", DevIssuer: true,
		DevUsers: []ui.DevUser{{Name: "alice", Role: "user"}}})
	tests := []struct {
		method   string
		wantCode int
		wantBody map[string]any
	}{
		{"GET", 200, map[string]any{"issuer": "http://127.0.0.1:8093", "client_id": "nodebatch", "dev_issuer": true,
			"dev_users": []any{map[string]any{"name": "alice", "role": "user"}}, "api_base": "", "features": []any{}}},
		{"POST", 405, nil},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/config.json", nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("%s /config.json = %d, want %d", tt.method, rec.Code, tt.wantCode)
			}
			if tt.wantBody == nil {
				return
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantBody, got); diff != "" {
				t.Errorf("GET /config.json body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func node(name string, labels map[string]string, taints []corev1.Taint, ready corev1.ConditionStatus) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: ready}}
	}
	return n
}

func TestNodesHandler(t *testing.T) {
	client := fake.NewClientset(
		node("b-gpu", map[string]string{"pool": "gpu", "zone": "a"}, []corev1.Taint{{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}}, corev1.ConditionTrue),
		node("a-cpu", map[string]string{"pool": "cpu", "zone": "c"}, nil, corev1.ConditionFalse),
		node("c-bare", nil, nil, ""),
	)
	h := ui.NodesHandler(client)
	gpu := ui.Node{Name: "b-gpu", Labels: map[string]string{"pool": "gpu", "zone": "a"}, Taints: []ui.Taint{{Key: "gpu", Value: "true", Effect: "NoSchedule"}}, Ready: "True"}
	cpu := ui.Node{Name: "a-cpu", Labels: map[string]string{"pool": "cpu", "zone": "c"}, Taints: []ui.Taint{}, Ready: "False"}
	bare := ui.Node{Name: "c-bare", Labels: map[string]string{}, Taints: []ui.Taint{}, Ready: "Unknown"}
	tests := []struct {
		name, query string
		wantCode    int
		want        []ui.Node
		wantField   string
	}{
		{"all, sorted by name", "", 200, []ui.Node{cpu, gpu, bare}, ""},
		{"equality selector", "?selector=pool%3Dgpu", 200, []ui.Node{gpu}, ""},
		{"set-based selector", "?selector=zone+in+(a,c),pool!%3Dgpu", 200, []ui.Node{cpu}, ""},
		{"no match", "?selector=pool%3Dmem", 200, []ui.Node{}, ""},
		{"bad selector", "?selector=pool%3D%3D%3D", 422, nil, "selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/nodes"+tt.query, nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("GET /v1/nodes%s = %d %s, want %d", tt.query, rec.Code, rec.Body, tt.wantCode)
			}
			if tt.wantField != "" {
				var e struct {
					Error struct {
						Code   string
						Fields []struct{ Field, Value, Reason string }
					}
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
					t.Fatal(err)
				}
				if len(e.Error.Fields) != 1 || e.Error.Fields[0].Field != tt.wantField || e.Error.Fields[0].Reason == "" {
					t.Errorf("error body = %s, want one field error naming %q with a reason", rec.Body, tt.wantField)
				}
				return
			}
			var got ui.NodeList
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			for i := range got.Nodes {
				got.Nodes[i].Created = ""
			}
			if diff := cmp.Diff(ui.NodeList{Nodes: tt.want, Count: len(tt.want)}, got); diff != "" {
				t.Errorf("GET /v1/nodes%s mismatch (-want +got):\n%s", tt.query, diff)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("DELETE", "/v1/nodes", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /v1/nodes = %d, want 405", rec.Code)
	}
}

// TestLimitNodes: each user's node lists are limited on their own: past
// the burst a user gets 429 with Retry-After and the limit's name, another
// user still gets the list, and the bucket refills with time.
func TestLimitNodes(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	lim := ratelimit.New(ratelimit.Config{PerMinute: 6, Burst: 2, Now: func() time.Time { return now }})
	h := ui.LimitNodes(lim, ui.NodesHandler(fake.NewClientset(node("n1", nil, nil, corev1.ConditionTrue))))
	get := func(user string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/v1/nodes", nil)
		h.ServeHTTP(rec, r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Subject: user})))
		return rec
	}
	for i := range 2 {
		if rec := get("mallory"); rec.Code != http.StatusOK {
			t.Fatalf("list %d within the burst = %d, want 200", i, rec.Code)
		}
	}
	rec := get("mallory")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "10" {
		t.Fatalf("list past the burst = %d, Retry-After %q; want 429, 10 (one list per 10 s)", rec.Code, rec.Header().Get("Retry-After"))
	}
	var body ratelimit.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Code != "rate_limited" || body.Error.Limit != ui.NodesLimit || body.Error.RetryAfterSeconds != 10 {
		t.Errorf("refusal = %+v, want rate_limited naming %s, retry in 10 s", body.Error, ui.NodesLimit)
	}
	if rec := get("alice"); rec.Code != http.StatusOK {
		t.Errorf("another user's list = %d, want 200", rec.Code)
	}
	now = now.Add(10 * time.Second)
	if rec := get("mallory"); rec.Code != http.StatusOK {
		t.Errorf("list after the wait = %d, want 200", rec.Code)
	}
}
