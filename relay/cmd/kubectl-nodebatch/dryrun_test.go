package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/seed"
	"github.com/nodebatch/nodebatch/shared/cli"
)

// TestCLIDryRun runs --dry-run=server: every node's before → after, the
// totals, and for a NoExecute taint the pods it would evict and the budget
// it would violate; nothing changes and no batch is recorded.
func TestCLIDryRun(t *testing.T) {
	f := start(t)
	env := harness.Start(t)
	kube := env.Kube(t)
	_, names := env.SeedNodes(t, 3)
	for i, v := range map[int]string{0: "new", 1: "old"} {
		patch := fmt.Sprintf(`{"metadata":{"labels":{"dr":%q}}}`, v)
		if _, err := kube.CoreV1().Nodes().Patch(t.Context(), names[i], types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ns := "dr" + env.ProjectID(t)[4:12]
	// Per node: the agent (a DaemonSet pod), web (no toleration, budget
	// "web" allows 1 disruption) and exact (tolerates the drain taint).
	if err := seed.Workloads(t.Context(), kube, seed.WorkloadOptions{Namespace: ns, Nodes: names[:2], PodsPerNode: 3}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := seed.DeleteWorkloads(ctx, kube, ns); err != nil {
			t.Errorf("DeleteWorkloads: %v", err)
		}
	})
	before := f.newestOrNone()

	t.Run("label: before → after per node", func(t *testing.T) {
		r := f.run(f.alice, "label", "nodes", names[0], names[1], names[2], "dr=new", "--dry-run=server")
		if r.code != cli.ExitOK {
			t.Fatalf("exit %d, want 0", r.code)
		}
		want := "# dry run (server): 3 nodes, 2 would change, 1 already in target, 0 skipped; nothing was changed\n" +
			"node/" + names[0] + " unchanged (already in target)\n" +
			"node/" + names[1] + "\n" +
			`~ label:dr: "old" → "new"` + "\n" +
			"node/" + names[2] + "\n" +
			`+ label:dr: (absent) → "new"` + "\n"
		if diff := cmp.Diff(want, r.stdout); diff != "" {
			t.Errorf("stdout (-want +got):\n%s", diff)
		}
		r = f.run(f.alice, "label", "nodes", names[0], names[1], "dr-", "--dry-run=server", "-o", "name")
		if diff := cmp.Diff("node/"+names[0]+"\nnode/"+names[1]+"\n", r.stdout); r.code != cli.ExitOK || diff != "" {
			t.Errorf("-o name: exit %d (-want +got):\n%s", r.code, diff)
		}
	})

	t.Run("NoExecute taint: evictions and the violated budget", func(t *testing.T) {
		taint := seed.DrainKey + "=" + seed.DrainValue + ":NoExecute"
		r := f.run(f.alice, "taint", "nodes", names[0], names[1], names[2], taint, "--dry-run=server")
		if r.code != cli.ExitOK {
			t.Fatalf("exit %d, want 0", r.code)
		}
		key := "taint:" + seed.DrainKey + ":NoExecute"
		for _, want := range []string{
			"# dry run (server): 3 nodes, 3 would change, 0 already in target, 0 skipped; nothing was changed\n",
			"# impact: would evict 4 pods on 2 nodes",
			"#   budget " + ns + "/web violated: 2 evictions, 1 disruptions allowed (taint eviction ignores budgets)\n",
			"#   evicts pod " + ns + "/" + seed.PodName(names[0], 1) + " on node/" + names[0] + " at once (budget " + ns + "/web)\n",
			"#   evicts pod " + ns + "/" + seed.PodName(names[1], 0) + " on node/" + names[1] + " at once (daemonset)\n",
			"node/" + names[2] + "\n+ " + key + `: (absent) → "now"` + "\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q", want)
			}
		}
		if strings.Contains(r.stdout, seed.PodName(names[0], 2)) {
			t.Errorf("pod %s tolerates the taint but is listed as evicted", seed.PodName(names[0], 2))
		}
		for _, n := range names {
			node, err := kube.CoreV1().Nodes().Get(t.Context(), n, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, tn := range node.Spec.Taints {
				if tn.Key == seed.DrainKey {
					t.Errorf("node %s has taint %v after a dry run", n, tn)
				}
			}
		}
	})

	t.Run("-o json is the API's answer", func(t *testing.T) {
		args := []string{"label", "nodes", names[1], names[2], "dr=x", "--dry-run=server", "-o", "json"}
		r := f.run(f.alice, args...)
		if r.code != cli.ExitOK {
			t.Fatalf("exit %d, want 0", r.code)
		}
		api := f.post(f.alice, "/v1/batches:preview?page_size=1000", `{"labels":["dr=x"],"nodes":["`+names[1]+`","`+names[2]+`"]}`)
		var got, want any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("stdout is not one JSON document: %v\n%s", err, r.stdout)
		}
		if err := json.Unmarshal(api, &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("-o json (-API +cli):\n%s", diff)
		}
	})

	t.Run("bad key exits 2, nothing recorded", func(t *testing.T) {
		r := f.run(f.alice, "label", "nodes", names[0], "bad key=x", "--dry-run=server")
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, `error: field "labels[0]"`) {
			t.Errorf("exit %d, stderr %q; want 2 and the field error", r.code, r.stderr)
		}
		if r := f.run(f.alice, "label", "nodes", names[0], "a=b", "--dry-run=client"); r.code != cli.ExitUsage {
			t.Errorf("--dry-run=client: exit %d, want 2", r.code)
		}
	})

	for _, n := range names {
		node, err := kube.CoreV1().Nodes().Get(t.Context(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v := node.Labels["dr"]; v == "x" || (n == names[2] && v != "") {
			t.Errorf("node %s label dr = %q after dry runs only", n, v)
		}
	}
	if after := f.newestOrNone(); after != before {
		t.Errorf("a dry run recorded batch %s", after)
	}
}

// post sends a request to the API as token and returns the 2xx body.
func (f *fixture) post(token, path, body string) []byte {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(f.t.Context(), http.MethodPost, f.p.APIURL+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		f.t.Fatalf("POST %s = %d %s", path, resp.StatusCode, b)
	}
	return b
}

// newestOrNone is alice's newest batch id, or "" when she has none.
func (f *fixture) newestOrNone() string {
	f.t.Helper()
	var l struct {
		Batches []struct {
			BatchID string `json:"batch_id"`
		} `json:"batches"`
	}
	req, _ := http.NewRequestWithContext(f.t.Context(), http.MethodGet, f.p.APIURL+"/v1/batches?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+f.alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		f.t.Fatal(err)
	}
	if len(l.Batches) == 0 {
		return ""
	}
	return l.Batches[0].BatchID
}
