package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// audience is the client id tokens are minted for.
const audience = "nodebatch"

// readGuard bounds every read so a broken relay fails the test instead of
// hanging it; it is not a timing assertion.
const readGuard = 60 * time.Second

// issuer is a development OIDC issuer on a local HTTP server.
type issuer struct {
	*oidcdev.Issuer
	URL string
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	url := "http://" + srv.Listener.Addr().String()
	iss, err := oidcdev.New(url)
	if err != nil {
		t.Fatalf("oidcdev.New() error = %v", err)
	}
	srv.Config.Handler = iss.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return &issuer{Issuer: iss, URL: url}
}

// token mints a token for user (subject and owner id "user@example.com").
func (i *issuer) token(t testing.TB, user string, admin bool) string {
	t.Helper()
	c := oidcdev.Claims{Subject: user, Email: user + "@example.com", Audience: []string{audience}}
	if admin {
		c.Roles = []string{"admin"}
	}
	tok, err := i.Mint(c)
	if err != nil {
		t.Fatalf("Mint(%s) error = %v", user, err)
	}
	return tok
}

func owner(user string) string { return user + "@example.com" }

// fixture is a relay on the Firestore emulator with a fresh project.
type fixture struct {
	fs     *firestore.Client
	iss    *issuer
	relay  *relay.Server
	url    string // http://127.0.0.1:PORT
	wsURL  string // ws://127.0.0.1:PORT
	server *httptest.Server
}

func newFixture(t *testing.T, mutate func(*relay.Config)) *fixture {
	t.Helper()
	env := harness.Start(t)
	project := env.ProjectID(t)
	fs := env.Firestore(t, project)
	iss := newIssuer(t)
	v, err := auth.NewVerifier(context.Background(), auth.Config{Issuers: []auth.IssuerConfig{{URL: iss.URL, Audience: audience}}})
	if err != nil {
		t.Fatalf("auth.NewVerifier() error = %v", err)
	}
	cfg := relay.Config{Source: store.NewFeed(fs, nil), Verifier: v, AllowedOrigins: []string{"https://ui.example.com"}}
	if mutate != nil {
		mutate(&cfg)
	}
	r := relay.New(cfg)
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("relay Shutdown() error = %v", err)
		}
		srv.Close()
	})
	return &fixture{fs: fs, iss: iss, relay: r, url: srv.URL, wsURL: "ws" + strings.TrimPrefix(srv.URL, "http"), server: srv}
}

// dial opens /v1/progress/ws with the token as subprotocol (if any).
func (f *fixture) dial(t testing.TB, path, token string, h http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: readGuard}
	if token != "" {
		d.Subprotocols = []string{relay.Subprotocol, "bearer." + token}
	}
	if path == "" {
		path = "/v1/progress/ws"
	}
	c, resp, err := d.Dial(f.wsURL+path, h)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// mustDial dials as user and fails the test if the upgrade is refused.
func (f *fixture) mustDial(t testing.TB, user string, admin bool) *websocket.Conn {
	t.Helper()
	c, resp, err := f.dial(t, "", f.iss.token(t, user, admin), nil)
	if err != nil {
		t.Fatalf("dial as %s: %v (status %v)", user, err, status(resp))
	}
	return c
}

func status(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

func send(t testing.TB, c *websocket.Conn, v any) {
	t.Helper()
	if err := c.WriteJSON(v); err != nil {
		t.Fatalf("send %v: %v", v, err)
	}
}

func read(t testing.TB, c *websocket.Conn) progress.Message {
	t.Helper()
	m, err := readMsg(c)
	if err != nil {
		t.Fatalf("read message: %v", err)
	}
	return m
}

func readMsg(c *websocket.Conn) (progress.Message, error) {
	var m progress.Message
	if err := c.SetReadDeadline(time.Now().Add(readGuard)); err != nil {
		return m, err
	}
	_, data, err := c.ReadMessage()
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", data, err)
	}
	return m, nil
}

// monotonic collects a connection's messages for one batch and checks that
// current never goes backwards within an attempt.
type monotonic struct {
	last map[string]progress.Message
}

func (mo *monotonic) check(m progress.Message) error {
	if mo.last == nil {
		mo.last = map[string]progress.Message{}
	}
	prev, ok := mo.last[m.TaskID]
	if ok && prev.Attempt == m.Attempt && m.Current < prev.Current {
		return fmt.Errorf("batch %s: current went from %d to %d", m.TaskID, prev.Current, m.Current)
	}
	mo.last[m.TaskID] = m
	return nil
}

