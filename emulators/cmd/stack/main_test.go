package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/stack"
	"github.com/nodebatch/nodebatch/emulators/wait"
)

// The test binary doubles as the command: with this variable set it runs
// main, so the tests below exercise the real process lifecycle.
const runMainEnv = "NODEBATCH_STACK_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startCommand runs the command on free ports and waits for its state file.
func startCommand(t *testing.T) (*exec.Cmd, <-chan error, stack.Info, string) {
	t.Helper()
	binDir, err := filepath.Abs("../../../.nodebatch/bin")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stateFile := filepath.Join(dir, "stack.json")
	cmd := exec.Command(os.Args[0], "-build=false", "-free-ports", "-nodes=5",
		"-bin-dir="+binDir, "-state-dir="+filepath.Join(dir, "state"),
		"-state-file="+stateFile, "-kubeconfig="+filepath.Join(dir, "kubeconfig"))
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out := new(lockedBuilder)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start command: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	for {
		if info, err := stack.ReadInfo(stateFile); err == nil {
			return cmd, exited, info, stateFile
		}
		select {
		case err := <-exited:
			t.Fatalf("command exited before ready: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitGone fails the test unless every pid is gone (or a zombie) within a
// generous bound; it is a liveness check, not a timing assertion.
func waitGone(t *testing.T, pids map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, pid := range pids {
		if err := wait.Until(ctx, fmt.Sprintf("%s (pid %d) to stop after its parent stopped", name, pid), func() error {
			return wait.True(!alive(pid), "still running")
		}); err != nil {
			t.Error(err)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// Field 3 is the state; a zombie has exited, it only awaits reaping.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestSIGTERMStopsEveryChild(t *testing.T) {
	cmd, exited, info, stateFile := startCommand(t)
	want := []string{"etcd", "firestore", "kube-apiserver", "pubsub"}
	for _, name := range want {
		if info.PIDs[name] == 0 {
			t.Errorf("state file has no pid for %s: %v", name, info.PIDs)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if err := <-exited; err != nil {
		t.Errorf("command after SIGTERM: %v, want exit 0", err)
	}
	waitGone(t, info.PIDs)
	if _, err := os.Stat(stateFile); !os.IsNotExist(err) {
		t.Errorf("state file %s left behind after stop (stat err %v)", stateFile, err)
	}
}

func TestKilledParentLeavesNoOrphans(t *testing.T) {
	cmd, exited, info, _ := startCommand(t)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-exited
	waitGone(t, info.PIDs)
}

// lockedBuilder collects the command's output, written by exec's copying
// goroutines and read by the test.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
