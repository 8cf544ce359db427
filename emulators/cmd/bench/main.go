// Command bench is `make bench`: it measures, in one run on one API server,
// how fast kubectl, a plain client-go loop (sequential and with a worker
// pool) and nodebatch end to end change the same bench-only nodes, the
// seed's scenario behind a 50 ms latency proxy, and how late progress
// reaches 1 and 1,000 WebSocket clients, and (row 7) what tracing costs:
// the row 4 batch with telemetry off next to the same batch traced over
// OTLP to an in-process receiver. It prints one Markdown table and
// writes the same figures as JSON (emulators/bench does the measuring).
//
// It uses a running stack when -stack-file (NODEBATCH_STACK_FILE) names one,
// else starts a private stack on free ports and stops it at the end. The
// product runs in this process (emulators/product), so -cpuprofile covers
// the batch function, the push deliverer, the patch function and the relay.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/emulators/bench"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/emulators/seed"
	"github.com/nodebatch/nodebatch/emulators/stack"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/setting"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// benchLabel marks the bench's own nodes; its value is the run's prefix.
const benchLabel = "nodebatch.dev/bench"

type config struct {
	nodes, repeat, smallNodes int
	out, stackFile, binDir    string
	cloudSDK, stateDir        string
	cpuProfile                string
	concurrency, clients      []int
	rows                      map[string]bool
	latency, runTimeout       time.Duration
	delayConcurrency          int
}

