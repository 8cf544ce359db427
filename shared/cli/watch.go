package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/shared/progress"
)

// subprotocol is the relay's WebSocket subprotocol (relay.Subprotocol).
const subprotocol = "nodebatch.v1"

// maxReconnects bounds how often a wait redials after the relay closed the
// connection (restart 1012, slow client 1013, token expired 1008).
const maxReconnects = 5

// wsURL turns the API base URL into the relay's progress endpoint.
func wsURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse --nodebatch-url: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("--nodebatch-url %q: scheme must be http or https", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/progress/ws"
	u.RawQuery = ""
	return u.String(), nil
}

// watcher follows one batch over the relay's WebSocket until its final
// message. The token goes in the Authorization header, never in the URL.
type watcher struct {
	url   string
	token func(ctx context.Context) (string, error)
	rep   reporter // shows every non-final message and the final one
}

// wait returns the batch's final progress message.
func (w *watcher) wait(ctx context.Context, id string) (progress.Message, error) {
	var last error
	for attempt := 0; attempt <= maxReconnects; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return progress.Message{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		m, retry, err := w.once(ctx, id)
		if err == nil {
			return m, nil
		}
		if !retry {
			return m, err
		}
		last = err
	}
	return progress.Message{}, fmt.Errorf("watch batch %s: gave up after %d reconnects: %w", id, maxReconnects, last)
}

// once dials, subscribes and reads until the final message; retry says the
// connection ended in a way a new one may fix.
func (w *watcher) once(ctx context.Context, id string) (m progress.Message, retry bool, err error) {
	tok, err := w.token(ctx)
	if err != nil {
		return m, false, err
	}
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, Subprotocols: []string{subprotocol}, Proxy: http.ProxyFromEnvironment}
	conn, resp, err := d.DialContext(ctx, w.url, http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			return m, false, decodeError(resp.StatusCode, body)
		}
		return m, true, fmt.Errorf("dial progress stream: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sub, _ := json.Marshal(map[string]string{"type": "subscribe", "task_id": id})
	if err := conn.WriteMessage(websocket.TextMessage, sub); err != nil {
		return m, true, fmt.Errorf("subscribe to %s: %w", id, err)
	}
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return m, false, ctx.Err()
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseMessageTooBig {
				return m, false, fmt.Errorf("progress stream closed: %w", err)
			}
			return m, true, fmt.Errorf("read progress: %w", err)
		}
		msg, err := decodeMessage(data)
		if err != nil || msg.TaskID != id {
			continue // another batch's message, or one this client does not know
		}
		if msg.Type == progress.TypeError && msg.State == "" {
			return msg, false, fmt.Errorf("watch batch %s: %s", id, msg.Message)
		}
		if msg.State.Final() {
			w.rep.final(msg)
			return msg, false, nil
		}
		w.rep.update(msg)
	}
}

// decodeMessage parses one relay message.
func decodeMessage(data []byte) (progress.Message, error) {
	var m progress.Message
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode progress message: %w", err)
	}
	return m, nil
}

// progressLine is one plain line for logs and pipes.
func progressLine(m progress.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch/%s %s: %d/%d nodes done, %d failed", m.TaskID, orDash(string(m.State)), m.Current, m.Total, m.Counts.Failed)
	if m.Rate > 0 {
		fmt.Fprintf(&b, ", %.1f nodes/s", m.Rate)
	}
	if m.ETASeconds > 0 {
		fmt.Fprintf(&b, ", eta %s", (time.Duration(m.ETASeconds * float64(time.Second))).Round(time.Second))
	}
	if n := len(m.InFlight); n > 0 {
		fmt.Fprintf(&b, ", %d in flight", n)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
