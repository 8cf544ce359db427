package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestUpgradeAuthentication(t *testing.T) {
	f := newFixture(t, nil)
	forger, err := oidcdev.New(f.iss.URL) // same issuer URL, another key
	if err != nil {
		t.Fatal(err)
	}
	mint := func(iss *oidcdev.Issuer, c oidcdev.Claims) string {
		t.Helper()
		tok, err := iss.Mint(c)
		if err != nil {
			t.Fatalf("Mint() error = %v", err)
		}
		return tok
	}
	alice := oidcdev.Claims{Subject: "alice", Email: "alice@example.com", Audience: []string{audience}}
	expired := alice
	expired.IssuedAt, expired.ExpiresAt = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	wrongAud := alice
	wrongAud.Audience = []string{"someone-else"}
	good := mint(f.iss.Issuer, alice)

	tests := []struct {
		name       string
		path       string
		protocols  []string
		header     http.Header
		wantStatus int
	}{
		{name: "bearer subprotocol", protocols: []string{relay.Subprotocol, "bearer." + good}, wantStatus: http.StatusSwitchingProtocols},
		{name: "authorization header", header: http.Header{"Authorization": {"Bearer " + good}}, wantStatus: http.StatusSwitchingProtocols},
		{name: "seed path", path: "/api/v1/progress/ws", protocols: []string{relay.Subprotocol, "bearer." + good}, wantStatus: http.StatusSwitchingProtocols},
		{name: "no token", wantStatus: http.StatusUnauthorized},
		{name: "garbage token", protocols: []string{relay.Subprotocol, "bearer.not-a-jwt"}, wantStatus: http.StatusUnauthorized},
		{name: "forged token", protocols: []string{relay.Subprotocol, "bearer." + mint(forger, alice)}, wantStatus: http.StatusUnauthorized},
		{name: "expired token", protocols: []string{relay.Subprotocol, "bearer." + mint(f.iss.Issuer, expired)}, wantStatus: http.StatusUnauthorized},
		{name: "wrong audience", protocols: []string{relay.Subprotocol, "bearer." + mint(f.iss.Issuer, wrongAud)}, wantStatus: http.StatusUnauthorized},
		{name: "seed ?token= is off by default", path: "/v1/progress/ws?token=" + good, wantStatus: http.StatusUnauthorized},
		{name: "unknown ticket", path: "/v1/progress/ws?ticket=abc", wantStatus: http.StatusUnauthorized},
		{name: "bad origin", protocols: []string{relay.Subprotocol, "bearer." + good}, header: http.Header{"Origin": {"https://evil.example.com"}}, wantStatus: http.StatusForbidden},
		{name: "bad origin without token", header: http.Header{"Origin": {"https://evil.example.com"}}, wantStatus: http.StatusForbidden},
		{name: "allowlisted origin", protocols: []string{relay.Subprotocol, "bearer." + good}, header: http.Header{"Origin": {"https://ui.example.com"}}, wantStatus: http.StatusSwitchingProtocols},
		{name: "same origin", protocols: []string{relay.Subprotocol, "bearer." + good}, header: http.Header{"Origin": {f.url}}, wantStatus: http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := websocket.Dialer{HandshakeTimeout: readGuard, Subprotocols: tt.protocols}
			path := tt.path
			if path == "" {
				path = "/v1/progress/ws"
			}
			c, resp, err := d.Dial(f.wsURL+path, tt.header)
			if got := status(resp); got != tt.wantStatus {
				t.Fatalf("upgrade status = %d (err %v), want %d", got, err, tt.wantStatus)
			}
			if c == nil {
				var body struct {
					Error struct{ Code, Message string }
				}
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error.Code == "" {
					t.Errorf("refusal body: %v, code %q; want a JSON error", err, body.Error.Code)
				}
				if strings.Contains(body.Error.Message, good) {
					t.Errorf("refusal echoes the token")
				}
				return
			}
			defer c.Close()
			if len(tt.protocols) > 0 && c.Subprotocol() != relay.Subprotocol {
				t.Errorf("selected subprotocol = %q, want %q", c.Subprotocol(), relay.Subprotocol)
			}
		})
	}
}

