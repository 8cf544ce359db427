package relay_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/golden"
)

// TestGoldenRelayInBand records the relay's in-band answers on an open
// WebSocket (docs/api.md, "Client → relay"): each refused client message
// and the refusal it gets, frame for frame, compared with
// testdata/golden/ws_inband.golden after normalizing timestamps. The
// connection stays open through all of them. Run with -update to rewrite.
func TestGoldenRelayInBand(t *testing.T) {
	harness.Start(t)
	f := newFixture(t, nil)
	conn, resp, err := f.dial(t, "", f.iss.token(t, "alice", false), nil)
	if err != nil {
		t.Fatalf("dial as alice: %v (status %v)", err, status(resp))
	}
	defer conn.Close()
	var out bytes.Buffer
	for _, msg := range []string{
		`not json`,
		`[]`,
		`{"type":"subscribe","task_id":"b1","TYPE":"x"}`,
		`{"type":"subscribe","type":"unsubscribe","task_id":"b1"}`,
		`{"type":"dance"}`,
		`{"type":"subscribe"}`,
		`{"type":"subscribe","task_id":"a.b"}`,
		`{"type":"subscribe","task_id":"__x__"}`,
		`{"type":"subscribe_all","all_users":true}`,
		`{"type":"subscribe","task_id":"no-such-batch"}`,
	} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("send %s: %v", msg, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		kind, frame, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("answer to %s: %v", msg, err)
		}
		if kind != websocket.TextMessage {
			t.Fatalf("answer to %s: frame type %d, want text", msg, kind)
		}
		out.WriteString("> " + msg + "\n< ")
		out.Write(bytes.TrimSuffix(frame, []byte("\n")))
		out.WriteString("\n")
	}
	golden.Check(t, filepath.Join("testdata", "golden", "ws_inband.golden"), golden.Normalize(out.Bytes()), *update)
}