func main() {
	var c config
	var conc, clients, rows string
	flag.IntVar(&c.nodes, "nodes", envInt("NODEBATCH_BENCH_NODES", 1000), "bench nodes (env NODEBATCH_BENCH_NODES)")
	flag.IntVar(&c.repeat, "repeat", 3, "runs per row (median and min-max are reported)")
	flag.IntVar(&c.smallNodes, "small-nodes", 100, "nodes of the seed scenario's small case (row 5, c=5)")
	flag.StringVar(&c.out, "out", ".nodebatch/bench.json", "JSON report path; the table also goes next to it as .md")
	flag.StringVar(&c.stackFile, "stack-file", os.Getenv("NODEBATCH_STACK_FILE"), "use the running stack of this state file (env NODEBATCH_STACK_FILE); empty starts a private one")
	flag.StringVar(&c.binDir, "bin-dir", setting.String(os.Getenv, "NODEBATCH_BIN_DIR", ".nodebatch/bin"), "folder with etcd, kube-apiserver, kubectl (env NODEBATCH_BIN_DIR)")
	flag.StringVar(&c.cloudSDK, "cloud-sdk", setting.String(os.Getenv, "NODEBATCH_CLOUD_SDK", "/usr/lib/google-cloud-sdk"), "Cloud SDK root holding the emulators (env NODEBATCH_CLOUD_SDK)")
	flag.StringVar(&c.stateDir, "state-dir", ".nodebatch/bench/stack", "state folder of a private stack")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured part (bench clients + in-process product) here")
	flag.StringVar(&conc, "concurrency", "5,20,50", "concurrencies of rows 3 and 4")
	flag.StringVar(&clients, "clients", "1,1000", "WebSocket client counts of row 6")
	flag.StringVar(&rows, "rows", "1,2,3,4,5,6,7", "rows to run (1-6: issue 8; 7: tracing cost, at the largest -concurrency)")
	flag.DurationVar(&c.latency, "latency", 50*time.Millisecond, "latency the proxy adds to every API call (row 5)")
	flag.DurationVar(&c.runTimeout, "run-timeout", 10*time.Minute, "limit of one run")
	flag.IntVar(&c.delayConcurrency, "delay-concurrency", 50, "batch concurrency of row 6")
	flag.Parse()

	var err error
	if c.concurrency, err = ints(conc); err == nil {
		c.clients, err = ints(clients)
	}
	if err != nil || c.nodes < 1 || c.repeat < 1 {
		fmt.Fprintln(os.Stderr, "bench: bad flags:", err, "(-nodes and -repeat must be ≥ 1)")
		os.Exit(2)
	}
	c.rows = map[string]bool{}
	for r := range strings.SplitSeq(rows, ",") {
		c.rows[strings.TrimSpace(r)] = true
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, logger); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, log *slog.Logger) error {
	info, stopStack, err := stackInfo(ctx, c, log)
	if err != nil {
		return err
	}
	defer stopStack()
	// The Google client libraries (product, bench) find the emulators here.
	os.Setenv("FIRESTORE_EMULATOR_HOST", info.FirestoreHost)
	os.Setenv("PUBSUB_EMULATOR_HOST", info.PubSubHost)

	adminCfg := bench.Unthrottled(info.AdminConfig())
	admin, err := kubernetes.NewForConfig(adminCfg)
	if err != nil {
		return fmt.Errorf("admin clientset: %w", err)
	}
	prefix := "bench-" + randomHex(3)
	fleet, err := seedGroup(ctx, admin, prefix, c.nodes, log)
	defer fleet.delete(admin, log)
	if err != nil {
		return err
	}
	var small group
	if c.rows["5"] {
		small, err = seedGroup(ctx, admin, prefix+"s", c.smallNodes, log)
		defer small.delete(admin, log)
		if err != nil {
			return err
		}
	}

	prodLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	direct, err := startProduct(ctx, info.AdminConfig(), info.PatcherConfig(), prodLog, nil)
	if err != nil {
		return err
	}
	defer direct.Close()
	token, err := direct.Token("bench", false)
	if err != nil {
		return fmt.Errorf("mint bench token: %w", err)
	}

	b := &runner{c: c, log: log, admin: admin, meter: bench.CPUMeter{
		Proc:   bench.Proc{Root: "/proc"},
		Groups: bench.StackGroups(info.PIDs),
		CPUs:   runtime.NumCPU(),
	}, report: &bench.Report{
		Machine:  bench.ReadMachine(),
		Started:  time.Now(),
		Command:  "make bench NODEBATCH_BENCH_NODES=" + strconv.Itoa(c.nodes) + " (go run ./emulators/cmd/bench " + strings.Join(os.Args[1:], " ") + ")",
		Nodes:    c.nodes,
		Repeat:   c.repeat,
		Selector: fleet.selector,
	}, prefix: prefix}
	b.plan(info, fleet, direct, token)

	if c.rows["5"] {
		proxy, err := kubeproxy.New(info.APIServerURL, kubeproxy.Options{Latency: c.latency})
		if err != nil {
			return fmt.Errorf("start latency proxy: %w", err)
		}
		defer proxy.Close()
		slowAdmin, err := kubernetes.NewForConfig(bench.Unthrottled(proxy.RestConfig(info.AdminConfig())))
		if err != nil {
			return fmt.Errorf("proxied clientset: %w", err)
		}
		b.planProxy(small, fleet, proxy, info, prodLog, slowAdmin)
	}

	if c.rows["7"] {
		stopSink, err := b.planTracing(fleet, info, prodLog)
		defer stopSink()
		if err != nil {
			return err
		}
	}

	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("create CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	b.warmUp(ctx)
	b.measure(ctx)
	b.leave()
	if c.rows["6"] {
		b.delays(ctx, direct, token, fleet)
	}
	return b.write()
}

// stackInfo attaches to the stack of -stack-file or starts a private one.
func stackInfo(ctx context.Context, c config, log *slog.Logger) (stack.Info, func(), error) {
	if c.stackFile != "" {
		info, err := stack.ReadInfo(c.stackFile)
		return info, func() {}, err
	}
	ports, err := stack.FreePorts()
	if err != nil {
		return stack.Info{}, nil, err
	}
	log.Info("starting a private stack", "state_dir", c.stateDir)
	st, err := stack.Start(ctx, stack.Config{
		BinDir:      c.binDir,
		StateDir:    c.stateDir,
		CloudSDKDir: c.cloudSDK,
		Ports:       ports,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return stack.Info{}, nil, err
	}
	return st.Info(), st.Stop, nil
}

// group is a set of bench nodes that one selector matches exactly.
type group struct {
	selector string
	names    []string
}

func seedGroup(ctx context.Context, admin kubernetes.Interface, prefix string, n int, log *slog.Logger) (group, error) {
	g := group{selector: benchLabel + "=" + prefix}
	begin := time.Now()
	names, err := seed.Nodes(ctx, admin, seed.Options{Count: n, Prefix: prefix, ExtraLabels: map[string]string{benchLabel: prefix}, Workers: 50})
	if err != nil {
		return g, err
	}
	g.names = names
	log.Info("seeded bench nodes", "selector", g.selector, "count", n, "elapsed", time.Since(begin).Round(time.Millisecond).String())
	return g, nil
}

// delete removes the group's nodes (they exist only for the bench).
func (g group) delete(admin kubernetes.Interface, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := admin.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: g.selector})
	if err != nil {
		log.Error("delete bench nodes", "selector", g.selector, "error", err)
	}
}

