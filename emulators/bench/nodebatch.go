package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/shared/progress"
)

// Subprotocol is the relay's WebSocket subprotocol; the bearer token rides
// in a second offered subprotocol "bearer.<token>".
const Subprotocol = "nodebatch.v1"

// Nodebatch drives a running nodebatch (batch function + relay) as a client
// would: submit over HTTP, follow progress over a WebSocket.
type Nodebatch struct {
	APIURL   string       // batch function base URL
	RelayURL string       // relay base URL (http://…)
	Token    string       // bearer token of the submitting user
	HTTP     *http.Client // nil means http.DefaultClient
	Selector string       // matches exactly the bench nodes
	Nodes    int          // how many nodes Selector matches
}

// submitBody is POST /v1/batches's body (docs/api.md).
type submitBody struct {
	Labels      []string `json:"labels,omitempty"`
	Taints      []string `json:"taints,omitempty"`
	Selector    string   `json:"selector"`
	Concurrency int      `json:"concurrency"`
	Confirm     int      `json:"confirm,omitempty"` // the confirmation guard: the node count
}

// created is the part of the 202 answer the bench reads.
type created struct {
	BatchID string `json:"batch_id"`
	Total   int    `json:"total"`
}

// Trace is one nodebatch run as the client saw it.
type Trace struct {
	BatchID   string
	Begin     time.Time        // POST /v1/batches sent
	Submitted time.Time        // its 202 answer read
	Completed time.Time        // the `complete` message read
	Final     progress.Message // that message
}

// Wall is the time from submit to `complete`.
func (t Trace) Wall() time.Duration { return t.Completed.Sub(t.Begin) }

// Run submits one batch setting bench=value as op at concurrency c and
// follows it to the `complete` message on a WebSocket opened beforehand (a
// UI is connected before its user clicks). It fails unless every node
// succeeded and changed.
func (n Nodebatch) Run(ctx context.Context, op Op, value string, c int) (Trace, error) {
	var tr Trace
	ws, err := Dial(ctx, n.RelayURL, n.Token)
	if err != nil {
		return tr, err
	}
	defer ws.Close()
	tr.Begin = time.Now()
	if tr.BatchID, err = n.Submit(ctx, op, value, c); err != nil {
		return tr, err
	}
	tr.Submitted = time.Now()
	if err := Subscribe(ws, tr.BatchID); err != nil {
		return tr, err
	}
	tr.Final, err = awaitFinal(ctx, ws, tr.BatchID, nil)
	tr.Completed = time.Now()
	if err != nil {
		return tr, err
	}
	if err := n.check(tr.Final); err != nil {
		return tr, fmt.Errorf("batch %s: %w", tr.BatchID, err)
	}
	return tr, nil
}

// check accepts only a batch where every node succeeded with a change.
func (n Nodebatch) check(m progress.Message) error {
	c := m.Counts
	if m.Type != progress.TypeComplete || c.Succeeded != n.Nodes || c.Unchanged != 0 || m.Total != n.Nodes {
		return fmt.Errorf("ended %s/%s with counts %+v of %d nodes (%s), want all %d succeeded and changed",
			m.Type, m.State, c, m.Total, m.Message, n.Nodes)
	}
	return nil
}

// Submit sends POST /v1/batches and returns the batch id.
func (n Nodebatch) Submit(ctx context.Context, op Op, value string, c int) (string, error) {
	body := submitBody{Selector: n.Selector, Concurrency: c, Confirm: n.Nodes}
	switch op {
	case OpTaint:
		body.Taints = []string{"bench=" + value + ":NoSchedule"}
	default:
		body.Labels = []string{"bench=" + value}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return "", fmt.Errorf("encode batch request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(n.APIURL, "/")+"/v1/batches", bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("submit batch: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+n.Token)
	client := n.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("submit batch: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("submit batch: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("submit batch: %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	var out created
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("submit batch: decode answer: %w", err)
	}
	if out.BatchID == "" || out.Total != n.Nodes {
		return "", fmt.Errorf("submit batch: answer %s: want a batch id and total %d", bytes.TrimSpace(raw), n.Nodes)
	}
	return out.BatchID, nil
}

// Dial opens a progress WebSocket to the relay at relayURL (http or https)
// with token offered as the bearer subprotocol.
func Dial(ctx context.Context, relayURL, token string) (*websocket.Conn, error) {
	u := strings.TrimSuffix(relayURL, "/") + "/v1/progress/ws"
	u = "ws" + strings.TrimPrefix(u, "http")
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, Subprotocols: []string{Subprotocol, "bearer." + token}}
	ws, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial relay %s: %w (HTTP %s)", u, err, resp.Status)
		}
		return nil, fmt.Errorf("dial relay %s: %w", u, err)
	}
	return ws, nil
}

// Subscribe asks for the progress of batch id on ws.
func Subscribe(ws *websocket.Conn, id string) error {
	if err := ws.WriteJSON(map[string]string{"type": "subscribe", "task_id": id}); err != nil {
		return fmt.Errorf("subscribe to %s: %w", id, err)
	}
	return nil
}

// Seen is one progress message as a client received it.
type Seen struct {
	At      time.Time // when the client read it
	Current int       // nodes done, as the message says
}

// head is the part of a progress message every read decodes; the whole
// message is decoded only for the final one, so 1,000 in-process clients
// spend little CPU next to the relay they measure.
type head struct {
	TaskID  string        `json:"task_id"`
	Type    progress.Type `json:"type"`
	Current int           `json:"current"`
}

// awaitFinal reads ws until the final message of batch id and returns it.
// Every message of id is passed to seen (if not nil) with its receive time.
// An error message for id (a refusal, or a failed batch) ends the wait.
func awaitFinal(ctx context.Context, ws *websocket.Conn, id string, seen func(Seen)) (progress.Message, error) {
	stop := context.AfterFunc(ctx, func() { ws.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		_, data, err := ws.ReadMessage()
		at := time.Now()
		if err != nil {
			return progress.Message{}, fmt.Errorf("wait for batch %s to complete: %w", id, err)
		}
		var h head
		if err := json.Unmarshal(data, &h); err != nil {
			return progress.Message{}, fmt.Errorf("wait for batch %s: decode message: %w", id, err)
		}
		if h.TaskID != id {
			continue
		}
		if seen != nil {
			seen(Seen{At: at, Current: h.Current})
		}
		if h.Type != progress.TypeError && h.Type != progress.TypeComplete {
			continue
		}
		var m progress.Message
		if err := json.Unmarshal(data, &m); err != nil {
			return progress.Message{}, fmt.Errorf("wait for batch %s: decode message: %w", id, err)
		}
		if m.Type == progress.TypeError {
			return m, fmt.Errorf("batch %s: error message: %s", id, m.Message)
		}
		return m, nil
	}
}