func TestSeedTokenQuery(t *testing.T) {
	f := newFixture(t, func(c *relay.Config) { c.SeedTokenQuery = true })
	c, resp, err := f.dial(t, "/api/v1/progress/ws?token="+f.iss.token(t, "alice", false), "", nil)
	if err != nil {
		t.Fatalf("dial with ?token= while enabled: %v (status %d)", err, status(resp))
	}
	c.Close()
}

func TestTicketWorksOnce(t *testing.T) {
	f := newFixture(t, nil)
	post := func(token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.url+"/v1/progress/tickets", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST tickets: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := post(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST tickets without token = %d, want 401", resp.StatusCode)
	}
	resp := post(f.iss.token(t, "alice", false))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST tickets = %d, want 200", resp.StatusCode)
	}
	var tk struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tk); err != nil || tk.Ticket == "" || tk.ExpiresAt.IsZero() {
		t.Fatalf("ticket answer = %+v, %v; want ticket and expires_at", tk, err)
	}
	c, resp2, err := f.dial(t, "/v1/progress/ws?ticket="+tk.Ticket, "", nil)
	if err != nil {
		t.Fatalf("first dial with ticket: %v (status %d)", err, status(resp2))
	}
	c.Close()
	if _, resp3, err := f.dial(t, "/v1/progress/ws?ticket="+tk.Ticket, "", nil); err == nil || status(resp3) != http.StatusUnauthorized {
		t.Fatalf("second dial with the same ticket: err %v, status %d; want 401", err, status(resp3))
	}
}