// startProduct starts a product on the stack; tel is its telemetry (nil:
// none, rows 4-6).
func startProduct(ctx context.Context, apiKube, patchKube *rest.Config, log *slog.Logger, tel *telemetry.Telemetry) (*product.Product, error) {
	p, err := product.Start(ctx, product.Options{
		Project:       "nbbench-" + randomHex(5),
		APIKube:       apiKube,
		PatchKube:     patchKube,
		MaxInFlight:   100, // above every measured c: the per-batch cap is what is measured
		RatePerMinute: -1,  // the bench submits dozens of batches as one user
		InlineMax:     -1,  // every batch goes through Pub/Sub, as large ones do
		Logger:        log,
		Telemetry:     tel,
	})
	if err != nil {
		return nil, fmt.Errorf("start product: %w", err)
	}
	return p, nil
}

// runner plans and runs the rows.
type runner struct {
	c      config
	log    *slog.Logger
	admin  kubernetes.Interface
	report *bench.Report
	meter  bench.CPUMeter
	prefix string
	values int
	jobs   []job
	failed bool
	// scope is the scope that is up, stopScope stops it.
	scope     *scope
	stopScope func()
}

// job is one row's way to run once and to check what it did.
type job struct {
	row int // index in report.Rows
	// run is the measured part; explain, when set, adds to its sample
	// what can be read only afterwards, outside the measured window.
	run     func(ctx context.Context, value string) (sample, error)
	explain func(ctx context.Context, smp *sample) error
	verify  func(ctx context.Context, value string) error
	warm    bool // run once unmeasured before the first repeat (scoped: at each start of its scope)
	// scope, when set, is what the job needs up while it runs; nil: the
	// products started once for the whole bench.
	scope *scope
}

// scope is something a few jobs need up only while they run: the products
// of rows 5 and 7. Up for the whole bench, their deliverers' idle pulls on the
// Pub/Sub emulator slowed every other row (lanes waited up to 22 s for
// their first event); up only around their own runs, they measure the
// same thing and leave the other rows alone. A scope starts when a job of
// it runs after a job outside it, and stops when a job outside it runs
// next (jobs of one scope are planned next to each other).
type scope struct {
	name  string
	start func(ctx context.Context) (stop func(), err error)
}

// enter makes s the scope that is up: it stops the current one, starts s
// and runs s's warm jobs once, unmeasured (a fresh product pays its
// connection set-up on its first batch). A nil s only stops the current
// scope.
func (b *runner) enter(ctx context.Context, s *scope) error {
	if s == b.scope {
		return nil
	}
	b.leave()
	if s == nil {
		return nil
	}
	stop, err := s.start(ctx)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	b.scope, b.stopScope = s, stop
	for _, j := range b.jobs {
		if j.scope == s && j.warm {
			if _, err := b.once(ctx, j); err != nil {
				row := b.report.Rows[j.row]
				b.log.Warn("warm-up run failed", "row", row.ID, "tool", row.Tool, "op", row.Op, "c", row.Concurrency, "error", err)
			}
		}
	}
	return nil
}

