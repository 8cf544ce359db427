package relay_test

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/relay/ui"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/golden"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the answers")

// stubVerifier answers two made-up tokens itself (the scheduler identity,
// an identity provider that is down) and passes the rest to next.
type stubVerifier struct{ next relay.Verifier }

func (s stubVerifier) Verify(ctx context.Context, tok string) (auth.Principal, error) {
	switch tok {
	case "scheduler-token":
		return auth.Principal{Subject: "scheduler:cron@example.iam.gserviceaccount.com", Scheduler: true}, nil
	case "idp-down":
		return auth.Principal{}, auth.ErrUnavailable
	}
	return s.next.Verify(ctx, tok)
}

// goldenRequest is one request of the relay's golden run.
type goldenRequest struct {
	name, method, path string
	header             http.Header
	ws                 bool // send the WebSocket upgrade headers
}

func checkGolden(t *testing.T, base string, r goldenRequest, subst ...string) {
	t.Helper()
	req, err := http.NewRequest(r.method, base+r.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.ws {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", r.method, r.path, err)
	}
	got := golden.Normalize(golden.Render(resp.StatusCode, resp.Header, raw), subst...)
	golden.Check(t, filepath.Join("testdata", "golden", r.name+".golden"), got, *update)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func protocols(p ...string) http.Header {
	return http.Header{"Sec-Websocket-Protocol": {strings.Join(p, ", ")}}
}

// TestGoldenRelay records every documented HTTP answer of the relay (the
// ticket endpoint, the upgrade's refusals, the UI's endpoints, the proxy's
// refusal, health) and compares it with testdata/golden/*.golden byte for
// byte after normalizing what varies. Run with -update to rewrite them.
func TestGoldenRelay(t *testing.T) {
	env := harness.Start(t)
	prefix, _ := env.SeedNodes(t, 3)
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	nodesLim := ratelimit.New(ratelimit.Config{PerMinute: 6, Burst: 2, Now: func() time.Time { return now }})
	deadAPI, _ := url.Parse("http://127.0.0.1:1")
	broken, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *relay.Config) {
		v := c.Verifier.(*auth.Verifier)
		c.Verifier = stubVerifier{v}
		c.MaxTicketsPerUser, c.MaxConnsPerUser = 1, 1
		c.APIURL = deadAPI
		c.Handlers = map[string]http.Handler{
			"GET /config.json":  ui.ConfigHandler(ui.Config{Issuer: "https://issuer.example.com", APIBase: "", Features: []string{"cancel", "retry"}}),
			"/v1/nodes":         auth.Middleware(v, ui.LimitNodes(nodesLim, ui.NodesHandler(env.Kube(t)))),
			"/v1/nodes-broken":  ui.NodesHandler(broken),
			"POST /config.json": ui.ConfigHandler(ui.Config{}),
		}
	})
	alice, bob, carol := f.iss.token(t, "alice", false), f.iss.token(t, "bob", false), f.iss.token(t, "carol", false)
	subst := []string{prefix, "<prefix>", f.iss.URL, "<issuer>"}
	sel := "?selector=" + url.QueryEscape(harness.TestLabel+"="+prefix)
	// carol holds her one connection, so her next upgrade is refused.
	held, resp, err := f.dial(t, "", carol, nil)
	if err != nil {
		t.Fatalf("dial as carol: %v (status %v)", err, status(resp))
	}
	for _, r := range []goldenRequest{
		{name: "ticket_200", method: "POST", path: "/v1/progress/tickets", header: bearer(alice)},
		{name: "ticket_per_user_429", method: "POST", path: "/v1/progress/tickets", header: bearer(alice)},
		{name: "ticket_method_405", method: "GET", path: "/v1/progress/tickets", header: bearer(alice)},
		{name: "ticket_no_token_401", method: "POST", path: "/v1/progress/tickets"},
		{name: "ticket_bad_token_401", method: "POST", path: "/v1/progress/tickets", header: bearer("not-a-jwt")},
		{name: "ticket_scheduler_403", method: "POST", path: "/v1/progress/tickets", header: bearer("scheduler-token")},
		{name: "ticket_idp_down_503", method: "POST", path: "/v1/progress/tickets", header: bearer("idp-down")},
		{name: "ws_no_token_401", method: "GET", path: "/v1/progress/ws", ws: true},
		{name: "ws_bad_token_401", method: "GET", path: "/v1/progress/ws", ws: true, header: protocols(relay.Subprotocol, "bearer.not-a-jwt")},
		{name: "ws_unknown_ticket_401", method: "GET", path: "/v1/progress/ws?ticket=abc", ws: true},
		{name: "ws_token_query_off_401", method: "GET", path: "/api/v1/progress/ws?token=" + alice, ws: true},
		{name: "ws_origin_403", method: "GET", path: "/v1/progress/ws", ws: true, header: http.Header{"Origin": {"https://evil.example.com"}}},
		{name: "ws_scheduler_403", method: "GET", path: "/v1/progress/ws", ws: true, header: bearer("scheduler-token")},
		{name: "ws_idp_down_503", method: "GET", path: "/v1/progress/ws", ws: true, header: bearer("idp-down")},
		{name: "ws_bad_query_400", method: "GET", path: "/v1/progress/ws?task_id=%zz", ws: true, header: bearer(alice)},
		{name: "ws_repeated_param_400", method: "GET", path: "/v1/progress/ws?task_id=a&task_id=b", ws: true, header: bearer(alice)},
		{name: "ws_bad_task_id_422", method: "GET", path: "/v1/progress/ws?task_id=a.b", ws: true, header: bearer(alice)},
		{name: "ws_reserved_task_id_422", method: "GET", path: "/v1/progress/ws?task_id=__x__", ws: true, header: bearer(alice)},
		{name: "ws_connections_per_user_429", method: "GET", path: "/v1/progress/ws", ws: true, header: bearer(carol)},
		{name: "ws_method_405", method: "POST", path: "/v1/progress/ws", header: bearer(alice)},
		{name: "nodes_200", method: "GET", path: "/v1/nodes" + sel, header: bearer(bob)},
		{name: "nodes_bad_selector_422", method: "GET", path: "/v1/nodes?selector=" + url.QueryEscape("a in (b"), header: bearer(bob)},
		{name: "nodes_rate_limited_429", method: "GET", path: "/v1/nodes" + sel, header: bearer(bob)},
		{name: "nodes_unauthenticated_401", method: "GET", path: "/v1/nodes"},
		{name: "nodes_method_405", method: "POST", path: "/v1/nodes", header: bearer(alice)},
		{name: "nodes_kubernetes_unavailable_502", method: "GET", path: "/v1/nodes-broken"},
		{name: "config_200", method: "GET", path: "/config.json"},
		{name: "config_method_405", method: "POST", path: "/config.json"},
		{name: "proxy_unavailable_502", method: "POST", path: "/v1/batches", header: bearer(alice)},
		{name: "healthz_200", method: "GET", path: "/healthz"},
	} {
		checkGolden(t, f.url, r, subst...)
	}

	// Shutting down: health and upgrades answer 503.
	held.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.relay.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	checkGolden(t, f.url, goldenRequest{name: "ws_shutting_down_503", method: "GET", path: "/v1/progress/ws", ws: true, header: bearer(alice)}, subst...)
	checkGolden(t, f.url, goldenRequest{name: "healthz_shutting_down_503", method: "GET", path: "/healthz"}, subst...)
}
