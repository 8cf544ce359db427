package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ProcessSpec describes a child process the stack runs and stops with the
// rest. It is also the hook `make run` uses to add the product's processes
// (functions, relay, push deliverer, OIDC issuer) to a running stack.
type ProcessSpec struct {
	// Name names the process in logs and errors; its output goes to
	// {StateDir}/logs/{Name}.log.
	Name string
	// Path is the executable; Args its arguments (without argv[0]).
	Path string
	Args []string
	// Env is added to the parent's environment.
	Env []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// Ready is polled until it returns nil; it should probe a real endpoint.
	// Nil means ready as soon as the process has started.
	Ready func(ctx context.Context) error
}

// process is one running child. Stopping it signals its whole process group,
// so launcher scripts cannot leave an orphaned JVM behind.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done is closed
}

// startProcess starts spec in its own process group. On Linux the child also
// gets SIGKILL when its parent dies, so a crashed test binary leaves nothing
// running.
func startProcess(spec ProcessSpec, logDir string) (*process, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: create log dir: %w", spec.Name, err)
	}
	logPath := filepath.Join(logDir, spec.Name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: create log: %w", spec.Name, err)
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", spec.Name, spec.Path, err)
	}
	p := &process{name: spec.Name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if done, _ := p.exited(); done {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that ignored SIGTERM but whose leader exited.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// logTail returns the last lines of the process's log, for error messages.
func (p *process) logTail(lines int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// waitReady polls ready every interval until it succeeds, the process exits,
// or ctx ends.
func (p *process) waitReady(ctx context.Context, ready func(context.Context) error) error {
	if ready == nil {
		return nil
	}
	const interval = 50 * time.Millisecond
	var last error
	for {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited before ready (%v); log %s:\n%s", p.name, err, p.logPath, p.logTail(20))
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(pctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last probe: %v); log %s:\n%s", p.name, ctx.Err(), last, p.logPath, p.logTail(20))
		case <-p.done:
		case <-time.After(interval):
		}
	}
}