// leave stops the scope that is up, if any.
func (b *runner) leave() {
	if b.stopScope != nil {
		b.stopScope()
	}
	b.scope, b.stopScope = nil, nil
}

func (b *runner) add(row bench.Row, j job) {
	b.report.Rows = append(b.report.Rows, row)
	j.row = len(b.report.Rows) - 1
	b.jobs = append(b.jobs, j)
}

// value returns a label/taint value no earlier run set, so every run
// changes every node.
func (b *runner) value() string {
	b.values++
	return fmt.Sprintf("%s-%03d", b.prefix, b.values)
}

func (b *runner) verifier(client kubernetes.Interface, g group, op bench.Op) func(context.Context, string) error {
	return func(ctx context.Context, value string) error {
		return bench.Verify(ctx, client, g.selector, op, value, len(g.names))
	}
}

func (b *runner) plan(info stack.Info, fleet group, direct *product.Product, token string) {
	n := len(fleet.names)
	ops := []bench.Op{bench.OpLabel, bench.OpTaint}
	if b.c.rows["1"] {
		k := bench.Kubectl{Path: filepath.Join(b.c.binDir, "kubectl"), Kubeconfig: info.AdminKubeconfig, Selector: fleet.selector, Nodes: n}
		for _, op := range ops {
			b.add(bench.Row{ID: "1", Name: "kubectl " + string(op) + " nodes -l", Tool: bench.ToolKubectl, Op: op, Concurrency: 1, Nodes: n},
				job{run: kubectlRun(k, op), verify: b.verifier(b.admin, fleet, op)})
		}
	}
	cg := bench.ClientGo{Client: b.admin, Names: fleet.names}
	var cs []int
	if b.c.rows["2"] {
		cs = append(cs, 1)
	}
	if b.c.rows["3"] {
		cs = append(cs, b.c.concurrency...)
	}
	for _, c := range cs {
		id, name := "3", "client-go worker pool"
		if c == 1 {
			id, name = "2", "client-go loop, sequential"
		}
		for _, op := range ops {
			b.add(bench.Row{ID: id, Name: name, Tool: bench.ToolClientGo, Op: op, Concurrency: c, Nodes: n},
				job{run: noTiming(func(ctx context.Context, v string) (time.Duration, error) { return cg.Run(ctx, op, v, c) }), verify: b.verifier(b.admin, fleet, op), warm: c == 1})
		}
	}
	if b.c.rows["4"] {
		nb := bench.Nodebatch{APIURL: direct.APIURL, RelayURL: direct.RelayURL, Token: token, Selector: fleet.selector, Nodes: n}
		for _, c := range b.c.concurrency {
			for _, op := range ops {
				b.add(bench.Row{ID: "4", Name: "nodebatch, submit → complete on WebSocket", Tool: bench.ToolNodebatch, Op: op, Concurrency: c, Nodes: n},
					job{run: nodebatchRun(nb, op, c), explain: breakdown(direct), verify: b.verifier(b.admin, fleet, op), warm: c == b.c.concurrency[len(b.c.concurrency)-1]})
			}
		}
	}
}

