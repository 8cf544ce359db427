package main_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
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
