package product_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/shared/progress"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// TestEndToEnd drives the whole product the way a user does: a token from
// the development issuer, a batch through the API, progress over the
// relay's WebSocket until "complete", and the result on the API server.
func TestEndToEnd(t *testing.T) {
	env := harness.Start(t)
	ctx := t.Context()
	p, err := product.Start(ctx, product.Options{
		Project:   env.ProjectID(t),
		APIKube:   env.AdminConfig,
		PatchKube: env.PatcherConfig,
	})
	if err != nil {
		t.Fatalf("product.Start: %v", err)
	}
	t.Cleanup(p.Close)
	prefix, names := env.SeedNodes(t, 40)
	token, err := p.Token("alice", false)
	if err != nil {
		t.Fatal(err)
	}

	body := fmt.Sprintf(`{"labels":["e2e=%s"],"taints":["e2e=yes:NoSchedule"],"selector":"nodebatch.dev/test=%s","concurrency":4}`, prefix, prefix)
	created := postJSON(t, p.APIURL+"/v1/batches", token, body, http.StatusAccepted)
	id, _ := created["batch_id"].(string)
	if id == "" || created["total"] != float64(len(names)) {
		t.Fatalf("POST /v1/batches = %v, want a batch_id and total %d", created, len(names))
	}

	final := watch(t, ctx, p.RelayURL, token, id)
	if final.Type != progress.TypeComplete || final.Current != len(names) || final.Total != len(names) || final.Counts.Succeeded != len(names) {
		t.Fatalf("final message = %+v, want complete with %d/%d succeeded", final, len(names), len(names))
	}
	kube := env.Kube(t)
	for _, n := range names {
		node, err := kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Labels["e2e"] != prefix {
			t.Errorf("node %s label e2e = %q, want %q", n, node.Labels["e2e"], prefix)
		}
		found := false
		for _, tn := range node.Spec.Taints {
			found = found || (tn.Key == "e2e" && tn.Value == "yes" && tn.Effect == "NoSchedule")
		}
		if !found {
			t.Errorf("node %s taints = %v, want e2e=yes:NoSchedule among them", n, node.Spec.Taints)
		}
	}

	// Another user cannot see the batch.
	bob, _ := p.Token("bob", false)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.APIURL+"/v1/batches/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET other user's batch = %d, want 404", resp.StatusCode)
	}
}

func postJSON(t *testing.T, url, token, body string, want int) map[string]any {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s = %d %s, want %d", url, resp.StatusCode, buf.String(), want)
	}
	var out map[string]any
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		t.Fatalf("POST %s: decode %q: %v", url, buf.String(), err)
	}
	return out
}

// watch subscribes to a batch and returns its final message; current must
// never go backwards on the way.
func watch(t *testing.T, ctx context.Context, relayURL, token, id string) progress.Message {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"nodebatch.v1", "bearer." + token}}
	conn, resp, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(relayURL, "http")+"/v1/progress/ws", nil)
	if err != nil {
		t.Fatalf("dial relay: %v (%v)", err, resp)
	}
	defer conn.Close()
	if err := conn.WriteJSON(map[string]string{"type": "subscribe", "task_id": id}); err != nil {
		t.Fatal(err)
	}
	last := -1
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for {
		var m progress.Message
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("read progress (last current %d): %v", last, err)
		}
		if m.TaskID != id {
			continue
		}
		if m.Current < last {
			t.Fatalf("current went backwards: %d after %d", m.Current, last)
		}
		last = m.Current
		if m.Type == progress.TypeComplete || m.Type == progress.TypeError {
			return m
		}
	}
}
