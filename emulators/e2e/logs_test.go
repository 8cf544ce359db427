package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/product"
)

// syncBuffer is a bytes.Buffer safe for the product's many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoSecretsInLogs runs a full batch (fanned out, watched over the
// relay, with a ticket) plus refused attempts with forged, tampered and
// expired tokens and a token in the URL, with the product's logger and
// the process' default logger both writing JSON at debug level to
// buffers, then searches every log line for every token, every part of a
// token that identifies it (payload, signature) and every ticket.
//
// It changes the process-wide default logger, so it is not parallel.
func TestNoSecretsInLogs(t *testing.T) {
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, 30)
	var own, def syncBuffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&def, opts)))
	t.Cleanup(func() { slog.SetDefault(old) })
	p := startProduct(t, env, product.Options{Logger: slog.New(slog.NewJSONHandler(&own, opts))})
	ids := identities(t, p)
	alice := ids[owner]

	// A fanned-out batch, watched with a bearer subprotocol and with a ticket.
	id := submit(t, p, alice, fmt.Sprintf(`{"labels":["logs=%s"],"selector":"%s=%s","concurrency":3}`, prefix, harness.TestLabel, prefix))
	w := startWatcher(t, p.RelayURL, alice, id)
	code, b := call(t, http.MethodPost, p.RelayURL+"/v1/progress/tickets", alice, "")
	if code != http.StatusOK {
		t.Fatalf("POST ticket = %d %s", code, b)
	}
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if err := json.Unmarshal(b, &tk); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"ticket": tk.Ticket}
	d := websocket.Dialer{Subprotocols: []string{"nodebatch.v1"}}
	for range 2 { // the second use is refused
		if conn, _, err := d.DialContext(t.Context(), wsURL(p.RelayURL)+"?ticket="+tk.Ticket+"&task_id="+id, nil); err == nil {
			conn.Close()
		}
	}
	final := w.wait(t)
	verifyFinal(t, "watcher", final, len(names), succeeded(len(names)))

	// Everyone tries everything; refusals are logged.
	for _, c := range callers {
		call(t, http.MethodGet, p.APIURL+"/v1/batches/"+id, ids[c], "")
		call(t, http.MethodPost, p.APIURL+"/v1/batches", ids[c], `{"labels":["kubernetes.io/x=y"],"all":true}`)
		call(t, http.MethodPost, p.RelayURL+"/v1/progress/tickets", ids[c], "")
		if conn, _, err := dial(t.Context(), p.RelayURL, ids[c], nil); err == nil {
			// A client message quoting the token must not be echoed or logged.
			conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","task_id":"`+ids[c]+`"}`))
			conn.WriteMessage(websocket.TextMessage, []byte(ids[c]))
			conn.Close()
		}
		if ids[c] != "" {
			if conn, _, err := d.DialContext(t.Context(), wsURL(p.RelayURL)+"?token="+ids[c], nil); err == nil {
				conn.Close()
			}
		}
	}
	p.Close() // flush every part's last log lines

	for c, tok := range ids {
		if tok == "" {
			continue
		}
		parts := strings.Split(tok, ".")
		secrets[c+" token"] = tok
		secrets[c+" token payload"] = parts[1]
		secrets[c+" token signature"] = parts[2]
	}
	logs := own.String() + def.String()
	if !strings.Contains(own.String(), `"batch created"`) || !strings.Contains(logs, "request refused") {
		t.Fatalf("captured logs lack the expected lines (batch created, request refused): capture is broken\n%.2000s", logs)
	}
	for what, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			i := strings.Index(logs, s)
			t.Errorf("the logs contain the %s: …%s…", what, logs[max(0, i-200):i])
		}
	}
	t.Logf("RELIABILITY logs bytes=%d lines=%d secrets_searched=%d", len(logs), strings.Count(logs, "\n"), len(secrets))
}
