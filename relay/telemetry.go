package relay

import (
	"context"
	"net/http"
	"strings"

	"github.com/nodebatch/nodebatch/relay/watch"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// observe registers the relay's gauges (connections, subscriptions,
// watchers); Shutdown unregisters them, so a restarted relay in the same
// process does not report twice.
func (s *Server) observe() {
	s.unobserve = s.cfg.Telemetry.Metrics().ObserveRelay(func() telemetry.RelayGauges {
		st := s.reg.Stats()
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		return telemetry.RelayGauges{Connections: n, Subscriptions: st.Subscribers, BatchWatchers: st.Batches, OwnerWatchers: st.Owners}
	})
}

// instrumented serves GET /metrics and traces every request but the
// WebSocket upgrades (a connection lives for hours: it gets no span).
func (s *Server) instrumented(mux http.Handler) http.Handler {
	traced := s.cfg.Telemetry.Handler(mux, "relay")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			mux.ServeHTTP(w, r)
			return
		}
		traced.ServeHTTP(w, r)
	})
}

// sent records the progress delay of a message just written: from the
// newest node result it shows being written to now.
func (c *conn) sent(u watch.Update) {
	if w := u.Message.Written; !w.IsZero() {
		c.s.cfg.Telemetry.Metrics().ProgressDelay(context.Background(), c.s.cfg.Now().Sub(w))
	}
}
