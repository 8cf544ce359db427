package relay_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// scrapeMetrics reads the relay's /metrics with the Prometheus text parser.
func scrapeMetrics(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url + telemetry.MetricsPath)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return fams, nil
}

// relayFigures are the relay's metrics as /metrics shows them.
type relayFigures struct {
	Connections, Subscriptions, BatchWatchers, OwnerWatchers float64
	DelayCount                                               uint64
	SlowCloses                                               float64
}

func figures(fams map[string]*dto.MetricFamily) relayFigures {
	value := func(name, label, want string) float64 {
		var v float64
		for _, m := range fams[name].GetMetric() {
			ok := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == want {
					ok = true
				}
			}
			if ok {
				v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
		return v
	}
	var delays uint64
	for _, m := range fams["nodebatch_relay_progress_delay_seconds"].GetMetric() {
		delays += m.GetHistogram().GetSampleCount()
	}
	return relayFigures{
		Connections:   value("nodebatch_relay_connections", "", ""),
		Subscriptions: value("nodebatch_relay_subscriptions", "", ""),
		BatchWatchers: value("nodebatch_relay_watchers", "nodebatch_relay_watcher", "batch"),
		OwnerWatchers: value("nodebatch_relay_watchers", "nodebatch_relay_watcher", "owner"),
		DelayCount:    delays,
		SlowCloses:    value("nodebatch_relay_slow_client_closes_total", "", ""),
	}
}

// waitFigures waits until /metrics shows what check accepts.
func waitFigures(t *testing.T, url, what string, check func(relayFigures) error) relayFigures {
	t.Helper()
	var got relayFigures
	wait.For(t.Context(), t, what, func() error {
		fams, err := scrapeMetrics(url)
		if err != nil {
			return err
		}
		got = figures(fams)
		if err := check(got); err != nil {
			return fmt.Errorf("%w (figures %+v)", err, got)
		}
		return nil
	})
	return got
}

// gauges accepts exactly these gauge values.
func gauges(conns, subs, batchWatchers, ownerWatchers float64) func(relayFigures) error {
	return func(f relayFigures) error {
		if f.Connections != conns || f.Subscriptions != subs || f.BatchWatchers != batchWatchers || f.OwnerWatchers != ownerWatchers {
			return fmt.Errorf("want connections %v, subscriptions %v, batch watchers %v, owner watchers %v", conns, subs, batchWatchers, ownerWatchers)
		}
		return nil
	}
}

// newMetricsFixture is a relay with telemetry (metrics on /metrics, no
// tracing) queueing at most maxQueued final messages per connection (0:
// the default).
func newMetricsFixture(t *testing.T, maxQueued int) *fixture {
	t.Helper()
	tel, err := telemetry.Setup(t.Context(), func(k string) string {
		return map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return newFixture(t, func(c *relay.Config) {
		c.Telemetry = tel
		c.MaxQueued = 1            // a client that stops reading overflows at the second final message
		c.WriteTimeout = readGuard // a blocked write waits for the slow client instead of failing
	})
}

// TestRelayMetrics: the relay's /metrics, parsed with the Prometheus text
// parser, counts the open connections, subscriptions and shared batch
// watchers as clients come and go, and records a progress delay for the
// messages sent.
func TestRelayMetrics(t *testing.T) {
	f := newMetricsFixture(t, 0)
	waitFigures(t, f.url, "no connection yet", gauges(0, 0, 0, 0))

	s := newSim(f.fs, "metrics-batch", owner("alice"), 2, 3)
	if err := s.create(t.Context()); err != nil {
		t.Fatal(err)
	}
	a1 := f.mustDial(t, "alice", false)
	a2 := f.mustDial(t, "alice", false)
	for _, c := range []*websocket.Conn{a1, a2} {
		send(t, c, map[string]string{"type": "subscribe", "task_id": s.doc.ID})
		if m := read(t, c); m.TaskID != s.doc.ID {
			t.Fatalf("first message for %q, want the snapshot of %s", m.TaskID, s.doc.ID)
		}
	}
	// Two connections, two subscriptions, one watcher they share.
	waitFigures(t, f.url, "two subscribed connections", gauges(2, 2, 1, 0))
	a3 := f.mustDial(t, "alice", false)
	send(t, a3, map[string]string{"type": "subscribe_all"})
	waitFigures(t, f.url, "a third connection on the owner feed", gauges(3, 3, 1, 1))

	before := waitFigures(t, f.url, "figures before the nodes run", gauges(3, 3, 1, 1))
	if err := s.runLanes(t.Context(), 0, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.finish(t.Context()); err != nil {
		t.Fatal(err)
	}
	received := 0
	for _, c := range []*websocket.Conn{a1, a2, a3} {
		if _, err := readUntilFinal(c, s.doc.ID, func(m progress.Message) {
			if m.TaskID == s.doc.ID {
				received++
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitFigures(t, f.url, "progress delays of the messages sent", func(got relayFigures) error {
		n := got.DelayCount - before.DelayCount
		if n == 0 || n > uint64(received) {
			return fmt.Errorf("%d progress delays recorded, want 1 to %d (the messages a1, a2 and a3 got)", n, received)
		}
		return nil
	})

	for _, c := range []*websocket.Conn{a1, a2, a3} {
		c.Close()
	}
	got := waitFigures(t, f.url, "every connection gone", gauges(0, 0, 0, 0))
	if got.SlowCloses != 0 {
		t.Errorf("slow-client closes = %v, want 0 (every client read)", got.SlowCloses)
	}
}

// smallBuffers makes accepted connections' socket buffers small, so a
// client that stops reading blocks the relay's writes after a few
// messages instead of megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
		_ = tc.SetReadBuffer(4096)
	}
	return c, err
}

// TestRelayMetricsSlowClient: a client that stops reading while final
// messages pile up is closed with 1013, and /metrics counts one
// slow-client close.
func TestRelayMetricsSlowClient(t *testing.T) {
	f := newMetricsFixture(t, 1) // the second final message queued overflows
	srv := httptest.NewUnstartedServer(f.relay.Handler())
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)

	d := websocket.Dialer{
		HandshakeTimeout: readGuard,
		Subprotocols:     []string{relay.Subprotocol, "bearer." + f.iss.token(t, "bob", false)},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return c, err
		},
	}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/progress/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFigures(t, srv.URL, "the connection", gauges(1, 0, 0, 0))
	// Without reading: far more refusals (final messages: each must
	// arrive) than the small socket buffers hold, so the relay's writes
	// block and the final messages pile up. The relay may close the
	// connection before the last request: sending stops there.
	for range 3000 {
		if err := c.WriteJSON(map[string]any{"type": "subscribe_all", "all_users": true}); err != nil {
			break
		}
	}
	// Reading again unblocks the relay's writes; the client gets the
	// refusals that fitted, then the connection ends: with 1013 when the
	// close frame arrives (a reset, if the relay closed while requests
	// were still unread, may discard it).
	var closeErr *websocket.CloseError
	for {
		if _, err = readMsg(c); err != nil {
			break
		}
	}
	if errors.As(err, &closeErr) && closeErr.Code != websocket.CloseTryAgainLater {
		t.Errorf("closed with %d %q, want 1013 (try again later)", closeErr.Code, closeErr.Text)
	}
	waitFigures(t, srv.URL, "one slow-client close and no connection", func(got relayFigures) error {
		if got.SlowCloses != 1 {
			return errors.New("want 1 slow-client close")
		}
		return gauges(0, 0, 0, 0)(got)
	})
}