// planProxy adds row 5: the seed's scenario behind the latency proxy, for
// plain client-go and nodebatch, on the small group at c=5 and on the
// whole fleet at c=50.
func (b *runner) planProxy(small, fleet group, proxy *kubeproxy.Proxy, info stack.Info, log *slog.Logger, slowAdmin kubernetes.Interface) {
	// The product behind the proxy is a scope (see scope): up only while
	// row 5 runs.
	var slow *product.Product
	var token string
	sc := &scope{name: "row 5, product via latency proxy", start: func(ctx context.Context) (func(), error) {
		var err error
		if slow, err = startProduct(ctx, proxy.RestConfig(info.AdminConfig()), proxy.RestConfig(info.PatcherConfig()), log, nil); err != nil {
			return nil, err
		}
		if token, err = slow.Token("bench", false); err != nil {
			slow.Close()
			return nil, fmt.Errorf("mint bench token: %w", err)
		}
		return slow.Close, nil
	}}
	for _, tc := range []struct {
		g group
		c int
	}{{small, 5}, {fleet, 50}} {
		n := len(tc.g.names)
		ideal := time.Duration(n) * b.c.latency / time.Duration(tc.c)
		cg := bench.ClientGo{Client: slowAdmin, Names: tc.g.names}
		b.add(bench.Row{ID: "5", Name: "client-go pool via latency proxy", Tool: bench.ToolClientGo, Op: bench.OpLabel, Concurrency: tc.c, Nodes: n, Latency: b.c.latency, Ideal: ideal},
			job{run: noTiming(func(ctx context.Context, v string) (time.Duration, error) { return cg.Run(ctx, bench.OpLabel, v, tc.c) }), verify: b.verifier(b.admin, tc.g, bench.OpLabel), scope: sc})
		run := func(ctx context.Context, v string) (sample, error) {
			nb := bench.Nodebatch{APIURL: slow.APIURL, RelayURL: slow.RelayURL, Token: token, Selector: tc.g.selector, Nodes: n}
			return nodebatchRun(nb, bench.OpLabel, tc.c)(ctx, v)
		}
		explain := func(ctx context.Context, smp *sample) error { return breakdown(slow)(ctx, smp) }
		b.add(bench.Row{ID: "5", Name: "nodebatch via latency proxy", Tool: bench.ToolNodebatch, Op: bench.OpLabel, Concurrency: tc.c, Nodes: n, Latency: b.c.latency, Ideal: ideal},
			job{run: run, explain: explain, verify: b.verifier(b.admin, tc.g, bench.OpLabel), warm: tc.c == 50, scope: sc})
	}
}

// planTracing adds row 7: the row 4 batch (largest -concurrency, both ops)
// on a product whose telemetry is off (telemetry.Setup with no exporter:
// the no-op tracer, metrics on /metrics, as deployed without OTEL_*) and on
// one that traces every request (OTLP/gRPC to an in-process receiver,
// sampler always_on, flushed per request). Both run in this process on the
// same stack, round-robin with the other rows, so their difference is the
// cost of tracing. Each of the two products is a scope: up only while its
// runs run. The returned function stops the span receiver.
func (b *runner) planTracing(fleet group, info stack.Info, log *slog.Logger) (func(), error) {
	sink, err := bench.StartSpanSink()
	if err != nil {
		return func() {}, err
	}
	envs := map[string]map[string]string{
		bench.TelemetryOff: {},
		bench.TelemetryTraced: {
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.Endpoint(),
			"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
			"OTEL_TRACES_SAMPLER":                "always_on",
			"OTEL_METRICS_EXPORTER":              "prometheus",
		},
	}
	c := b.c.concurrency[len(b.c.concurrency)-1]
	for _, mode := range []string{bench.TelemetryOff, bench.TelemetryTraced} {
		env := envs[mode]
		var p *product.Product // set while the scope is up
		var nb bench.Nodebatch
		sc := &scope{name: "row 7, telemetry " + mode, start: func(ctx context.Context) (func(), error) {
			tel, err := telemetry.Setup(ctx, func(k string) string { return env[k] }, telemetry.WithService("nodebatch-bench"))
			if err != nil {
				return nil, fmt.Errorf("telemetry %s: %w", mode, err)
			}
			shutdown := func() { _ = tel.Shutdown(context.Background()) }
			if tel.Tracing() != (mode == bench.TelemetryTraced) {
				shutdown()
				return nil, fmt.Errorf("telemetry %s: tracing is %v", mode, tel.Tracing())
			}
			if p, err = startProduct(ctx, info.AdminConfig(), info.PatcherConfig(), log, tel); err != nil {
				shutdown()
				return nil, err
			}
			token, err := p.Token("bench", false)
			if err != nil {
				p.Close()
				shutdown()
				return nil, fmt.Errorf("mint bench token: %w", err)
			}
			nb = bench.Nodebatch{APIURL: p.APIURL, RelayURL: p.RelayURL, Token: token, Selector: fleet.selector, Nodes: len(fleet.names)}
			return func() { p.Close(); shutdown() }, nil
		}}
		name := "nodebatch, telemetry off"
		if mode == bench.TelemetryTraced {
			name = "nodebatch, tracing on (OTLP, always_on)"
		}
		for _, op := range []bench.Op{bench.OpLabel, bench.OpTaint} {
			run := func(ctx context.Context, v string) (sample, error) { return nodebatchRun(nb, op, c)(ctx, v) }
			if mode == bench.TelemetryTraced {
				run = countSpans(sink, run)
			}
			explain := func(ctx context.Context, smp *sample) error { return breakdown(p)(ctx, smp) }
			b.add(bench.Row{ID: "7", Name: name, Tool: bench.ToolNodebatch, Op: op, Concurrency: c, Nodes: len(fleet.names), Telemetry: mode},
				job{run: run, explain: explain, verify: b.verifier(b.admin, fleet, op), warm: op == bench.OpLabel, scope: sc})
		}
	}
	return sink.Close, nil
}

