package main_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
)

// TestCLIBar labels 200 nodes with the binary under a pseudo-terminal, as
// a person at a terminal runs it: the live bar is drawn (redrawn in place
// with carriage returns), ends at 200/200, and the final summary follows.
func TestCLIBar(t *testing.T) {
	f := start(t)
	env := harness.Start(t)
	prefix, _ := env.SeedNodes(t, 200)
	selector := harness.TestLabel + "=" + prefix

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, "label", "nodes", "-l", selector, "bar="+prefix, "--confirm=200", "-o", "name")
	cmd.Env = append(os.Environ(), "NODEBATCH_URL="+f.p.RelayURL, "NODEBATCH_TOKEN="+f.alice, "TERM=xterm")
	t.Logf("$ kubectl-nodebatch %s   # under a %dx%d pty", strings.Join(cmd.Args[1:], " "), 120, 40)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatalf("start under a pty: %v", err)
	}
	defer tty.Close()
	var screen bytes.Buffer
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(&screen, tty)
		read <- err
	}()
	werr := cmd.Wait()
	// The child is gone: the terminal's reads end (EIO on Linux) once its
	// output is drained.
	if err := <-read; err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatalf("read the terminal: %v", err)
	}
	out := screen.String()
	t.Logf("terminal (quoted):\n%q", out)
	var ee *exec.ExitError
	switch {
	case errors.As(werr, &ee):
		t.Fatalf("exit %d, want 0", ee.ExitCode())
	case werr != nil:
		t.Fatal(werr)
	}

	id := regexp.MustCompile(`(?m)^batch/([A-Za-z0-9_-]+)\r?$`).FindStringSubmatch(out)
	if id == nil {
		t.Fatal("no batch/ID line (-o name) on the terminal")
	}
	for _, want := range []string{
		"batch/" + id[1] + ": 200 nodes (Ctrl-C cancels the batch; twice detaches)",
		"100% |",
		"batch/" + id[1] + " succeeded: 200/200 nodes (200 succeeded, 0 unchanged, 0 failed, 0 skipped, 0 cancelled)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal lacks %q", want)
		}
	}
	if !regexp.MustCompile(`\r 100% \|█+\| \(200/200\) succeeded, [^\r\n]*0 failed, 0 in flight`).MatchString(out) {
		t.Error("the bar does not end at 100% (200/200) succeeded")
	}
	// Redrawn in place: the same line, after a carriage return, with more
	// nodes done each time.
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\r +\d+% \|[█ ]*\| \((\d+)/200\)`).FindAllStringSubmatch(out, -1) {
		seen[m[1]] = true
	}
	if len(seen) < 2 {
		t.Errorf("the bar was drawn with %d distinct counts, want it redrawn as nodes finish", len(seen))
	}
	if strings.Contains(out, f.alice) {
		t.Error("the token was printed")
	}
	if strings.Contains(out, "nodes done,") {
		t.Error("plain progress lines on a terminal: want the bar")
	}
	nodes, err := env.Kube(t).CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: selector + ",bar=" + prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 200 {
		t.Errorf("%d nodes carry bar=%s, want 200", len(nodes.Items), prefix)
	}
}

// screen collects what a terminal shows, safe to read while it is written.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// wait waits until the screen matches re and returns the match.
func (s *screen) wait(ctx context.Context, t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	for {
		if m := re.FindStringSubmatch(s.String()); m != nil {
			return m
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the terminal never showed %s:\n%q", re, s.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestCLIBarCtrlC presses Ctrl-C on the terminal (the pty's line
// discipline turns ^C into SIGINT, as a shell's terminal does) while the
// bar shows and a patch is held: the cancel's answer is printed on a line
// of its own above the bar, the bar goes on, the batch ends cancelled, exit 3.
func TestCLIBarCtrlC(t *testing.T) {
	f := start(t)
	env := harness.Start(t)
	prefix, names := env.SeedNodes(t, 12)
	selector := harness.TestLabel + "=" + prefix
	f.gate.CloseAfter(0)
	defer f.gate.Open()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, "label", "nodes", "-l", selector, "barint=x", "--concurrency", "1", "-o", "name")
	cmd.Env = append(os.Environ(), "NODEBATCH_URL="+f.p.RelayURL, "NODEBATCH_TOKEN="+f.alice, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatalf("start under a pty: %v", err)
	}
	defer tty.Close()
	var scr screen
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&scr, tty)
	}()
	if err := f.gate.WaitHeld(ctx, 1); err != nil {
		t.Fatal(err)
	}
	id := scr.wait(ctx, t, regexp.MustCompile(`batch/([A-Za-z0-9_-]+): 12 nodes \(Ctrl-C cancels`))[1]
	scr.wait(ctx, t, regexp.MustCompile(`\(0/12\) running`))
	if _, err := tty.Write([]byte{0x03}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	scr.wait(ctx, t, regexp.MustCompile(`interrupted: cancelling batch/`+id))
	f.waitCancelRecorded(ctx, id)
	f.gate.Open()
	werr := cmd.Wait()
	<-read
	out := scr.String()
	t.Logf("terminal (quoted):\n%q", out)
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v, want exit status 3", werr)
	}
	// The bar's line is cleared (\r), the message written, the bar drawn again.
	if !regexp.MustCompile(`\r\s*\rinterrupted: cancelling batch/` + id + ` \(press Ctrl-C again to detach and leave it running\)\r\n(\r *\r)?\r +\d+% \|`).MatchString(out) {
		t.Error("the interrupt message is not on a line of its own with the bar drawn again below it")
	}
	for _, want := range []string{
		"batch/" + id + " cancel settled: no patch of it starts or is in flight; waiting for it to end\r\n",
		"batch/" + id + " cancelled: 12/12 nodes (1 succeeded, 0 unchanged, 0 failed, 0 skipped, 11 cancelled): cancelled by alice@example.com: interrupted (Ctrl-C) in kubectl-nodebatch\r\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal lacks %q", want)
		}
	}
	if got := f.labelled(t, selector, "barint"); len(got) != 1 || !slices.Contains(names, got[0]) {
		t.Errorf("nodes labelled: %v, want the one patch held at the gate", got)
	}
}
