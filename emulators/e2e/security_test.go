package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/shared/progress"
)

// The callers of the security matrix.
const (
	anonymous = "anonymous"
	owner     = "user"       // alice: owns the batch under test
	otherUser = "other user" // dave: may patch nodes too, but does not own the batch
	viewer    = "viewer"     // bob: Kubernetes lets him list nodes, not patch them
	admin     = "admin"
	scheduler = "scheduler"
	forged    = "forged"   // right issuer URL and claims, signed by another key
	tampered  = "tampered" // alice's real token with the payload changed to admin
	expired   = "expired"  // properly signed, expired ten minutes ago
)

var callers = []string{anonymous, owner, otherUser, viewer, admin, scheduler, forged, tampered, expired}

// identities mints one token per caller ("" for anonymous).
func identities(t *testing.T, p *product.Product) map[string]string {
	t.Helper()
	ids := map[string]string{anonymous: ""}
	ids[owner] = mustToken(t, p, "alice", false)
	ids[otherUser] = mustToken(t, p, "dave", false)
	ids[viewer] = mustToken(t, p, "bob", false)
	ids[admin] = mustToken(t, p, "root", true)
	var err error
	if ids[scheduler], err = p.SchedulerToken(); err != nil {
		t.Fatal(err)
	}
	forger, err := oidcdev.New(p.IssuerURL) // same iss, another key
	if err != nil {
		t.Fatal(err)
	}
	if ids[forged], err = forger.Mint(oidcdev.Claims{Subject: "root", Email: "root@example.com", Roles: []string{"admin"},
		Audience: []string{product.Audience}, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ids[tampered] = tamper(t, ids[owner])
	now := time.Now()
	if ids[expired], err = p.Issuer.Mint(oidcdev.Claims{Subject: "alice", Email: "alice@example.com", Audience: []string{product.Audience},
		IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// tamper rewrites a JWT's payload to claim the admin role, keeping the
// original signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["roles"] = []string{"admin"}
	b, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// allow builds a want map: the listed callers get their status, every
// caller without a valid token gets 401.
func allow(pairs ...any) map[string]int {
	m := map[string]int{anonymous: 401, forged: 401, tampered: 401, expired: 401}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i].(string)] = pairs[i+1].(int)
	}
	return m
}

// allValid gives every caller with a valid token the same status.
func allValid(code int) map[string]int {
	return allow(owner, code, otherUser, code, viewer, code, admin, code, scheduler, code)
}

// writes is allValid for a call that writes nodes: Kubernetes refuses the
// viewer (bob may not patch nodes) with 403 before anything is written.
func writes(code int) map[string]int {
	m := allValid(code)
	m[viewer] = 403
	return m
}

// TestSecurityMatrix: every endpoint × every kind of caller → status, and
// for batches, who sees what.
func TestSecurityMatrix(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 6)
	p := startProduct(t, env, product.Options{})
	ids := identities(t, p)

	// alice's batch: a dry run, small enough to run inline (200 when done).
	dry := fmt.Sprintf(`{"labels":["sec=matrix"],"nodes":[%q,%q],"dry_run":true}`, names[0], names[1])
	code, body := call(t, http.MethodPost, p.APIURL+"/v1/batches", ids[owner], dry)
	if code != http.StatusOK {
		t.Fatalf("create alice's batch = %d %s, want 200", code, body)
	}
	var created struct {
		BatchID string `json:"batch_id"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.BatchID == "" {
		t.Fatalf("create alice's batch: no batch_id in %s", body)
	}
	bid := created.BatchID
	seedLabels := fmt.Sprintf(`{"nodes":[%q],"labels":{"sec":"seed"},"dry_run":true}`, names[2])
	fanned := fmt.Sprintf(`{"labels":["sec=fanned"],"nodes":[%q,%q,%q,%q,%q,%q],"dry_run":true}`, names[0], names[1], names[2], names[3], names[4], names[5])
	seedTaints := fmt.Sprintf(`{"nodes":[%q],"taints":[{"key":"sec","value":"seed","effect":"NoSchedule"}],"dry_run":true}`, names[3])

	type row struct {
		name, method, url, body string
		want                    map[string]int
	}
	rows := []row{
		{"create batch", "POST", p.APIURL + "/v1/batches", dry, writes(200)},
		{"create batch, fanned out", "POST", p.APIURL + "/v1/batches", fanned, writes(202)},
		{"preview", "POST", p.APIURL + "/v1/batches:preview", dry, writes(200)},
		{"get own/other's batch", "GET", p.APIURL + "/v1/batches/" + bid, "", allow(owner, 200, otherUser, 404, viewer, 404, admin, 200, scheduler, 404)},
		{"get missing batch", "GET", p.APIURL + "/v1/batches/20260101t000000-0000000000", "", allValid(404)},
		{"seed labels batch-add", "POST", p.APIURL + "/api/v1/nodes/labels/batch-add", seedLabels, writes(200)},
		{"seed labels batch-add-progress", "POST", p.APIURL + "/api/v1/nodes/labels/batch-add-progress", seedLabels, writes(202)},
		{"seed taints batch-add", "POST", p.APIURL + "/api/v1/nodes/taints/batch-add", seedTaints, writes(200)},
		{"seed taints batch-add-progress", "POST", p.APIURL + "/api/v1/nodes/taints/batch-add-progress", seedTaints, writes(202)},
		{"relay: progress ticket", "POST", p.RelayURL + "/v1/progress/tickets", "", allow(owner, 200, otherUser, 200, viewer, 200, admin, 200, scheduler, 403)},
		{"relay: node list", "GET", p.RelayURL + "/v1/nodes", "", allValid(200)},
		{"relay: API proxy, get batch", "GET", p.RelayURL + "/v1/batches/" + bid, "", allow(owner, 200, otherUser, 404, viewer, 404, admin, 200, scheduler, 404)},
		{"relay: API proxy, create batch", "POST", p.RelayURL + "/v1/batches", dry, writes(200)},
	}
	// Routes of other issues, included when they exist (a ServeMux answers
	// an unknown route with a plain-text 404 or a 405).
	for _, r := range []row{
		{"history", "GET", p.APIURL + "/v1/batches", "", allValid(200)},
		{"cancel", "POST", p.APIURL + "/v1/batches/" + bid + ":cancel", "{}", nil},
		{"retry", "POST", p.APIURL + "/v1/batches/" + bid + ":retry", "{}", nil},
		{"revert", "POST", p.APIURL + "/v1/batches/" + bid + ":revert", "{}", nil},
	} {
		code, b := call(t, r.method, r.url, ids[owner], r.body)
		if code == http.StatusMethodNotAllowed || (code == http.StatusNotFound && !strings.HasPrefix(string(b), "{")) {
			t.Logf("route %s %s does not exist yet: not in the matrix", r.method, r.url)
			continue
		}
		if r.want == nil {
			// A control on a finished dry run may be refused (409/422) but the
			// owner and an admin must get past authorization; others see 404.
			r.want = allow(owner, -1, otherUser, 404, viewer, 404, admin, -1, scheduler, 404)
		}
		rows = append(rows, r)
	}

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			for _, c := range callers {
				code, b := call(t, r.method, r.url, ids[c], r.body)
				want := r.want[c]
				if want == -1 {
					if code == 401 || code == 403 || code == 404 || code >= 500 {
						t.Errorf("%s %s as %s = %d %s, want past authorization", r.method, r.url, c, code, b)
					}
					continue
				}
				if code != want {
					t.Errorf("%s %s as %s = %d %s, want %d", r.method, r.url, c, code, b, want)
				}
				if code == 401 && !strings.Contains(string(b), `"unauthenticated"`) {
					t.Errorf("%s %s as %s: 401 body %s, want error code unauthenticated", r.method, r.url, c, b)
				}
			}
		})
	}

	t.Run("other user's batch looks missing", func(t *testing.T) {
		_, other := call(t, http.MethodGet, p.APIURL+"/v1/batches/"+bid, ids[otherUser], "")
		_, missing := call(t, http.MethodGet, p.APIURL+"/v1/batches/20260101t000000-0000000000", ids[otherUser], "")
		norm := func(b []byte, id string) string { return strings.ReplaceAll(string(b), id, "ID") }
		if norm(other, bid) != norm(missing, "20260101t000000-0000000000") {
			t.Errorf("404 for someone else's batch %s differs from 404 for a missing one %s", other, missing)
		}
	})

	for _, path := range []string{"/v1/progress/ws", "/api/v1/progress/ws"} {
		t.Run("relay: upgrade "+path, func(t *testing.T) {
			want := allow(owner, 101, otherUser, 101, viewer, 101, admin, 101, scheduler, 403)
			for _, c := range callers {
				d := websocket.Dialer{Subprotocols: []string{"nodebatch.v1"}}
				if ids[c] != "" {
					d.Subprotocols = append(d.Subprotocols, "bearer."+ids[c])
				}
				conn, resp, err := d.DialContext(t.Context(), "ws"+strings.TrimPrefix(p.RelayURL, "http")+path, nil)
				got := 0
				if resp != nil {
					got = resp.StatusCode
				}
				if conn != nil {
					if conn.Subprotocol() != "nodebatch.v1" {
						t.Errorf("%s as %s: subprotocol %q, want nodebatch.v1 (the token is never echoed)", path, c, conn.Subprotocol())
					}
					conn.Close()
				}
				if got != want[c] {
					t.Errorf("upgrade %s as %s = %d (%v), want %d", path, c, got, err, want[c])
				}
			}
		})
	}

	t.Run("relay: who sees the batch", func(t *testing.T) {
		refusalFor := func(c, id string) progress.Message {
			conn, _, err := dial(t.Context(), p.RelayURL, ids[c], nil)
			if err != nil {
				t.Fatalf("dial as %s: %v", c, err)
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if err := conn.WriteJSON(map[string]string{"type": "subscribe", "task_id": id}); err != nil {
				t.Fatal(err)
			}
			for {
				var m progress.Message
				if err := conn.ReadJSON(&m); err != nil {
					t.Fatalf("read as %s: %v", c, err)
				}
				if m.TaskID == id {
					return m
				}
			}
		}
		missing := refusalFor(otherUser, "20260101t000000-0000000000")
		for c, sees := range map[string]bool{owner: true, admin: true, otherUser: false} { // the scheduler cannot connect (above)
			m := refusalFor(c, bid)
			switch {
			case sees && (m.Type != progress.TypeComplete || m.Total != 2):
				t.Errorf("%s subscribing to alice's batch got %+v, want its complete message", c, m)
			case !sees && (m.Type != progress.TypeError || m.Message != missing.Message || m.Total != 0):
				t.Errorf("%s subscribing to alice's batch got %+v, want the same refusal as for a missing batch (%q)", c, m, missing.Message)
			}
		}
	})
}

// TestTicketsSingleUse: a ticket opens one connection, once; the seed's
// ?token= is refused while its compatibility switch is off.
func TestTicketsSingleUse(t *testing.T) {
	env := harness.Start(t)
	p := startProduct(t, env, product.Options{})
	alice := mustToken(t, p, "alice", false)
	code, b := call(t, http.MethodPost, p.RelayURL+"/v1/progress/tickets", alice, "")
	if code != http.StatusOK {
		t.Fatalf("POST ticket = %d %s", code, b)
	}
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if err := json.Unmarshal(b, &tk); err != nil || tk.Ticket == "" {
		t.Fatalf("ticket answer %s: %v", b, err)
	}
	url := wsURL(p.RelayURL) + "?ticket=" + tk.Ticket
	d := websocket.Dialer{Subprotocols: []string{"nodebatch.v1"}}
	conn, resp, err := d.DialContext(t.Context(), url, nil)
	if err != nil {
		t.Fatalf("first use of the ticket: %v (%v)", err, resp)
	}
	conn.Close()
	for i, u := range []string{url, wsURL(p.RelayURL) + "?ticket=" + tk.Ticket + "x", wsURL(p.RelayURL) + "?token=" + alice} {
		_, resp, err := d.DialContext(t.Context(), u, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("dial %d (reused ticket, unknown ticket, ?token=) = %v, want 401", i, resp)
		}
	}
	if code, _ := call(t, http.MethodGet, p.RelayURL+"/v1/progress/tickets", alice, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET ticket = %d, want 405", code)
	}
}

// TestOriginEnforced: browsers from another origin cannot open the
// progress socket, even with a valid token.
func TestOriginEnforced(t *testing.T) {
	env := harness.Start(t)
	p := startProduct(t, env, product.Options{})
	alice := mustToken(t, p, "alice", false)
	for _, tt := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{p.RelayURL, http.StatusSwitchingProtocols},
		{"http://evil.example", http.StatusForbidden},
		{"http://127.0.0.1.evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{strings.Replace(p.RelayURL, "127.0.0.1", "localhost", 1), http.StatusForbidden},
	} {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		conn, resp, _ := dial(t.Context(), p.RelayURL, alice, h)
		if conn != nil {
			conn.Close()
		}
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		if got != tt.want {
			t.Errorf("upgrade with Origin %q = %d, want %d", tt.origin, got, tt.want)
		}
	}
}

// TestProtectedKeys: changes to keys under kubernetes.io/ and k8s.io/ are
// refused with a 422 naming the field, through every submit route, and
// change nothing.
func TestProtectedKeys(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 2)
	p := startProduct(t, env, product.Options{})
	alice := mustToken(t, p, "alice", false)
	admin := mustToken(t, p, "root", true)
	n := names[0]
	for _, tt := range []struct {
		name, path, body, field string
	}{
		{"label set", "/v1/batches", fmt.Sprintf(`{"labels":["kubernetes.io/hostname=evil"],"nodes":[%q]}`, n), "labels[0]"},
		{"label subdomain", "/v1/batches", fmt.Sprintf(`{"labels":["node.kubernetes.io/exclude-from-external-load-balancers=true"],"nodes":[%q]}`, n), "labels[0]"},
		{"label removal", "/v1/batches", fmt.Sprintf(`{"labels":["topology.kubernetes.io/zone-"],"nodes":[%q]}`, n), "labels[0]"},
		{"k8s.io label", "/v1/batches", fmt.Sprintf(`{"labels":["x.k8s.io/a=b"],"nodes":[%q]}`, n), "labels[0]"},
		{"taint removal", "/v1/batches", fmt.Sprintf(`{"taints":["node.kubernetes.io/not-ready:NoSchedule-"],"nodes":[%q]}`, n), "taints[0]"},
		{"structured taint", "/v1/batches", fmt.Sprintf(`{"changes":{"taints":[{"key":"node.kubernetes.io/unschedulable","effect":"NoSchedule"}]},"nodes":[%q]}`, n), "taints[0]"},
		{"second of two", "/v1/batches", fmt.Sprintf(`{"labels":["ok=1","kubernetes.io/os=windows"],"nodes":[%q]}`, n), "labels[1]"},
		{"seed labels", "/api/v1/nodes/labels/batch-add", fmt.Sprintf(`{"labels":{"kubernetes.io/arch":"s390x"},"nodes":[%q]}`, n), "labels[0]"},
		{"seed taints", "/api/v1/nodes/taints/batch-add", fmt.Sprintf(`{"taints":[{"key":"node.kubernetes.io/not-ready","effect":"NoSchedule"}],"operation":"remove","nodes":[%q]}`, n), "taints[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, tok := range []string{alice, admin} { // admins are refused too
				code, b := call(t, http.MethodPost, p.APIURL+tt.path, tok, tt.body)
				if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), "protected") || !strings.Contains(string(b), tt.field) {
					t.Errorf("POST %s %s = %d %s, want 422 naming %s as protected", tt.path, tt.body, code, b, tt.field)
				}
			}
		})
	}
	node, err := env.Kube(t).CoreV1().Nodes().Get(t.Context(), n, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels["kubernetes.io/hostname"] == "evil" || node.Labels["ok"] != "" || node.Labels["kubernetes.io/arch"] == "s390x" {
		t.Errorf("node %s labels changed by refused requests: %v", n, node.Labels)
	}
	notReady := false
	for _, tn := range node.Spec.Taints {
		notReady = notReady || tn.Key == "node.kubernetes.io/not-ready"
	}
	if !notReady {
		t.Errorf("node %s lost its not-ready taint to a refused request: %v", n, node.Spec.Taints)
	}
}