// countSpans adds to run's sample the spans sink received during it.
func countSpans(sink *bench.SpanSink, run func(context.Context, string) (sample, error)) func(context.Context, string) (sample, error) {
	return func(ctx context.Context, v string) (sample, error) {
		before := sink.Spans()
		smp, err := run(ctx, v)
		n := sink.Spans() - before
		smp.spans = &n
		return smp, err
	}
}

// sample is one measured run.
type sample struct {
	wall      time.Duration
	childCPU  map[string]time.Duration // CPU of child processes run and waited for (row 1: kubectl)
	trace     *bench.Trace             // nodebatch's run, for explain
	timing    *model.Timing            // nodebatch's own figures
	breakdown *bench.Breakdown         // nodebatch's stages, read after the run
	cpu       *bench.CPURun
	spans     *int64 // spans the OTLP receiver got (row 7, traced)
}

func noTiming(f func(context.Context, string) (time.Duration, error)) func(context.Context, string) (sample, error) {
	return func(ctx context.Context, v string) (sample, error) {
		d, err := f(ctx, v)
		return sample{wall: d}, err
	}
}

func kubectlRun(k bench.Kubectl, op bench.Op) func(context.Context, string) (sample, error) {
	return func(ctx context.Context, v string) (sample, error) {
		r, err := k.Run(ctx, op, v)
		return sample{wall: r.Wall, childCPU: map[string]time.Duration{bench.CPUKubectl: r.CPU}}, err
	}
}

// nodebatchRun runs one batch.
func nodebatchRun(nb bench.Nodebatch, op bench.Op, c int) func(context.Context, string) (sample, error) {
	return func(ctx context.Context, v string) (sample, error) {
		tr, err := nb.Run(ctx, op, v, c)
		if err != nil {
			return sample{}, err
		}
		return sample{wall: tr.Wall(), trace: &tr, timing: tr.Final.Timing}, nil
	}
}

// breakdown reads, after the run, its node results to split the time into
// stages.
func breakdown(p *product.Product) func(context.Context, *sample) error {
	return func(ctx context.Context, smp *sample) error {
		bd, err := bench.ReadBreakdown(ctx, p.Firestore, *smp.trace)
		if err != nil {
			return err
		}
		smp.breakdown = &bd
		return nil
	}
}

// warmUp runs the jobs marked warm once, unmeasured: the first batch pays
// the emulators' JIT warm-up and connection set-up, which no later run does.
func (b *runner) warmUp(ctx context.Context) {
	for _, j := range b.jobs {
		if !j.warm || j.scope != nil {
			continue
		}
		row := b.report.Rows[j.row]
		if _, err := b.once(ctx, j); err != nil {
			b.log.Warn("warm-up run failed", "row", row.ID, "tool", row.Tool, "op", row.Op, "c", row.Concurrency, "error", err)
		}
	}
}

