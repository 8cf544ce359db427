// Command impactbench measures the impact preview at fleet size: it seeds
// -nodes nodes with -pods pods each (emulators/seed), then times, on the
// real API server, POST /v1/batches:preview of a NoExecute taint on all of
// them through the product (emulators/product: the batch function with its
// listing, in process) and impact.Compute alone. It prints one Markdown
// table. docs/design.md records its figures.
//
// It uses a running stack when -stack-file names one, else starts a private
// stack on free ports; either way it deletes what it seeded.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/bench"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/emulators/seed"
	"github.com/nodebatch/nodebatch/emulators/stack"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/impact"
)

const benchLabel = "nodebatch.dev/bench"

type config struct {
	nodes, pods, repeat        int
	stackFile, binDir, sdk, sd string
}

func main() {
	var c config
	flag.IntVar(&c.nodes, "nodes", 1000, "nodes to seed")
	flag.IntVar(&c.pods, "pods", 20, "pods per node")
	flag.IntVar(&c.repeat, "repeat", 5, "timed runs of each measurement")
	flag.StringVar(&c.stackFile, "stack-file", os.Getenv("NODEBATCH_STACK_FILE"), "use the running stack of this state file (env NODEBATCH_STACK_FILE); empty starts a private one")
	flag.StringVar(&c.binDir, "bin-dir", ".nodebatch/bin", "folder with etcd, kube-apiserver")
	flag.StringVar(&c.sdk, "cloud-sdk", "/usr/lib/google-cloud-sdk", "Cloud SDK root holding the emulators")
	flag.StringVar(&c.sd, "state-dir", ".nodebatch/impactbench/stack", "state folder of a private stack")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		fmt.Fprintln(os.Stderr, "impactbench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, log *slog.Logger) error {
	info, stopStack, err := stackInfo(ctx, c)
	if err != nil {
		return err
	}
	defer stopStack()
	os.Setenv("FIRESTORE_EMULATOR_HOST", info.FirestoreHost)
	os.Setenv("PUBSUB_EMULATOR_HOST", info.PubSubHost)
	admin, err := kubernetes.NewForConfig(bench.Unthrottled(info.AdminConfig()))
	if err != nil {
		return fmt.Errorf("admin clientset: %w", err)
	}
	prefix := "impact-" + randomHex(3)
	sel := benchLabel + "=" + prefix
	defer cleanup(admin, prefix, sel, log)
	begin := time.Now()
	names, err := seed.Nodes(ctx, admin, seed.Options{Count: c.nodes, Prefix: prefix, ExtraLabels: map[string]string{benchLabel: prefix}, Workers: 50})
	if err != nil {
		return err
	}
	if err := seed.Workloads(ctx, admin, seed.WorkloadOptions{Namespace: prefix, Nodes: names, PodsPerNode: c.pods, Workers: 50}); err != nil {
		return err
	}
	log.Info("seeded", "nodes", c.nodes, "pods", c.nodes*c.pods, "elapsed", time.Since(begin).Round(time.Millisecond).String())

	p, err := product.Start(ctx, product.Options{
		Project: "nbimpact-" + randomHex(5), APIKube: info.AdminConfig(), PatchKube: info.PatcherConfig(),
		RatePerMinute: -1, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fmt.Errorf("start product: %w", err)
	}
	defer p.Close()
	token, err := p.Token("bench", false)
	if err != nil {
		return err
	}
	taint := seed.DrainKey + "=" + seed.DrainValue + ":NoExecute"
	var last batch.Preview
	previewTimes, err := timed(c.repeat, func() error {
		last, err = preview(ctx, p.APIURL, token, sel, taint)
		return err
	})
	if err != nil {
		return err
	}
	set := change.Set{Taints: []change.Taint{{Key: seed.DrainKey, Value: seed.DrainValue, Effect: corev1.TaintEffectNoExecute}}}
	nodes := make([]impact.Node, len(names))
	for i, n := range names {
		nodes[i] = impact.Node{Name: n}
	}
	var im *impact.Impact
	computeTimes, err := timed(c.repeat, func() error {
		im, err = impact.Compute(ctx, admin, set, nodes, impact.Options{})
		return err
	})
	if err != nil {
		return err
	}
	pcfg := bench.Unthrottled(info.AdminConfig())
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	pcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	proto, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return fmt.Errorf("protobuf clientset: %w", err)
	}
	protoTimes, err := timed(c.repeat, func() error {
		_, err := impact.Compute(ctx, proto, set, nodes, impact.Options{})
		return err
	})
	if err != nil {
		return err
	}
	if last.Impact == nil || last.Impact.Evictions != im.Evictions {
		return fmt.Errorf("preview impact %+v disagrees with Compute's %d evictions (%s)", last.Impact, im.Evictions, last.ImpactError)
	}
	fmt.Printf("\n%d nodes × %d pods (%d pods), taint %s: %s\n\n", c.nodes, c.pods, c.nodes*c.pods, taint, im.Summary)
	fmt.Println("| measurement | median | min | max |")
	fmt.Println("|---|---|---|---|")
	row("POST /v1/batches:preview (product, in process)", previewTimes)
	row("impact.Compute alone (admin client, JSON)", computeTimes)
	row("impact.Compute alone (admin client, protobuf)", protoTimes)
	return nil
}

func row(name string, ds []time.Duration) {
	slices.Sort(ds)
	fmt.Printf("| %s | %v | %v | %v |\n", name, ds[len(ds)/2].Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}

// timed runs f once to warm up, then n times, and returns the durations.
func timed(n int, f func() error) ([]time.Duration, error) {
	if err := f(); err != nil {
		return nil, err
	}
	var out []time.Duration
	for range n {
		begin := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(begin))
	}
	return out, nil
}

func preview(ctx context.Context, api, token, sel, taint string) (batch.Preview, error) {
	var pv batch.Preview
	body, _ := json.Marshal(map[string]any{"taints": []string{taint}, "selector": sel})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/v1/batches:preview?page_size=10", bytes.NewReader(body))
	if err != nil {
		return pv, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pv, fmt.Errorf("preview: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return pv, fmt.Errorf("preview: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&pv); err != nil {
		return pv, fmt.Errorf("decode preview: %w", err)
	}
	return pv, nil
}

func cleanup(admin kubernetes.Interface, ns, sel string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := seed.DeleteWorkloads(ctx, admin, ns); err != nil {
		log.Error("delete workloads", "error", err)
	}
	if err := admin.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
		log.Error("delete nodes", "error", err)
	}
}

func stackInfo(ctx context.Context, c config) (stack.Info, func(), error) {
	if c.stackFile != "" {
		info, err := stack.ReadInfo(c.stackFile)
		return info, func() {}, err
	}
	ports, err := stack.FreePorts()
	if err != nil {
		return stack.Info{}, nil, err
	}
	st, err := stack.Start(ctx, stack.Config{
		BinDir: c.binDir, StateDir: c.sd, CloudSDKDir: c.sdk, Ports: ports,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return stack.Info{}, nil, err
	}
	return st.Info(), st.Stop, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