// TestIsolation: a user sees only their own batches; an admin sees all;
// the check runs on every subscription.
func TestIsolation(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	a := newSim(f.fs, "batch-of-alice", owner("alice"), 2, 3)
	if err := a.create(ctx); err != nil {
		t.Fatalf("create batch: %v", err)
	}

	bob := f.mustDial(t, "bob", false)
	send(t, bob, map[string]string{"type": "subscribe", "task_id": a.doc.ID})
	if diff := cmp.Diff(progress.Message{TaskID: a.doc.ID, Type: progress.TypeError, Message: "not found"}, read(t, bob), ignoreTime); diff != "" {
		t.Errorf("bob subscribing to alice's batch (-want +got):\n%s", diff)
	}
	send(t, bob, map[string]string{"type": "subscribe", "task_id": "no-such-batch"})
	if diff := cmp.Diff(progress.Message{TaskID: "no-such-batch", Type: progress.TypeError, Message: "not found"}, read(t, bob), ignoreTime); diff != "" {
		t.Errorf("subscribing to a missing batch (-want +got):\n%s", diff)
	}
	send(t, bob, map[string]any{"type": "subscribe_all", "all_users": true})
	if m := read(t, bob); m.Type != progress.TypeError || !strings.Contains(m.Message, "admin") {
		t.Errorf("non-admin all_users = %+v, want an error naming the admin role", m)
	}

	for _, who := range []struct {
		user  string
		admin bool
	}{{"alice", false}, {"root", true}} {
		c := f.mustDial(t, who.user, who.admin)
		send(t, c, map[string]string{"type": "subscribe", "task_id": a.doc.ID})
		m := read(t, c)
		if m.TaskID != a.doc.ID || m.Type != progress.TypeProgress || m.Total != 6 || m.State != model.StateRunning {
			t.Errorf("%s subscribing: first message = %+v, want running progress of %s", who.user, m, a.doc.ID)
		}
	}

	// subscribe_all: bob's feed carries bob's batch and never alice's.
	send(t, bob, map[string]string{"type": "subscribe_all"})
	b := newSim(f.fs, "batch-of-bob", owner("bob"), 1, 2)
	if err := b.create(ctx); err != nil {
		t.Fatal(err)
	}
	admin := f.mustDial(t, "root", true)
	send(t, admin, map[string]any{"type": "subscribe_all", "all_users": true})
	if err := a.runLanes(ctx, 0, 3); err != nil {
		t.Fatal(err)
	}
	if err := b.runLanes(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := a.finish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.finish(ctx); err != nil {
		t.Fatal(err)
	}
	final, err := readUntilFinal(bob, b.doc.ID, func(m progress.Message) {
		if m.TaskID == a.doc.ID {
			t.Errorf("bob received a message of alice's batch: %+v", m)
		}
	})
	if err != nil || final.Current != 2 || final.Type != progress.TypeComplete {
		t.Errorf("bob's own batch via subscribe_all ended with %+v, %v; want complete 2/2", final, err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		m := read(t, admin)
		if m.Final() {
			got[m.TaskID] = true
		}
	}
	if !got[a.doc.ID] || !got[b.doc.ID] {
		t.Errorf("admin all_users saw final messages of %v, want both batches", got)
	}
}

var ignoreTime = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Timestamp" }, cmp.Ignore())

// TestReconnectMidBatch: a client that leaves mid-batch and comes back
// gets the current state first, then the rest, and ends with exactly the
// right counts and the complete message.
func TestReconnectMidBatch(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	s := newSim(f.fs, "reconnect", owner("alice"), 5, 20)
	s.failIf = func(lane, i int) bool { return (lane*20+i)%13 == 0 }
	if err := s.create(ctx); err != nil {
		t.Fatal(err)
	}
	c1 := f.mustDial(t, "alice", false)
	send(t, c1, map[string]string{"type": "subscribe", "task_id": s.doc.ID})
	if err := s.runLanes(ctx, 0, 8); err != nil {
		t.Fatal(err)
	}
	var mo monotonic
	for {
		m := read(t, c1)
		if err := mo.check(m); err != nil {
			t.Fatal(err)
		}
		if m.Current == 40 {
			break
		}
	}
	c1.Close()

	if err := s.runLanes(ctx, 8, 14); err != nil {
		t.Fatal(err)
	}
	c2 := f.mustDial(t, "alice", false)
	send(t, c2, map[string]string{"type": "subscribe", "task_id": s.doc.ID})
	first := read(t, c2)
	if first.Current != 70 {
		t.Errorf("reconnected client's first message current = %d, want the current state 70", first.Current)
	}
	done := make(chan error, 1)
	go func() {
		err := s.runLanes(ctx, 14, 20)
		if err == nil {
			_, err = s.finish(ctx)
		}
		done <- err
	}()
	final, err := readUntilFinal(c2, s.doc.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := model.Counts{Succeeded: 92, Failed: 8}
	if diff := cmp.Diff(want, final.Counts); diff != "" {
		t.Errorf("final counts (-want +got):\n%s", diff)
	}
	if final.Type != progress.TypeComplete || final.State != model.StatePartiallyFailed || final.Current != 100 || final.Progress != 100 {
		t.Errorf("final message = %+v, want complete, partially_failed, 100/100", final)
	}
	if len(final.FailedNodes) != 8 {
		t.Errorf("final failed nodes = %v, want 8", final.FailedNodes)
	}
}

func TestBadClientMessages(t *testing.T) {
	f := newFixture(t, func(c *relay.Config) { c.MaxMessageBytes = 256 })
	ctx := context.Background()
	s := newSim(f.fs, "bad-messages", owner("alice"), 1, 1)
	if err := s.create(ctx); err != nil {
		t.Fatal(err)
	}
	c := f.mustDial(t, "alice", false)
	for _, bad := range []string{`nonsense`, `{"type":"explode"}`, `{"type":"subscribe","task_id":"../x"}`} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if m := read(t, c); m.Type != progress.TypeError || !strings.HasPrefix(m.Message, "bad message") {
			t.Errorf("answer to %q = %+v, want a bad message error", bad, m)
		}
	}
	send(t, c, map[string]string{"type": "subscribe", "task_id": s.doc.ID})
	if m := read(t, c); m.TaskID != s.doc.ID || m.Type != progress.TypeProgress {
		t.Errorf("subscribe after bad messages = %+v, want progress", m)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 1000))); err != nil {
		t.Fatal(err)
	}
	_, err := readMsg(c)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("after an oversized message: %v, want close %d", err, websocket.CloseMessageTooBig)
	}
}

