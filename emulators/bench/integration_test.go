package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/bench"
	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/product"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// TestScenarios runs every bench scenario once on a few real nodes: the
// code paths of `make bench`, not its figures (no timing is asserted).
func TestScenarios(t *testing.T) {
	env := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 6
	prefix, names := env.SeedNodes(t, n)
	selector := harness.TestLabel + "=" + prefix
	admin, err := kubernetes.NewForConfig(bench.Unthrottled(env.AdminConfig))
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	value := 0
	next := func() string {
		value++
		return prefix + "-v" + strconv.Itoa(value)
	}

	t.Run("client-go", func(t *testing.T) {
		cg := bench.ClientGo{Client: admin, Names: names}
		for _, op := range []bench.Op{bench.OpLabel, bench.OpTaint} {
			for _, c := range []int{1, 4} {
				v := next()
				if _, err := cg.Run(ctx, op, v, c); err != nil {
					t.Fatalf("ClientGo.Run(%s, c=%d): %v", op, c, err)
				}
				if err := bench.Verify(ctx, admin, selector, op, v, n); err != nil {
					t.Errorf("after ClientGo.Run(%s, c=%d): %v", op, c, err)
				}
			}
		}
	})

	t.Run("kubectl", func(t *testing.T) {
		k := bench.Kubectl{Path: kubectlPath(t), Kubeconfig: env.Kubeconfig, Selector: selector, Nodes: n}
		for _, op := range []bench.Op{bench.OpLabel, bench.OpTaint} {
			v := next()
			r, err := k.Run(ctx, op, v)
			if err != nil {
				t.Fatalf("Kubectl.Run(%s): %v", op, err)
			}
			if r.CPU <= 0 || r.Wall <= 0 {
				t.Errorf("Kubectl.Run(%s) = %+v, want wall and kubectl's CPU from its rusage > 0", op, r)
			}
			if err := bench.Verify(ctx, admin, selector, op, v, n); err != nil {
				t.Errorf("after Kubectl.Run(%s): %v", op, err)
			}
		}
		wrong := bench.Kubectl{Path: k.Path, Kubeconfig: k.Kubeconfig, Selector: selector, Nodes: n + 1}
		if _, err := wrong.Run(ctx, bench.OpLabel, next()); err == nil {
			t.Errorf("Kubectl.Run expecting %d nodes on %d succeeded, want an error", n+1, n)
		}
	})

	t.Run("verify catches an unchanged node", func(t *testing.T) {
		if err := bench.Verify(ctx, admin, selector, bench.OpLabel, "never-set", n); err == nil {
			t.Errorf("Verify of a value never set succeeded, want an error")
		}
	})

	t.Run("nodebatch", func(t *testing.T) {
		p, err := product.Start(ctx, product.Options{
			Project:   env.ProjectID(t),
			APIKube:   env.AdminConfig,
			PatchKube: env.PatcherConfig,
			InlineMax: -1,
		})
		if err != nil {
			t.Fatalf("product.Start: %v", err)
		}
		defer p.Close()
		token, err := p.Token("bench", false)
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		nb := bench.Nodebatch{APIURL: p.APIURL, RelayURL: p.RelayURL, Token: token, Selector: selector, Nodes: n}
		for _, op := range []bench.Op{bench.OpLabel, bench.OpTaint} {
			v := next()
			tr, err := nb.Run(ctx, op, v, 3)
			if err != nil {
				t.Fatalf("Nodebatch.Run(%s): %v", op, err)
			}
			if tr.Final.TaskID != tr.BatchID || tr.Final.Counts.Succeeded != n {
				t.Errorf("Nodebatch.Run(%s) final = task %s counts %+v, want task %s with %d succeeded", op, tr.Final.TaskID, tr.Final.Counts, tr.BatchID, n)
			}
			if !(tr.Begin.Before(tr.Submitted) && tr.Submitted.Before(tr.Completed)) {
				t.Errorf("Nodebatch.Run(%s) trace times out of order: %+v", op, tr)
			}
			bd, err := bench.ReadBreakdown(ctx, p.Firestore, tr)
			if err != nil {
				t.Fatalf("ReadBreakdown: %v", err)
			}
			if bd.APIP50MS <= 0 || bd.SubmitMS <= 0 || bd.LaneNodes != 2 || bd.FinishMS < 0 || bd.RelayMS < 0 {
				t.Errorf("ReadBreakdown(%s) = %+v, want positive API and submit times, lanes of 2 nodes, finish and relay ≥ 0", op, bd)
			}
			if err := bench.Verify(ctx, admin, selector, op, v, n); err != nil {
				t.Errorf("after Nodebatch.Run(%s): %v", op, err)
			}
		}
		probe := bench.DelayProbe{Nodebatch: nb, Firestore: p.Firestore, Meter: &bench.CPUMeter{Proc: bench.Proc{Root: "/proc"}, CPUs: runtime.NumCPU()}}
		v := next()
		row, err := probe.Run(ctx, 3, 2, v)
		if err != nil {
			t.Fatalf("DelayProbe.Run: %v", err)
		}
		t.Logf("DelayProbe.Run CPU: %+v", row.CPU)
		if row.CPU == nil || row.CPU.ByProcess[bench.CPUBench] <= 0 || row.CPU.WindowS <= 0 {
			t.Errorf("DelayProbe.Run CPU = %+v, want this process's CPU (the product ran in it) and the window > 0", row.CPU)
		}
		if row.Messages < 3 || len(row.Samples) > 3*n {
			t.Errorf("DelayProbe.Run: %d messages, %d samples; want ≥ 3 messages (a final one per client) and ≤ %d samples", row.Messages, len(row.Samples), 3*n)
		}
		for _, d := range row.Samples {
			if d < 0 {
				t.Errorf("DelayProbe.Run: negative delay %v", d)
			}
		}
		if err := bench.Verify(ctx, admin, selector, bench.OpLabel, v, n); err != nil {
			t.Errorf("after DelayProbe.Run: %v", err)
		}
	})
}

// kubectlPath finds the kubectl built with the API server.
func kubectlPath(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(harness.EnvBinDir)
	if dir == "" {
		dir = filepath.Join("..", "..", ".nodebatch", "bin")
	}
	p, err := filepath.Abs(filepath.Join(dir, "kubectl"))
	if err != nil {
		t.Fatalf("kubectl path: %v", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kubectl not found (run make k8s-bin or set %s): %v", harness.EnvBinDir, err)
	}
	return p
}
