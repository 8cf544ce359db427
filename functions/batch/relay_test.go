package batch_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
)

// TestControlsThroughRelay drives cancel and retry through the whole
// product (API behind the relay's proxy, relay WebSocket): the relay's
// final message says cancelled with timing figures and counts that add up;
// after a retry of the cancelled nodes it streams attempt 2 to succeeded.
// The cancel lands mid-batch by construction: a gate holds the patch
// function's writes after the first 10 until the cancel is recorded.
func TestControlsThroughRelay(t *testing.T) {
	const total, cap, before = 120, 2, 10
	env := harness.Start(t)
	gate := newGate(t, before)
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Latency: 30 * time.Millisecond, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	prod, err := product.Start(t.Context(), product.Options{
		Project: env.ProjectID(t), APIKube: env.AdminConfig, PatchKube: proxy.RestConfig(env.PatcherConfig), InlineMax: -1,
	})
	if err != nil {
		t.Fatalf("product.Start: %v", err)
	}
	t.Cleanup(prod.Close)
	prefix, _ := env.SeedNodes(t, total)
	tok, err := prod.Token("grace", false)
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, path, body string, out any) (int, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), method, prod.RelayURL+path, strings.NewReader(body))
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if out != nil {
			if err := json.NewDecoder(bytes.NewReader(raw)).Decode(out); err != nil {
				return 0, nil, fmt.Errorf("%s %s = %d %s: %w", method, path, resp.StatusCode, raw, err)
			}
		}
		return resp.StatusCode, raw, nil
	}
	call := func(method, path, body string, out any) int {
		t.Helper()
		code, _, err := send(method, path, body, out)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	var c batch.Created
	if code := call(http.MethodPost, "/v1/batches", fmt.Sprintf(`{"labels":["relay=yes"],"selector":%q,"concurrency":%d,"max_nodes":%d}`, selector(prefix), cap, total), &c); code != http.StatusAccepted {
		t.Fatalf("submit through the relay = %d", code)
	}
	conn := subscribe(t, prod.RelayURL, tok, c.BatchID)
	waitHeld(t, gate, cap)
	var ack batch.Cancelled
	if a := cancelWhileHeld(t, prod.Store, c.BatchID, gate, func() (int, []byte, error) {
		return send(http.MethodPost, "/v1/batches/"+c.BatchID+":cancel", "", &ack)
	}); a.code != http.StatusOK || !ack.Settled {
		t.Fatalf("cancel through the relay = %d %s, want 200 settled", a.code, a.raw)
	}
	final := untilFinal(t, conn, c.BatchID)
	want := model.Counts{Succeeded: before + cap, Cancelled: total - before - cap}
	if final.Type != progress.TypeComplete || final.State != model.StateCancelled || final.Counts != want || final.Timing == nil || final.Timing.End.IsZero() {
		t.Fatalf("final message = %+v, want complete/cancelled, counts %+v, timing", final, want)
	}

	var rt batch.Retried
	if code := call(http.MethodPost, "/v1/batches/"+c.BatchID+":retry", `{"include_cancelled":true}`, &rt); code != http.StatusAccepted || rt.Total != final.Counts.Cancelled {
		t.Fatalf("retry = %d %+v, want 202 re-running the %d cancelled nodes", code, rt, final.Counts.Cancelled)
	}
	final = untilFinal(t, conn, c.BatchID)
	if final.State != model.StateSucceeded || final.Attempt != 2 || final.Counts.Succeeded != total || final.Timing == nil || final.Timing.Attempts != 2 {
		t.Fatalf("final message after retry = %+v, want attempt 2 succeeded %d", final, total)
	}
	var hist batch.HistoryPage
	if code := call(http.MethodGet, "/v1/batches?limit=5", "", &hist); code != http.StatusOK || len(hist.Batches) != 1 || hist.Batches[0].ID != c.BatchID {
		t.Errorf("history through the relay = %d %+v, want the one batch", code, hist)
	}
}

func subscribe(t *testing.T, relayURL, token, id string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"nodebatch.v1", "bearer." + token}}
	conn, _, err := d.DialContext(t.Context(), "ws"+strings.TrimPrefix(relayURL, "http")+"/v1/progress/ws", nil)
	if err != nil {
		t.Fatalf("dial relay: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.WriteJSON(map[string]string{"type": "subscribe", "task_id": id}); err != nil {
		t.Fatal(err)
	}
	return conn
}

func next(t *testing.T, conn *websocket.Conn, id string) progress.Message {
	t.Helper()
	for {
		conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		var m progress.Message
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("read progress: %v", err)
		}
		if m.TaskID == id {
			return m
		}
	}
}

func untilFinal(t *testing.T, conn *websocket.Conn, id string) progress.Message {
	t.Helper()
	for {
		if m := next(t, conn, id); m.Final() {
			return m
		}
	}
}
