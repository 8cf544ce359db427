package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/auth"
)

// errTokenQueryOff refuses the seed's ?token= while the compatibility
// setting is off.
var errTokenQueryOff = fmt.Errorf("%w: ?token= is disabled; offer the token as Sec-WebSocket-Protocol %q or use a ticket", auth.ErrNoToken, bearerPrefix+"<token>")

// serveWS upgrades an authenticated request from an allowed origin. The
// seed's path (seed=true) behaves like the seed's user-level connection:
// it is subscribed to all the caller's batches at once.
func (s *Server) serveWS(seed bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			apierror.Write(w, apierror.New(apierror.MethodNotAllowed, "use GET with a WebSocket upgrade"))
			return
		}
		if !s.originAllowed(r) {
			s.log.Warn("websocket refused: origin not allowed", "origin", r.Header.Get("Origin"))
			apierror.Write(w, apierror.New(apierror.Forbidden, "origin not allowed"))
			return
		}
		// The query is checked before anything reads it: a ticket is not
		// spent on a request that is refused anyway, and ?task_id= passes
		// the check every id passes before it reaches a Firestore path.
		q, qerr := parseUpgradeQuery(r.URL.RawQuery)
		if qerr != nil {
			s.log.Info("websocket refused: bad query", "reason", qerr.Error())
			apierror.Write(w, qerr.answer())
			return
		}
		p, err := s.authenticate(r, q)
		if err != nil {
			s.refuse(w, r, err)
			return
		}
		s.mu.Lock()
		shutting := s.shutting
		s.mu.Unlock()
		if shutting {
			apierror.Write(w, apierror.New(apierror.Unavailable, "relay restarting; reconnect"))
			return
		}
		if !s.reserveConn(p.Subject) {
			s.log.Warn("websocket refused: per-user connection limit", "subject", p.Subject, "max", s.cfg.MaxConnsPerUser)
			e := apierror.Limited(apierror.Limit{Name: "connections_per_user", RetryAfter: connRetryAfter}, "too many open connections: at most %d per user; close one (one connection carries any number of subscriptions)", s.cfg.MaxConnsPerUser)
			e.KeyOrder = true // as first sent (relay/testdata/golden)
			apierror.Write(w, e)
			return
		}
		ws, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			s.releaseConn(p.Subject)
			return // the upgrader answered the client
		}
		c := newConn(s, ws, p)
		if !s.register(c) {
			s.releaseConn(p.Subject)
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseServiceRestart, "service restart; reconnect"), s.cfg.Now().Add(s.cfg.WriteTimeout))
			ws.Close()
			return
		}
		c.log.Debug("websocket connected", "seed_path", seed)
		go c.writePump()
		if seed {
			c.handle(clientMessage{Type: msgSubscribeAll})
		}
		if q.TaskID != "" {
			c.handle(clientMessage{Type: msgSubscribe, TaskID: q.TaskID})
		}
		c.readPump()
	}
}

// authenticate finds the caller's credential: a bearer token offered as a
// subprotocol, an Authorization header (non-browser clients), a ticket, or
// (only when enabled) the seed's ?token=.
func (s *Server) authenticate(r *http.Request, q upgradeQuery) (auth.Principal, error) {
	ctx := r.Context()
	for _, proto := range websocket.Subprotocols(r) {
		if tok, ok := strings.CutPrefix(proto, bearerPrefix); ok {
			return s.verify(ctx, tok)
		}
	}
	if tok := bearerHeader(r); tok != "" {
		return s.verify(ctx, tok)
	}
	if t := q.Ticket; t != "" {
		p, ok := s.tickets.Redeem(t)
		if !ok {
			return auth.Principal{}, fmt.Errorf("%w: unknown, used or expired ticket", auth.ErrInvalidToken)
		}
		return p, nil
	}
	if tok := q.Token; tok != "" {
		if !s.cfg.SeedTokenQuery {
			return auth.Principal{}, errTokenQueryOff
		}
		return s.verify(ctx, tok)
	}
	return auth.Principal{}, auth.ErrNoToken
}

// errSchedulerNoProgress refuses the scheduler identity (a Google-signed
// service-account token) a progress socket or ticket: it submits batches and
// never watches them, so a leaked scheduler token opens no stream.
var errSchedulerNoProgress = errors.New("the scheduler identity submits batches; it cannot watch progress")

func (s *Server) verify(ctx context.Context, tok string) (auth.Principal, error) {
	if tok == "" {
		return auth.Principal{}, auth.ErrNoToken
	}
	p, err := s.cfg.Verifier.Verify(ctx, tok)
	if err == nil && p.Scheduler {
		return auth.Principal{}, errSchedulerNoProgress
	}
	return p, err
}

// refuse answers a failed authentication (401, or 503 when the identity
// provider is down) without ever echoing the credential.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	level := s.log.Info
	if errors.Is(err, auth.ErrInvalidToken) {
		level = s.log.Warn
	}
	level("request refused", "path", r.URL.Path, "reason", err.Error())
	apierror.Write(w, refusal(err))
}

// refusal is the answer to a failed authentication.
func refusal(err error) *apierror.Error {
	switch {
	case errors.Is(err, errSchedulerNoProgress):
		return apierror.Wrap(apierror.Forbidden, err, "%v", err)
	case errors.Is(err, errTokenQueryOff):
		e := apierror.Wrap(apierror.Unauthenticated, err, "?token= is disabled; offer the token as a Sec-WebSocket-Protocol or use a ticket")
		e.Header = http.Header{"Www-Authenticate": {auth.Challenge}}
		return e
	}
	return auth.HTTPError(err)
}

// answer is the refusal of an upgrade query, before the upgrade: 400
// malformed for a query that does not parse or repeats a parameter, 422
// invalid naming the parameter for a bad value (as the API answers a bad
// field).
func (e *queryError) answer() *apierror.Error {
	if e.Field == "" || e.Reason == reasonRepeated {
		return apierror.Wrap(apierror.Malformed, e, "%v", e)
	}
	ae := apierror.Field(apierror.Invalid, e.Field, "", e.Reason, "%v", e)
	ae.KeyOrder = true // as first sent (relay/testdata/golden)
	return ae
}

// bearerHeader returns the token of "Authorization: Bearer <token>".
func bearerHeader(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// originAllowed: no Origin (not a browser), the relay's own origin, or one
// in the allowlist.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range s.cfg.AllowedOrigins {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	return false
}
