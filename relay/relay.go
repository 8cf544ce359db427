// Package relay is the WebSocket progress relay: it authenticates a
// client at the upgrade (bearer token in Sec-WebSocket-Protocol, a
// single-use ticket, or — behind a compatibility switch — the seed's
// ?token=), checks Origin, and streams progress.Message values for the
// batches the client subscribes to, driven by Firestore snapshot listeners
// (package watch, over store.Feed). It also serves the web UI and extra
// routes main mounts (/config.json, /v1/nodes), and proxies the batch API
// (/v1/*, /api/v1/*) so the UI needs no CORS.
//
// Shape, after gorilla/websocket's chat example: one read goroutine and one
// write goroutine per connection; every write goes through the write
// goroutine, with a deadline, and pings keep idle connections honest. A slow
// client only ever holds its own bounded outbox: progress per batch is
// coalesced (latest wins), final messages are queued and never dropped (a
// client that lets that queue overflow is disconnected with 1013 so it
// reconnects and resubscribes, getting the final state first).
//
// Fan-out to many clients: the batch's watcher encodes each message once
// as a WebSocket frame (watch.Update.Frame) that every write goroutine
// sends as is, and paces its messages by the number of subscribers, so a
// batch followed by 1,000 clients costs one encoding and one write per
// client per message, at most about 20 messages a second.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/relay/ticket"
	"github.com/nodebatch/nodebatch/relay/watch"
	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Subprotocol is the WebSocket subprotocol the relay speaks. A browser
// client offers ["nodebatch.v1", "bearer.<token>"]; the relay selects
// "nodebatch.v1" and never echoes the token.
const Subprotocol = "nodebatch.v1"

// bearerPrefix marks the subprotocol entry that carries the token.
const bearerPrefix = "bearer."

// Verifier checks a bearer token (shared/auth.Verifier satisfies it).
type Verifier interface {
	Verify(ctx context.Context, rawToken string) (auth.Principal, error)
}

// Config is the relay's dependencies and settings. Zero limits take the
// defaults named after each field.
type Config struct {
	Source   watch.Source // required: batch and lane documents (store.NewFeed)
	Verifier Verifier     // required
	Logger   *slog.Logger // default slog.Default()

	// AllowedOrigins lists the browser origins ("https://ui.example.com",
	// scheme://host[:port], or "*") that may open a WebSocket, besides the
	// relay's own origin, which is always allowed. Requests without Origin
	// (non-browser clients) are allowed: they carry no ambient credentials.
	AllowedOrigins []string
	// SeedTokenQuery accepts the seed's ?token=<bearer> on the upgrade URL.
	// Off by default: tokens in URLs end up in logs.
	SeedTokenQuery bool

	// APIURL, when set, is the batch API the relay proxies /v1/* and
	// /api/v1/* to (all but the progress endpoints).
	APIURL *url.URL
	// UI, when set, is served at / (the embedded web UI).
	UI fs.FS
	// Handlers are extra routes (ServeMux patterns), e.g. "GET /v1/nodes"
	// and "GET /config.json" (relay/ui's handlers, mounted by main). A
	// pattern more specific than "/v1/" wins over the API proxy.
	Handlers map[string]http.Handler

	MaxMessageBytes  int64         // client message size limit; default 4096
	MaxSubscriptions int           // explicit subscriptions per connection; default 100
	MaxQueued        int           // final messages queued per connection; default 256
	WriteTimeout     time.Duration // per write; default 10 s
	PongTimeout      time.Duration // a connection silent this long is dead; default 60 s
	TicketTTL        time.Duration // default 30 s
	MaxTickets       int           // unredeemed tickets held; default 100,000
	// Per-user limits (per relay instance; the user is the token's
	// subject): unredeemed tickets (default 20) and open WebSocket
	// connections (default 100). Past them the relay answers 429 with
	// Retry-After, so one user cannot hold what every user shares.
	MaxTicketsPerUser int
	MaxConnsPerUser   int
	Now               func() time.Time
	// Telemetry counts connections, subscriptions, watchers, progress
	// delays and slow-client closes, traces HTTP requests and serves GET
	// /metrics; nil: none.
	Telemetry *telemetry.Telemetry
}

// Defaults of the per-user limits.
const (
	DefaultMaxTicketsPerUser = 20
	DefaultMaxConnsPerUser   = 100
)

