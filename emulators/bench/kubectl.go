package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Kubectl changes the bench nodes with one kubectl invocation per run.
type Kubectl struct {
	Path       string // the kubectl binary (built from the API server's version)
	Kubeconfig string // admin kubeconfig
	// Selector matches exactly the bench nodes (kubectl's --all would also
	// change every other node of the shared API server).
	Selector string
	Nodes    int // how many nodes Selector matches; each must be reported changed
}

// Args returns kubectl's arguments for setting bench=value as op.
func (k Kubectl) Args(op Op, value string) []string {
	args := []string{"--kubeconfig", k.Kubeconfig}
	switch op {
	case OpTaint:
		args = append(args, "taint", "nodes", "-l", k.Selector, "bench="+value+":NoSchedule", "--overwrite")
	default:
		args = append(args, "label", "nodes", "-l", k.Selector, "bench="+value, "--overwrite")
	}
	return args
}

// KubectlRun is one kubectl invocation's cost.
type KubectlRun struct {
	Wall time.Duration // process start included: what a user waits for
	CPU  time.Duration // kubectl's user + system time, from its rusage
}

// Run sets bench=value on every node as op and returns kubectl's wall and
// CPU time. It fails unless kubectl reports every node changed.
func (k Kubectl) Run(ctx context.Context, op Op, value string) (KubectlRun, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, k.Path, k.Args(op, value)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err := cmd.Run()
	wall := time.Since(begin)
	if err != nil {
		return KubectlRun{}, fmt.Errorf("kubectl %s: %w: %s", op, err, strings.TrimSpace(stderr.String()))
	}
	if n := changedLines(stdout.String()); n != k.Nodes {
		return KubectlRun{}, fmt.Errorf("kubectl %s: reported %d nodes changed, want %d", op, n, k.Nodes)
	}
	return KubectlRun{Wall: wall, CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, nil
}

// changedLines counts kubectl's "node/x labeled" / "node/x modified" lines
// ("node/x not labeled" means nothing changed).
func changedLines(out string) int {
	n := 0
	for line := range strings.SplitSeq(out, "\n") {
		if !strings.HasPrefix(line, "node/") || strings.HasSuffix(line, " not labeled") {
			continue
		}
		if strings.HasSuffix(line, " labeled") || strings.HasSuffix(line, " modified") {
			n++
		}
	}
	return n
}
