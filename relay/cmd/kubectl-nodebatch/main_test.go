package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/product"
	"github.com/nodebatch/nodebatch/shared/cli"
)

func TestMain(m *testing.M) {
	code := harness.Run(m)
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built is the binary, built once for all tests of the package.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// binary builds kubectl-nodebatch (once) as `make cli` does.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "kubectl-nodebatch-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "kubectl-nodebatch")
		out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// fixture is the product on the harness stack, its patch function's writes
// through a proxy whose gate a test may close, and the built binary.
type fixture struct {
	t     *testing.T
	p     *product.Product
	gate  *kubeproxy.Gate
	proxy *kubeproxy.Proxy
	kube  kubernetes.Interface
	bin   string
	alice string
	bob   string
}

func start(t *testing.T) *fixture {
	t.Helper()
	env := harness.Start(t)
	bin := binary(t)
	gate := kubeproxy.NewGate()
	t.Cleanup(gate.Open)
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	p, err := product.Start(t.Context(), product.Options{
		Project:   env.ProjectID(t),
		APIKube:   env.PatcherConfig,
		PatchKube: proxy.RestConfig(env.PatcherConfig),
	})
	if err != nil {
		t.Fatalf("product.Start: %v", err)
	}
	t.Cleanup(p.Close)
	f := &fixture{t: t, p: p, gate: gate, proxy: proxy, kube: env.Kube(t), bin: bin}
	if f.alice, err = p.Token("alice", false); err != nil {
		t.Fatal(err)
	}
	if f.bob, err = p.Token("bob", false); err != nil {
		t.Fatal(err)
	}
	return f
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the binary as a user would, stdout and stderr piped, with the
// token in the environment.
func (f *fixture) run(token string, args ...string) result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = append(os.Environ(), "NODEBATCH_URL="+f.p.RelayURL, "NODEBATCH_TOKEN="+token)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		f.t.Fatalf("run %v: %v", args, err)
	}
	f.t.Logf("$ kubectl-nodebatch %s\n%s%s(exit %d)", strings.Join(args, " "), r.stdout, r.stderr, r.code)
	return r
}

func (f *fixture) get(token, id string) []byte {
	f.t.Helper()
	return f.getPath(token, "/v1/batches/"+id)
}