// TestShutdownAsksClientsToReconnect: close code 1012 (service restart).
func TestShutdownAsksClientsToReconnect(t *testing.T) {
	f := newFixture(t, nil)
	c := f.mustDial(t, "alice", false)
	send(t, c, map[string]string{"type": "subscribe", "task_id": "whatever"})
	read(t, c) // not found; the connection is registered and serving
	ctx, cancel := context.WithTimeout(context.Background(), readGuard)
	defer cancel()
	go f.relay.Shutdown(ctx)
	_, err := readMsg(c)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
		t.Fatalf("on shutdown: %v, want close %d", err, websocket.CloseServiceRestart)
	}
	c.Close()
	if _, resp, err := f.dial(t, "", f.iss.token(t, "alice", false), nil); err == nil || status(resp) != http.StatusServiceUnavailable {
		t.Errorf("dial during shutdown: %v, status %d; want 503", err, status(resp))
	}
}

// TestSeedPathFollowsAllMyBatches: the seed's path is a user-level stream,
// as in the seed: batches created after connecting are streamed too.
func TestSeedPathFollowsAllMyBatches(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	c, resp, err := f.dial(t, "/api/v1/progress/ws", f.iss.token(t, "carol", false), nil)
	if err != nil {
		t.Fatalf("dial seed path: %v (%d)", err, status(resp))
	}
	s := newSim(f.fs, "seed-path", owner("carol"), 2, 5)
	if err := s.create(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := s.runLanes(ctx, 0, 5); err == nil {
			s.finish(ctx)
		}
	}()
	final, err := readUntilFinal(c, s.doc.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if final.Current != 10 || final.Type != progress.TypeComplete {
		t.Errorf("final = %+v, want complete 10/10", final)
	}
}

// TestRetryStreamsTheNewAttempt: after a partially failed run, a retry
// (attempt 2, re-running the failed nodes) is streamed on the same
// subscription, with the earlier attempt's lanes read once and the failures
// it took back subtracted; it ends with exact counts.
func TestRetryStreamsTheNewAttempt(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	s := newSim(f.fs, "retry", owner("alice"), 2, 5)
	s.failIf = func(lane, i int) bool { return i == 1 } // node-l00-0001, node-l01-0001
	if err := s.create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.runLanes(ctx, 0, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.finish(ctx); err != nil {
		t.Fatal(err)
	}
	c := f.mustDial(t, "alice", false)
	send(t, c, map[string]string{"type": "subscribe", "task_id": s.doc.ID})
	first := read(t, c)
	if first.State != model.StatePartiallyFailed || first.Counts.Failed != 2 || len(first.FailedNodes) != 2 {
		t.Fatalf("first message = %+v, want the partially failed end of attempt 1", first)
	}

	// The retry, as the control API writes it: attempt 2, one lane, the two
	// failures taken back.
	b := s.doc
	b.Attempt, b.Lanes, b.AttemptTotal, b.State = 2, 1, 2, model.StateRunning
	b.Adjust = model.Counts{Failed: 2}
	b.Counts, b.FinishedAt, b.Timing = model.Counts{}, time.Time{}, nil
	if _, err := f.fs.Doc(store.BatchPath(b.ID)).Set(ctx, b); err != nil {
		t.Fatal(err)
	}
	lane := store.LaneDoc{Attempt: 2, Lane: 0, Size: 2}
	for i, node := range []string{"node-l00-0001", "node-l01-0001"} {
		lane.Mark(i)
		lane.Counts.Succeeded++
		lane.CurrentNode, lane.UpdatedAt = node, time.Now().UTC()
		if _, err := f.fs.Doc(store.LanePath(b.ID, 2, 0)).Set(ctx, lane); err != nil {
			t.Fatal(err)
		}
	}
	b.State, b.Counts, b.FinishedAt = model.StateSucceeded, model.Counts{Succeeded: 10}, time.Now().UTC()
	if _, err := f.fs.Doc(store.BatchPath(b.ID)).Set(ctx, b); err != nil {
		t.Fatal(err)
	}
	var last progress.Message
	for {
		m := read(t, c)
		if m.Attempt == 2 && m.State == model.StateRunning && m.Counts.Failed+m.Counts.Succeeded > 0 && m.Counts != (model.Counts{Succeeded: 8}) &&
			m.Counts != (model.Counts{Succeeded: 9}) && m.Counts != (model.Counts{Succeeded: 10}) {
			t.Errorf("attempt 2 progress counts = %+v, want the 8 kept successes plus the re-run ones", m.Counts)
		}
		if m.Attempt == 2 && m.Final() {
			last = m
			break
		}
	}
	if last.Type != progress.TypeComplete || last.Current != 10 || last.Counts != (model.Counts{Succeeded: 10}) || len(last.FailedNodes) != 0 {
		t.Errorf("final after retry = %+v, want complete 10/10, no failures", last)
	}
}

// TestBadTaskIDInURL: an upgrade whose ?task_id= names no document is
// refused before the upgrade, naming the parameter. Before the fix,
// ?task_id=a%2Fb from any signed-in user made the Firestore client return a
// nil ref that a watcher goroutine dereferenced: the relay process crashed
// (here: the test binary) and every client lost its socket. The relay and
// another client's socket live on, and that client still gets its batch.
func TestBadTaskIDInURL(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	s := newSim(f.fs, "survivor", owner("alice"), 1, 2)
	if err := s.create(ctx); err != nil {
		t.Fatal(err)
	}
	other := f.mustDial(t, "alice", false)
	send(t, other, map[string]string{"type": "subscribe", "task_id": s.doc.ID})
	if m := read(t, other); m.TaskID != s.doc.ID || m.Type != progress.TypeProgress {
		t.Fatalf("first message = %+v, want progress of %s", m, s.doc.ID)
	}

	tok := f.iss.token(t, "mallory", false)
	tests := []struct {
		path, wantCode string
		wantStatus     int
	}{
		{"/v1/progress/ws?task_id=a%2Fb", "invalid", http.StatusUnprocessableEntity},
		{"/v1/progress/ws?task_id=a/b", "invalid", http.StatusUnprocessableEntity},
		{"/v1/progress/ws?task_id=" + s.doc.ID + "%2Flanes%2Fa1-l0", "invalid", http.StatusUnprocessableEntity},
		{"/v1/progress/ws?task_id=%2F", "invalid", http.StatusUnprocessableEntity},
		{"/v1/progress/ws?task_id=..", "invalid", http.StatusUnprocessableEntity},
		{"/v1/progress/ws?task_id=" + strings.Repeat("a", 129), "invalid", http.StatusUnprocessableEntity},
		{"/api/v1/progress/ws?task_id=a%2Fb", "invalid", http.StatusUnprocessableEntity},
		{"/v1/progress/ws?task_id=a&task_id=b%2Fc", "malformed", http.StatusBadRequest},
		{"/v1/progress/ws?task_id=%zz", "malformed", http.StatusBadRequest},
	}
	for _, tt := range tests {
		c, resp, err := f.dial(t, tt.path, tok, nil)
		if c != nil {
			c.Close()
		}
		if got := status(resp); got != tt.wantStatus {
			t.Errorf("GET %s: status %d (err %v), want %d", tt.path, got, err, tt.wantStatus)
			continue
		}
		var body struct {
			Error struct {
				Code, Message string
				Fields        []struct{ Field, Reason string }
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Errorf("GET %s: decode refusal: %v", tt.path, err)
			continue
		}
		if body.Error.Code != tt.wantCode || !strings.Contains(tt.path, "%zz") && !strings.Contains(body.Error.Message, "task_id") {
			t.Errorf("GET %s: refusal %+v, want code %q and a message naming task_id", tt.path, body.Error, tt.wantCode)
		}
		if tt.wantCode == "invalid" && (len(body.Error.Fields) != 1 || body.Error.Fields[0].Field != "task_id") {
			t.Errorf("GET %s: fields %+v, want task_id", tt.path, body.Error.Fields)
		}
	}

	// The other client's socket is alive: its batch runs to the end on it.
	if err := s.runLanes(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.finish(ctx); err != nil {
		t.Fatal(err)
	}
	final, err := readUntilFinal(other, s.doc.ID, nil)
	if err != nil || final.Current != 2 || final.Type != progress.TypeComplete {
		t.Fatalf("the other client's batch ended with %+v, %v; want complete 2/2", final, err)
	}
	// And the relay still takes new connections with a good ?task_id=.
	c, resp, err := f.dial(t, "/v1/progress/ws?task_id="+s.doc.ID, tok, nil)
	if err != nil {
		t.Fatalf("dial with a good task_id after the attack: %v (status %d)", err, status(resp))
	}
	if m := read(t, c); m.TaskID != s.doc.ID || m.Message != "not found" {
		t.Errorf("mallory subscribing to alice's batch = %+v, want not found", m)
	}
}

// limited decodes a 429 refusal and checks its Retry-After and limit name.
func limited(t *testing.T, resp *http.Response, what, wantLimit string) {
	t.Helper()
	if status(resp) != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d, want 429", what, status(resp))
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("%s: Retry-After %q, want whole seconds", what, ra)
	}
	var body struct {
		Error struct{ Code, Message, Limit string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: decode refusal: %v", what, err)
	}
	if body.Error.Code != "rate_limited" || body.Error.Limit != wantLimit {
		t.Errorf("%s: refusal %+v, want rate_limited naming %s", what, body.Error, wantLimit)
	}
}

// TestTicketsPerUser: one user cannot hold more than MaxTicketsPerUser
// unredeemed tickets (before, one user could fill the relay's 100,000 and
// lock everyone out); another user still gets one, and redeeming makes room.
func TestTicketsPerUser(t *testing.T) {
	f := newFixture(t, func(c *relay.Config) { c.MaxTicketsPerUser = 2 })
	post := func(user string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.url+"/v1/progress/tickets", nil)
		req.Header.Set("Authorization", "Bearer "+f.iss.token(t, user, false))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST tickets: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	var first string
	for i := range 2 {
		resp := post("mallory")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("ticket %d = %d, want 200", i, resp.StatusCode)
		}
		var tk struct{ Ticket string }
		if err := json.NewDecoder(resp.Body).Decode(&tk); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = tk.Ticket
		}
	}
	limited(t, post("mallory"), "third ticket", "tickets_per_user")
	if resp := post("alice"); resp.StatusCode != http.StatusOK {
		t.Errorf("another user's ticket = %d, want 200", resp.StatusCode)
	}
	c, resp, err := f.dial(t, "/v1/progress/ws?ticket="+first, "", nil)
	if err != nil {
		t.Fatalf("redeem: %v (%d)", err, status(resp))
	}
	c.Close()
	if resp := post("mallory"); resp.StatusCode != http.StatusOK {
		t.Errorf("ticket after a redeem = %d, want 200", resp.StatusCode)
	}
}

// TestConnectionsPerUser: one user cannot hold more than MaxConnsPerUser
// WebSockets; another user still connects, and a closed connection frees
// its place.
func TestConnectionsPerUser(t *testing.T) {
	f := newFixture(t, func(c *relay.Config) { c.MaxConnsPerUser = 2 })
	tok := f.iss.token(t, "mallory", false)
	var conns []*websocket.Conn
	for i := range 2 {
		c, resp, err := f.dial(t, "", tok, nil)
		if err != nil {
			t.Fatalf("connection %d: %v (%d)", i, err, status(resp))
		}
		conns = append(conns, c)
	}
	_, resp, err := f.dial(t, "", tok, nil)
	if err == nil {
		t.Fatal("third connection of one user upgraded, want 429")
	}
	limited(t, resp, "third connection", "connections_per_user")
	f.mustDial(t, "alice", false)

	// The socket works while others are refused.
	send(t, conns[0], map[string]string{"type": "subscribe", "task_id": "nothing"})
	if m := read(t, conns[0]); m.Message != "not found" {
		t.Errorf("subscribe on a held connection = %+v, want not found", m)
	}
	conns[1].Close()
	// Wait until the relay has seen it go (3 → 2 connections), then dial.
	for {
		resp, err := http.Get(f.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var h struct{ Connections int }
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if h.Connections == 2 {
			break
		}
		runtime.Gosched()
	}
	if _, resp, err := f.dial(t, "", tok, nil); err != nil {
		t.Errorf("connection after one closed: %v (%d), want it upgraded", err, status(resp))
	}
}