// measure runs every job repeat times, round-robin, so slow drift of the
// machine spreads over all rows instead of favouring the first.
func (b *runner) measure(ctx context.Context) {
	for rep := range b.c.repeat {
		for _, j := range b.jobs {
			row := &b.report.Rows[j.row]
			if err := b.enter(ctx, j.scope); err != nil {
				b.failed = true
				row.Err = err.Error()
				b.log.Error("run failed", "row", row.ID, "tool", row.Tool, "op", row.Op, "c", row.Concurrency, "repeat", rep+1, "error", err)
				continue
			}
			smp, err := b.once(ctx, j)
			if err != nil {
				b.failed = true
				row.Err = err.Error()
				b.log.Error("run failed", "row", row.ID, "tool", row.Tool, "op", row.Op, "c", row.Concurrency, "repeat", rep+1, "error", err)
				continue
			}
			row.Walls = append(row.Walls, smp.wall)
			if smp.timing != nil {
				row.Timings = append(row.Timings, *smp.timing)
			}
			if smp.breakdown != nil {
				row.Breakdowns = append(row.Breakdowns, *smp.breakdown)
			}
			if smp.cpu != nil {
				row.CPU = append(row.CPU, *smp.cpu)
			}
			if smp.spans != nil {
				row.Spans = append(row.Spans, *smp.spans)
			}
			b.log.Info("run", "row", row.ID, "tool", row.Tool, "op", row.Op, "c", row.Concurrency, "nodes", row.Nodes,
				"latency", row.Latency, "repeat", rep+1, "wall", smp.wall.Round(time.Millisecond).String())
		}
	}
}

func (b *runner) once(ctx context.Context, j job) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, b.c.runTimeout)
	defer cancel()
	v := b.value()
	before, cpuErr := b.meter.Read()
	smp, err := j.run(ctx, v)
	if err != nil {
		return sample{}, err
	}
	after, err := b.meter.Read()
	if cpuErr = errors.Join(cpuErr, err); cpuErr != nil {
		b.log.Warn("CPU not sampled", "error", cpuErr)
	} else {
		cpu := b.meter.Run(before, after, smp.childCPU)
		smp.cpu = &cpu
	}
	if j.explain != nil {
		if err := j.explain(ctx, &smp); err != nil {
			return sample{}, err
		}
	}
	if err := j.verify(ctx, v); err != nil {
		return sample{}, err
	}
	return smp, nil
}

// delays runs row 6 once per client count.
func (b *runner) delays(ctx context.Context, direct *product.Product, token string, fleet group) {
	probe := bench.DelayProbe{
		Nodebatch: bench.Nodebatch{APIURL: direct.APIURL, RelayURL: direct.RelayURL, Token: token, Selector: fleet.selector, Nodes: len(fleet.names)},
		Firestore: direct.Firestore,
		Meter:     &b.meter,
	}
	for _, n := range b.c.clients {
		rctx, cancel := context.WithTimeout(ctx, b.c.runTimeout)
		v := b.value()
		row, err := probe.Run(rctx, n, b.c.delayConcurrency, v)
		if err == nil {
			err = bench.Verify(rctx, b.admin, fleet.selector, bench.OpLabel, v, len(fleet.names))
		}
		cancel()
		if err != nil {
			b.failed = true
			row.Err = err.Error()
			b.log.Error("progress delay failed", "clients", n, "error", err)
		} else {
			b.log.Info("progress delay", "clients", n, "samples", len(row.Samples), "p99", bench.Percentile(row.Samples, 99).String())
		}
		b.report.Delays = append(b.report.Delays, row)
	}
}