// readUntilFinal reads until task's final message, checking monotonicity.
func readUntilFinal(c *websocket.Conn, task string, seen func(progress.Message)) (progress.Message, error) {
	var mo monotonic
	for {
		m, err := readMsg(c)
		if err != nil {
			return m, err
		}
		if seen != nil {
			seen(m)
		}
		if m.TaskID != task {
			continue
		}
		if m.Type == progress.TypeError && m.State == "" {
			return m, fmt.Errorf("batch %s refused: %s", task, m.Message)
		}
		if err := mo.check(m); err != nil {
			return m, err
		}
		if m.Final() {
			return m, nil
		}
	}
}

// sim simulates a running batch by writing its documents as the pipeline
// does: the batch doc at create, each lane doc by its one sequential
// writer, the batch doc again when final.
type sim struct {
	fs      *firestore.Client
	doc     store.BatchDoc
	perLane int
	failIf  func(lane, i int) bool

	mu    sync.Mutex
	lanes []store.LaneDoc
	// writes records, per node name, when the write that made it the
	// lane's current node started (latency measurements).
	writes map[string]time.Time
}

func newSim(fs *firestore.Client, id, ownerID string, lanes, perLane int) *sim {
	now := time.Now().UTC()
	s := &sim{
		fs: fs, perLane: perLane, writes: map[string]time.Time{},
		doc: store.BatchDoc{
			ID: id, Owner: ownerID, Action: model.ActionLabel, Changes: change.Summary{Labels: []string{"team=ml"}},
			All: true, Total: lanes * perLane, Concurrency: lanes, Lanes: lanes, AttemptTotal: lanes * perLane,
			Attempt: 1, State: model.StateRunning, CreatedAt: now, StartedAt: now,
		},
		failIf: func(int, int) bool { return false },
	}
	for l := range lanes {
		s.lanes = append(s.lanes, store.LaneDoc{Attempt: 1, Lane: l, Size: perLane})
	}
	return s
}

func nodeName(lane, i int) string { return fmt.Sprintf("node-l%02d-%04d", lane, i) }

func (s *sim) create(ctx context.Context) error {
	_, err := s.fs.Doc(store.BatchPath(s.doc.ID)).Set(ctx, s.doc)
	return err
}

// step records node i of lane as finished.
func (s *sim) step(ctx context.Context, lane, i int) error {
	s.mu.Lock()
	l := &s.lanes[lane]
	node := nodeName(lane, i)
	l.Mark(i)
	if s.failIf(lane, i) {
		l.Counts.Failed++
		l.Failures = append(l.Failures, model.Failure{Node: node, Reason: "simulated: forbidden"})
	} else {
		l.Counts.Succeeded++
	}
	l.CurrentNode = node
	l.UpdatedAt = time.Now().UTC()
	snapshot := *l
	s.writes[node] = time.Now()
	s.mu.Unlock()
	_, err := s.fs.Doc(store.LanePath(s.doc.ID, 1, lane)).Set(ctx, snapshot)
	return err
}

// runLanes finishes nodes [from, to) of every lane, lanes in parallel,
// each lane sequentially (as its ordering key makes it).
func (s *sim) runLanes(ctx context.Context, from, to int) error {
	errs := make(chan error, len(s.lanes))
	for l := range s.lanes {
		go func() {
			for i := from; i < to; i++ {
				if err := s.step(ctx, l, i); err != nil {
					errs <- fmt.Errorf("lane %d node %d: %w", l, i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var all []error
	for range s.lanes {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// counts is the sum of the lanes.
func (s *sim) counts() model.Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c model.Counts
	for _, l := range s.lanes {
		c = c.Add(l.Counts)
	}
	return c
}

// finish writes the final batch doc, as the last patch call does.
func (s *sim) finish(ctx context.Context) (model.Counts, error) {
	c := s.counts()
	s.doc.State = model.StateSucceeded
	if c.Failed > 0 {
		s.doc.State = model.StatePartiallyFailed
	}
	s.doc.Counts = c
	s.doc.FinishedAt = time.Now().UTC()
	s.doc.Timing = &model.Timing{NodesPerSecond: 1}
	_, err := s.fs.Doc(store.BatchPath(s.doc.ID)).Set(ctx, s.doc)
	return c, err
}

func (s *sim) wroteAt(node string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.writes[node]
	return t, ok
}