// connRetryAfter is the Retry-After of a connection refused for the
// per-user limit: connections end when their clients leave, at no time the
// relay can predict.
const connRetryAfter = 10 * time.Second

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 4096
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 100
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 256
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = 60 * time.Second
	}
	if c.TicketTTL <= 0 {
		c.TicketTTL = ticket.DefaultTTL
	}
	if c.MaxTickets <= 0 {
		c.MaxTickets = 100_000
	}
	if c.MaxTicketsPerUser <= 0 {
		c.MaxTicketsPerUser = DefaultMaxTicketsPerUser
	}
	if c.MaxConnsPerUser <= 0 {
		c.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Server is the relay. Create it with New, serve Handler, and call Shutdown
// before the process exits.
type Server struct {
	cfg      Config
	log      *slog.Logger
	reg      *watch.Registry
	tickets  *ticket.Store[auth.Principal]
	upgrader websocket.Upgrader
	mux      *http.ServeMux

	mu       sync.Mutex
	conns    map[*conn]struct{}
	perUser  map[string]int // open connections (and upgrades under way) by subject
	shutting bool
	drained  chan struct{} // closed when shutting and the last conn ended

	unobserve func() // unregisters the gauges (telemetry.go)
}

// New returns a relay serving cfg.
func New(cfg Config) *Server {
	cfg.defaults()
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		reg:     watch.New(cfg.Source, cfg.Logger, cfg.Now),
		tickets: ticket.New[auth.Principal](cfg.TicketTTL, cfg.MaxTickets, cfg.MaxTicketsPerUser, cfg.Now),
		conns:   map[*conn]struct{}{},
		perUser: map[string]int{},
		drained: make(chan struct{}),
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     []string{Subprotocol},
		// Origin is checked before the upgrade, with a JSON answer.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	s.mux = s.routes()
	s.observe()
	return s
}

// Handler serves every relay route.
func (s *Server) Handler() http.Handler { return s.instrumented(s.mux) }

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/progress/ws", s.serveWS(false))
	mux.HandleFunc("/api/v1/progress/ws", s.serveWS(true))
	mux.HandleFunc("/v1/progress/tickets", s.serveTicket)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	if s.cfg.APIURL != nil {
		p := s.proxy(s.cfg.APIURL)
		mux.Handle("/v1/", p)
		mux.Handle("/api/v1/", p)
	}
	for pattern, h := range s.cfg.Handlers {
		mux.Handle(pattern, h)
	}
	if s.cfg.UI != nil {
		mux.Handle("/", http.FileServerFS(s.cfg.UI))
	}
	return mux
}

// proxy forwards to the batch API, keeping the caller's Authorization.
func (s *Server) proxy(api *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(api)
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Error("proxy to API", "path", r.URL.Path, "error", err)
			apierror.Write(w, apierror.Wrap(apierror.BadGateway, err, "the batch API is unavailable"))
		},
	}
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n, shutting := len(s.conns), s.shutting
	s.mu.Unlock()
	st := s.reg.Stats()
	status := http.StatusOK
	if shutting {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{
		"ok": !shutting, "connections": n,
		"batch_watchers": st.Batches, "owner_watchers": st.Owners, "subscriptions": st.Subscribers,
	})
}

// serveTicket answers POST /v1/progress/tickets (bearer-authenticated) with
// a single-use ticket for ?ticket= on the WebSocket URL.
func (s *Server) serveTicket(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		apierror.Write(w, apierror.New(apierror.MethodNotAllowed, "use POST"))
		return
	}
	p, err := s.verify(r.Context(), bearerHeader(r))
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	id, exp, err := s.tickets.Issue(p.Subject, p)
	var full *ticket.KeyFullError
	if errors.As(err, &full) {
		s.log.Warn("ticket refused: per-user limit", "subject", p.Subject, "max", full.Max)
		e := apierror.Limited(apierror.Limit{Name: "tickets_per_user", RetryAfter: full.RetryAfter}, "too many unredeemed tickets: at most %d per user; redeem or let one expire", full.Max)
		e.KeyOrder = true // as first sent (relay/testdata/golden)
		apierror.Write(w, e)
		return
	}
	if err != nil {
		s.log.Error("issue ticket", "error", err)
		apierror.Write(w, apierror.Wrap(apierror.Unavailable, err, "no ticket available; retry later"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"ticket": id, "expires_at": exp.UTC()})
}

// Shutdown tells every connected client to reconnect (close code 1012,
// service restart) and waits until the connections have ended or ctx ends.
// New upgrades are refused with 503 from the moment it is called.
func (s *Server) Shutdown(ctx context.Context) error {
	s.unobserve()
	s.mu.Lock()
	s.shutting = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	if len(s.conns) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.CloseServiceRestart, "service restart; reconnect")
	}
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// register adds c, unless the server is shutting down.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.perUser[c.p.Subject]--; s.perUser[c.p.Subject] <= 0 {
		delete(s.perUser, c.p.Subject)
	}
	if s.shutting && len(s.conns) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// reserveConn counts one more connection of subject, unless it holds
// MaxConnsPerUser already. Call releaseConn when it ends.
func (s *Server) reserveConn(subject string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[subject] >= s.cfg.MaxConnsPerUser {
		return false
	}
	s.perUser[subject]++
	return true
}

func (s *Server) releaseConn(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[subject]--; s.perUser[subject] <= 0 {
		delete(s.perUser, subject)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