// write finishes the report, prints the table and writes JSON and Markdown.
func (b *runner) write() error {
	r := b.report
	r.Notes = append(r.Notes,
		fmt.Sprintf("Every row targets only the bench's own nodes: kubectl runs with `-l %s` instead of `--all` (other nodes may share the API server), nodebatch with the same selector.", r.Selector),
		"Every run sets a value no earlier run set (label `bench=<value>`, or taint `bench=<value>:NoSchedule`), and is verified through the API server afterwards; a run that did not change every node fails its row.",
		"client-go: labels as one JSON merge patch per node; taints as get + update with resourceVersion (a taint list cannot be merge-patched safely). Client-side rate limiting off. nodebatch sends one JSON merge patch per node (labels, or labels and the whole new taint list) computed from the node as the batch function listed it, with that resourceVersion as precondition, so before/after values are exact without a read; only a 409 (node changed since the listing) costs a GET and a second write.",
		"nodebatch time runs from sending POST /v1/batches to receiving `complete` on a WebSocket opened beforehand; the whole product (batch function, push deliverer, patch function, relay) runs in the bench process on the local Firestore and Pub/Sub emulators.",
		"× client-go and × kubectl are speed ratios (other median ÷ this median; > 1 is faster). wall ÷ ideal: ideal = nodes × proxy latency ÷ c, one API call per node.",
		"Row 5's ideal counts one API call per node and no server time; a floor sits above it: the API server's own throughput on this machine (row 3 at the same c, no proxy); the proxy's 50 ms is added to the server's own time per call. Above that, nodebatch pays per node a Firestore read before the patch and a commit after it, on the lane's critical path, plus the push hand-off to the next node of the lane.",
		"Where nodebatch's time goes: from the node result documents (started_at/finished_at, same clock). A negative \"202 → lane's 1st patch\" means the lane started before the batch function finished publishing and answered. \"last patch → final commit\" ends at the commit time of the batch document's final write (emulator clock, same machine).",
		"One unmeasured warm-up run precedes the measured ones for nodebatch and client-go; repeats run round-robin over the rows.",
		"Where the machine's CPU goes: in every run, just before and just after the measured part (verification and breakdown reads left out), the bench reads user + system CPU time from /proc: of kube-apiserver, etcd, the Firestore and the Pub/Sub emulators, each summed over its process group (the emulators' JVMs run under launchers; exited, waited-for members count too); of the bench process itself (bench clients and the whole in-process product); and the machine's busy time from /proc/stat (all CPUs, idle and iowait left out). kubectl (row 1) counts from its own rusage. \"other\" = machine total − the named ones: the rest of the machine (other builds and tests on a shared machine, the kernel's own work). capacity = the run's wall time (between the two samples) × CPUs; CPU busy = total ÷ capacity. Each figure is its own median over the repeats (so the columns need not add up exactly); every run is in the JSON (cpu_runs). Row 6: one run per client count, from submit to every client having seen the final message.",
	)
	if b.c.rows["7"] {
		r.Notes = append(r.Notes, "Tracing cost (row 7): two more products in the bench process on the same stack, run round-robin with the other rows. \"telemetry off\" is shared/telemetry.Setup with no OTEL_* exporter (the no-op tracer; the metrics still counted and served on /metrics): as deployed with tracing off. \"tracing on\" exports every span over OTLP/gRPC to an in-process receiver that counts and drops them (so its CPU is in the bench process too), sampler always_on (every node's patch span and its Kubernetes and Firestore children recorded), and each request's spans flushed before its response, as on Cloud Run. Rows 4-6 run with no telemetry at all (nil): row 4 at the same c against \"telemetry off\" shows what off costs.")
	}
	if len(r.Delays) > 0 {
		r.Notes = append(r.Notes, "Progress delay: for each client, the k-th node to finish (node result finished_at, same clock) against the first message whose count reaches k; nodes that finished before the client's subscription are left out. One batch per client count, label change at c="+strconv.Itoa(b.c.delayConcurrency)+".")
	}
	r.Finish()
	if err := r.WriteTable(os.Stdout); err != nil {
		return err
	}
	if err := r.WriteJSON(b.c.out); err != nil {
		return err
	}
	md, err := os.Create(strings.TrimSuffix(b.c.out, filepath.Ext(b.c.out)) + ".md")
	if err != nil {
		return fmt.Errorf("write bench table: %w", err)
	}
	defer md.Close()
	if err := r.WriteTable(md); err != nil {
		return err
	}
	if b.failed {
		return errors.New("some runs failed; see the table")
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ints(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// envInt is the flag default of the integer setting key (def when
// unset); a bad value stops the command.
func envInt(key string, def int) int {
	n, err := setting.Int(os.Getenv, key, def, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	return n
}