// getPath GETs path from the API as token and returns the 200 body.
func (f *fixture) getPath(token, path string) []byte {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(f.t.Context(), http.MethodGet, f.p.APIURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return b
}

var (
	progressLine = regexp.MustCompile(`^batch/[A-Za-z0-9_-]+ (pending|running|-): \d+/\d+ nodes done, \d+ failed`)
	summaryLine  = regexp.MustCompile(`^batch/([A-Za-z0-9_-]+) (\w+): (\d+)/(\d+) nodes \(`)
)

// TestCLI runs the built kubectl-nodebatch against the whole product.
func TestCLI(t *testing.T) {
	f := start(t)
	env := harness.Start(t)
	kube := env.Kube(t)
	prefix, names := env.SeedNodes(t, 12)
	selector := harness.TestLabel + "=" + prefix

	var id string
	t.Run("label piped: plain lines, exit 0", func(t *testing.T) {
		r := f.run(f.alice, "label", "nodes", "-l", selector, "cli="+prefix, "--concurrency", "3", "--progress-interval", "0", "-o", "name")
		if r.code != cli.ExitOK {
			t.Fatalf("exit %d, want 0; stderr:\n%s", r.code, r.stderr)
		}
		id = strings.TrimPrefix(strings.TrimSpace(r.stdout), "batch/")
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		for _, l := range lines[:len(lines)-1] {
			if !progressLine.MatchString(l) {
				t.Errorf("stderr line %q is not a progress line", l)
			}
		}
		m := summaryLine.FindStringSubmatch(lines[len(lines)-1])
		if diff := cmp.Diff([]string{id, "succeeded", "12", "12"}, tail(m)); diff != "" {
			t.Errorf("summary line %q (-want +got):\n%s", lines[len(lines)-1], diff)
		}
		for _, n := range names {
			node, err := kube.CoreV1().Nodes().Get(t.Context(), n, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if node.Labels["cli"] != prefix {
				t.Errorf("node %s label cli = %q, want %q", n, node.Labels["cli"], prefix)
			}
		}
	})
	if id == "" {
		t.Fatal("no batch id")
	}

	t.Run("get -o json equals GET /v1/batches/{id}", func(t *testing.T) {
		r := f.run(f.alice, "get", id, "-o", "json")
		if r.code != cli.ExitOK {
			t.Fatalf("exit %d, want 0", r.code)
		}
		if diff := cmp.Diff(string(f.get(f.alice, id)), r.stdout); diff != "" {
			t.Errorf("get -o json (-GET +cli):\n%s", diff)
		}
	})

	t.Run("-o yaml is GET /v1/batches/{id}; tables as kubectl's", func(t *testing.T) {
		r := f.run(f.alice, "get", id, "-o", "yaml")
		got, err := yaml.YAMLToJSON([]byte(r.stdout))
		if r.code != cli.ExitOK || err != nil {
			t.Fatalf("exit %d, yaml %v", r.code, err)
		}
		var want, gotv any
		_ = json.Unmarshal(f.get(f.alice, id), &want)
		_ = json.Unmarshal(got, &gotv)
		if diff := cmp.Diff(want, gotv); diff != "" {
			t.Errorf("get -o yaml (-GET +cli):\n%s", diff)
		}
		table := regexp.MustCompile(`^NAME +ACTION +STATE +DONE +FAILED +AGE\n` + id + ` +batch_label +succeeded +12/12 +0 +\d+s\n$`)
		if r := f.run(f.alice, "get", id); r.code != cli.ExitOK || !table.MatchString(r.stdout) {
			t.Errorf("get: exit %d, stdout %q; want the table", r.code, r.stdout)
		}
		wide := regexp.MustCompile(`^NAME +ACTION +STATE +DONE +FAILED +AGE +OWNER +ATTEMPT +CONCURRENCY +REVERTS\n` + id + ` +batch_label +succeeded +12/12 +0 +\d+s +alice@example.com +1 +3 +-\n$`)
		if r := f.run(f.alice, "get", id, "-o", "wide"); r.code != cli.ExitOK || !wide.MatchString(r.stdout) {
			t.Errorf("get -o wide: exit %d, stdout %q; want the wide table", r.code, r.stdout)
		}
	})

	t.Run("list --all-users: admins see everyone's, others are refused", func(t *testing.T) {
		admin, err := f.p.Token("carol", true)
		if err != nil {
			t.Fatal(err)
		}
		r := f.run(admin, "list", "--all-users", "-o", "wide", "--limit", "100")
		if r.code != cli.ExitOK || !regexp.MustCompile(`(?m)^`+id+` .* alice@example\.com `).MatchString(r.stdout) {
			t.Errorf("admin list --all-users: exit %d, stdout %q; want alice's batch %s with its owner", r.code, r.stdout, id)
		}
		r = f.run(admin, "list", "--all-users", "--limit", "100", "-o", "json")
		if diff := cmp.Diff(string(f.getPath(admin, "/v1/batches?all=true&limit=100")), r.stdout); r.code != cli.ExitOK || diff != "" {
			t.Errorf("list --all-users -o json: exit %d (-GET +cli):\n%s", r.code, diff)
		}
		if r := f.run(admin, "list", "-o", "name"); r.code != cli.ExitOK || strings.Contains(r.stdout, id) {
			t.Errorf("admin list (own): exit %d, stdout %q; want no batch of alice's", r.code, r.stdout)
		}
		r = f.run(f.bob, "list", "--all-users")
		if r.code != cli.ExitUnauthorized || !strings.Contains(r.stderr, "only admins") || r.stdout != "" {
			t.Errorf("bob list --all-users: exit %d, stdout %q, stderr %q; want 4 and only admins", r.code, r.stdout, r.stderr)
		}
		r = f.run(f.bob, "list")
		if r.code != cli.ExitOK || strings.Contains(r.stdout+r.stderr, id) || !strings.Contains(r.stderr, "No batches found.") {
			t.Errorf("bob list: exit %d, stdout %q, stderr %q; want none of alice's batches", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("token-command and list", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "tok")
		if err := os.WriteFile(file, []byte(f.alice+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := f.run("", "list", "-o", "name", "--token-command", "cat "+file)
		if r.code != cli.ExitOK || !strings.Contains(r.stdout, "batch/"+id+"\n") {
			t.Errorf("list: exit %d, stdout %q, want 0 and batch/%s", r.code, r.stdout, id)
		}
		if strings.Contains(r.stdout+r.stderr, f.alice) {
			t.Error("the token was printed")
		}
	})

	t.Run("bad key exits 2 with the field error", func(t *testing.T) {
		r := f.run(f.alice, "label", "nodes", names[0], "bad key=x")
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, `error: field "labels[0]"`) {
			t.Errorf("exit %d, stderr %q; want 2 and a field error for labels[0]", r.code, r.stderr)
		}
	})

	t.Run("usage error exits 2", func(t *testing.T) {
		r := f.run(f.alice, "label", "nodes", "x=y")
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "exactly one of node names") {
			t.Errorf("exit %d, stderr %q; want 2", r.code, r.stderr)
		}
	})

	t.Run("bob may not patch: exit 4, nothing changed", func(t *testing.T) {
		r := f.run(f.bob, "taint", "nodes", names[0], names[1], "cli-bob=x:NoSchedule")
		if r.code != cli.ExitUnauthorized || !strings.Contains(r.stderr, "bob@example.com") {
			t.Errorf("exit %d, stderr %q; want 4 naming bob", r.code, r.stderr)
		}
		node, err := kube.CoreV1().Nodes().Get(t.Context(), names[0], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range node.Spec.Taints {
			if tn.Key == "cli-bob" {
				t.Errorf("node %s got taint %v", names[0], tn)
			}
		}
		if r := f.run("not-a-token", "list"); r.code != cli.ExitUnauthorized {
			t.Errorf("bad token: exit %d, want 4", r.code)
		}
	})

	t.Run("--all without --confirm exits 5", func(t *testing.T) {
		r := f.run(f.alice, "label", "nodes", "--all", "cli-all=x")
		if r.code != cli.ExitConfirm || !regexp.MustCompile(`resolves to \d+ nodes: pass --confirm=\d+`).MatchString(r.stderr) {
			t.Errorf("exit %d, stderr %q; want 5 and how to confirm", r.code, r.stderr)
		}
	})

	t.Run("retry of a succeeded batch exits 1", func(t *testing.T) {
		if r := f.run(f.alice, "retry", id); r.code != cli.ExitFailed {
			t.Errorf("exit %d, want 1", r.code)
		}
	})

	t.Run("revert restores the nodes", func(t *testing.T) {
		r := f.run(f.alice, "revert", id, "--progress-interval", "0")
		if r.code != cli.ExitOK {
			t.Fatalf("exit %d, want 0", r.code)
		}
		for _, n := range names {
			node, err := kube.CoreV1().Nodes().Get(t.Context(), n, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := node.Labels["cli"]; ok {
				t.Errorf("node %s still has label cli=%q after revert", n, v)
			}
		}
	})

	t.Run("Ctrl-C cancels the batch: exit 3", func(t *testing.T) {
		f.gate.CloseAfter(0)
		defer f.gate.Open()
		r := f.start(f.alice, "label", "nodes", "-l", selector, "cli-int=x", "--concurrency", "1", "-o", "name")
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := f.gate.WaitHeld(ctx, 1); err != nil {
			t.Fatal(err)
		}
		bid := f.newest()
		r.until(t, "batch/"+bid+" ") // it is waiting on the progress stream
		if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		r.until(t, "interrupted: cancelling batch/"+bid)
		f.waitCancelRecorded(ctx, bid)
		f.gate.Open()
		r.until(t, "batch/"+bid+" cancel ") // the cancel's answer, settled or not
		answered := time.Now()
		labelled := f.labelled(t, selector, "cli-int")
		if code := r.exit(t); code != cli.ExitCancelled {
			t.Errorf("exit %d, want 3", code)
		}
		f.noPatchAfter(t, answered, names)
		if diff := cmp.Diff(labelled, f.labelled(t, selector, "cli-int")); diff != "" {
			t.Errorf("nodes labelled after the cancel answer (-at answer +at the end):\n%s", diff)
		}
		if got := strings.Join(r.all, "\n"); !strings.Contains(got, "batch/"+bid+" cancelled: ") || !strings.Contains(got, "cancel settled") {
			t.Errorf("stderr lacks the cancel answer and the cancelled summary:\n%s", got)
		}
	})

	t.Run("second Ctrl-C detaches: exit 1, batch left running", func(t *testing.T) {
		f.gate.CloseAfter(0)
		defer f.gate.Open()
		r := f.start(f.alice, "label", "nodes", "-l", selector, "cli-det=x", "--concurrency", "1")
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := f.gate.WaitHeld(ctx, 1); err != nil {
			t.Fatal(err)
		}
		bid := f.newest()
		r.until(t, "batch/"+bid+" ")
		if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		r.until(t, "interrupted: cancelling batch/"+bid)
		// The cancel waits for the patch held at the gate; detach meanwhile.
		if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if code := r.exit(t); code != cli.ExitFailed {
			t.Errorf("exit %d, want 1", code)
		}
		if got := strings.Join(r.all, "\n"); !strings.Contains(got, "detached: batch/"+bid) || !strings.Contains(got, "kubectl nodebatch watch "+bid) {
			t.Errorf("stderr lacks the detach message:\n%s", got)
		}
		if held := f.gate.Held(); held < 1 {
			t.Errorf("%d patches held when the client exited, want the batch's patch still held: it did not detach", held)
		}
		f.gate.Open()
		// The batch goes on (or ends cancelled if the abandoned cancel
		// landed); wait for it so it does not reach the next test's gate.
		if w := f.run(f.alice, "watch", bid, "-o", "name"); w.code != cli.ExitOK && w.code != cli.ExitCancelled {
			t.Errorf("watch after detach: exit %d, want 0 or 3", w.code)
		}
	})

	t.Run("cancelled batch: watch exits 3", func(t *testing.T) {
		f.gate.CloseAfter(0)
		r := f.run(f.alice, "label", "nodes", "-l", selector, "cli-cancel=x", "--concurrency", "1", "--wait=false", "-o", "name")
		if r.code != cli.ExitOK {
			t.Fatalf("submit: exit %d, want 0", r.code)
		}
		cid := strings.TrimPrefix(strings.TrimSpace(r.stdout), "batch/")
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := f.gate.WaitHeld(ctx, 1); err != nil {
			t.Fatal(err)
		}
		done := make(chan result, 1)
		go func() { done <- f.run(f.alice, "cancel", cid, "--reason", "test") }()
		// Open the gate once the cancel is recorded, so the held patch
		// ends and the cancel settles.
		for !strings.Contains(string(f.get(f.alice, cid)), `"cancel":`) {
			select {
			case <-ctx.Done():
				t.Fatal("cancel never recorded")
			case <-time.After(20 * time.Millisecond):
			}
		}
		f.gate.Open()
		if c := <-done; c.code != cli.ExitOK {
			t.Fatalf("cancel: exit %d, want 0", c.code)
		}
		answered := time.Now()
		labelled := f.labelled(t, selector, "cli-cancel")
		w := f.run(f.alice, "watch", cid)
		if w.code != cli.ExitCancelled || !strings.Contains(w.stderr, " cancelled: ") {
			t.Errorf("watch: exit %d, stderr %q; want 3 and the cancelled summary", w.code, w.stderr)
		}
		f.noPatchAfter(t, answered, names)
		if diff := cmp.Diff(labelled, f.labelled(t, selector, "cli-cancel")); diff != "" {
			t.Errorf("nodes labelled after the cancel answer (-at answer +at the end):\n%s", diff)
		}
		if l := f.run(f.alice, "list", "--state", "cancelled", "-o", "name"); l.code != cli.ExitOK || !strings.Contains(l.stdout, "batch/"+cid+"\n") || strings.Contains(l.stdout, "batch/"+id+"\n") {
			t.Errorf("list --state cancelled: exit %d, stdout %q; want %s and not %s", l.code, l.stdout, cid, id)
		}
		rt := f.run(f.alice, "retry", cid, "--include-cancelled", "-o", "json")
		if rt.code != cli.ExitOK {
			t.Fatalf("retry --include-cancelled: exit %d, want 0", rt.code)
		}
		for _, n := range names {
			node, err := kube.CoreV1().Nodes().Get(t.Context(), n, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if node.Labels["cli-cancel"] != "x" {
				t.Errorf("node %s label cli-cancel = %q after retry, want x", n, node.Labels["cli-cancel"])
			}
		}
	})
}

// running is the binary started in the background, its stderr read line
// by line.
type running struct {
	cmd    *exec.Cmd
	lines  chan string
	stdout bytes.Buffer
	all    []string
}

func (f *fixture) start(token string, args ...string) *running {
	f.t.Helper()
	r := &running{lines: make(chan string, 1000)}
	r.cmd = exec.CommandContext(f.t.Context(), f.bin, args...)
	r.cmd.Env = append(os.Environ(), "NODEBATCH_URL="+f.p.RelayURL, "NODEBATCH_TOKEN="+token)
	r.cmd.Stdout = &r.stdout
	pipe, err := r.cmd.StderrPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	return r
}

// until reads stderr until a line contains s.
func (r *running) until(t *testing.T, s string) {
	t.Helper()
	for l := range r.lines {
		r.all = append(r.all, l)
		if strings.Contains(l, s) {
			return
		}
	}
	t.Fatalf("stderr ended without %q:\n%s", s, strings.Join(r.all, "\n"))
}

// exit reads the rest of stderr and returns the exit code.
func (r *running) exit(t *testing.T) int {
	t.Helper()
	for l := range r.lines {
		r.all = append(r.all, l)
	}
	err := r.cmd.Wait()
	t.Logf("$ kubectl-nodebatch %s\n%s%s", strings.Join(r.cmd.Args[1:], " "), r.stdout.String(), strings.Join(r.all, "\n"))
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// newest is alice's newest batch.
func (f *fixture) newest() string {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(f.t.Context(), http.MethodGet, f.p.APIURL+"/v1/batches?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+f.alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Batches []struct {
			BatchID string `json:"batch_id"`
		} `json:"batches"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || len(l.Batches) == 0 {
		f.t.Fatalf("GET /v1/batches: %v %v", err, l)
	}
	return l.Batches[0].BatchID
}

// waitCancelRecorded waits until the batch carries a cancel.
func (f *fixture) waitCancelRecorded(ctx context.Context, id string) {
	f.t.Helper()
	for !strings.Contains(string(f.get(f.alice, id)), `"cancel":`) {
		select {
		case <-ctx.Done():
			f.t.Fatal("cancel never recorded")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tail(m []string) []string {
	if len(m) == 0 {
		return nil
	}
	return m[1:]
}

// labelled lists the nodes of selector that carry label key.
func (f *fixture) labelled(t *testing.T, selector, key string) []string {
	t.Helper()
	l, err := f.kube.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: selector + "," + key})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range l.Items {
		names = append(names, n.Name)
	}
	return names
}

// noPatchAfter fails if the patch function sent any write to one of the
// nodes that started after t (the proxy logs every write it forwards).
func (f *fixture) noPatchAfter(t *testing.T, answered time.Time, nodes []string) {
	t.Helper()
	for _, r := range f.proxy.Stats().Log {
		if r.Start.After(answered) && slices.Contains(nodes, r.Node) {
			t.Errorf("%s %s started %s after the cancel answer", r.Method, r.Path, r.Start.Sub(answered))
		}
	}
}
