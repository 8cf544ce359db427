package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// lockedBuffer is a bytes.Buffer safe to read while Run writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCancelAnswerAfterFinal: the relay's final message comes before the
// HTTP answer of the cancel Ctrl-C sent. The answer is still printed, before
// the summary, and the exit is 3.
func TestCancelAnswerAfterFinal(t *testing.T) {
	cancelAsked := make(chan struct{})
	wsClosed := make(chan struct{}) // the client read the final message and hung up
	up := websocket.Upgrader{Subprotocols: []string{subprotocol}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/progress/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.RawQuery != "" {
			t.Errorf("upgrade: Authorization %q, query %q; want the bearer header and no query", r.Header.Get("Authorization"), r.URL.RawQuery)
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if _, _, err := c.ReadMessage(); err != nil { // the subscribe
			return
		}
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"task_id":"b1","type":"progress","state":"running","current":1,"total":3}`))
		<-cancelAsked
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"task_id":"b1","type":"complete","state":"cancelled","current":3,"total":3}`))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				close(wsClosed)
				return
			}
		}
	})
	mux.HandleFunc("POST /v1/batches/{call}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("call") != "b1:cancel" {
			t.Errorf("unexpected POST %s", r.URL.Path)
		}
		close(cancelAsked)
		// Answer only once the client's wait has ended on the final
		// message.
		select {
		case <-wsClosed:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, `{"batch_id":"b1","state":"running","settled":true}`)
	})
	var mu sync.Mutex
	gets := 0
	mux.HandleFunc("GET /v1/batches/b1", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gets++
		first := gets == 1
		mu.Unlock()
		if first { // watch reads the batch, then waits
			fmt.Fprint(w, `{"batch_id":"b1","state":"running","total":3}`)
			return
		}
		fmt.Fprint(w, `{"batch_id":"b1","state":"cancelled","total":3,"counts":{"succeeded":1,"cancelled":2}}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var out, errb lockedBuffer
	interrupt := make(chan os.Signal, 1)
	env := Env{Stdout: &out, Stderr: &errb, Interrupt: interrupt, Getenv: func(k string) string {
		return map[string]string{"NODEBATCH_URL": srv.URL, "NODEBATCH_TOKEN": "tok"}[k]
	}}
	done := make(chan int, 1)
	go func() {
		done <- Run(context.Background(), []string{"watch", "b1", "--progress", "plain", "-o", "name"}, env)
	}()
	for !strings.Contains(errb.String(), "batch/b1 running: 1/3") {
		select {
		case code := <-done:
			t.Fatalf("Run ended (%d) before the first progress line: %q", code, errb.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	interrupt <- os.Interrupt
	if code := <-done; code != ExitCancelled {
		t.Errorf("exit %d, want 3; stderr %q", code, errb.String())
	}
	got := errb.String()
	answer := strings.Index(got, "batch/b1 cancel settled")
	summary := strings.Index(got, "batch/b1 cancelled: 3/3 nodes")
	if answer < 0 || summary < 0 || answer > summary {
		t.Errorf("stderr should have the cancel's answer, then the summary:\n%s", got)
	}
}
