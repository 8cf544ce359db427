// Package stack starts and stops the local nodebatch stack: embedded etcd, a
// real kube-apiserver with RBAC, and the official Firestore and Pub/Sub
// emulators, each checked for readiness on a real endpoint.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// DefaultProject is the Google Cloud project id the local stack's users share.
const DefaultProject = "nodebatch-local"

// Ports are the TCP ports the stack listens on, all on 127.0.0.1.
type Ports struct {
	APIServer  int
	EtcdClient int
	EtcdPeer   int
	Firestore  int
	PubSub     int
}

// DefaultPorts returns the ports in docs/design.md §2.
func DefaultPorts() Ports {
	return Ports{APIServer: 16443, EtcdClient: 12379, EtcdPeer: 12380, Firestore: 8681, PubSub: 8685}
}

// FreePorts returns ports the kernel reports free right now, so a private
// stack (tests) never clashes with a running `make stack`.
func FreePorts() (Ports, error) {
	var ports [5]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Ports{}, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return Ports{APIServer: ports[0], EtcdClient: ports[1], EtcdPeer: ports[2], Firestore: ports[3], PubSub: ports[4]}, nil
}

// Config says where the stack's binaries are, where it keeps its state and
// which ports it uses.
type Config struct {
	// BinDir holds etcd and kube-apiserver (built by emulators/k8s/build.sh).
	BinDir string
	// StateDir holds etcd data, certificates, tokens, kubeconfigs and logs.
	StateDir string
	// CloudSDKDir is the Cloud SDK root holding platform/*-emulator.
	CloudSDKDir string
	// Java is the java executable; empty means "java" on PATH.
	Java string
	// Ports; zero value means DefaultPorts.
	Ports Ports
	// ReadyTimeout bounds the wait for each part; zero means 2 minutes.
	ReadyTimeout time.Duration
	// Logger receives progress; nil means slog.Default.
	Logger *slog.Logger
}

// Stack is a running local stack. Stop it with Stop, or by cancelling the
// context given to Start.
type Stack struct {
	info   Info
	logDir string
	logger *slog.Logger

	mu       sync.Mutex
	procs    []*process
	stopping bool
	failed   chan error
	stopOnce sync.Once
}

// Start starts etcd, kube-apiserver, the Firestore emulator and the Pub/Sub
// emulator concurrently (the API server after etcd is ready), waits until
// each answers on a real endpoint, creates the patcher's RBAC role and writes
// the kubeconfigs. Cancelling ctx later stops everything.
func Start(ctx context.Context, cfg Config) (st *Stack, err error) {
	begin := time.Now()
	if cfg.Ports == (Ports{}) {
		cfg.Ports = DefaultPorts()
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CloudSDKDir == "" {
		cfg.CloudSDKDir = "/usr/lib/google-cloud-sdk"
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("start stack: state dir: %w", err)
	}
	cfg.StateDir = stateDir
	if err := checkPrereqs(&cfg); err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	// Before touching the state dir: a second stack on the same ports would
	// otherwise wipe the first one's etcd data, and our readiness probes
	// would be answered by the first one's processes.
	if err := checkPortsFree(cfg.Ports); err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	st = &Stack{
		logDir: filepath.Join(stateDir, "logs"),
		logger: cfg.Logger,
		failed: make(chan error, 1),
		info: Info{
			Project:       DefaultProject,
			FirestoreHost: hostPort(cfg.Ports.Firestore),
			PubSubHost:    hostPort(cfg.Ports.PubSub),
			APIServerURL:  "https://" + hostPort(cfg.Ports.APIServer),
			PID:           os.Getpid(),
		},
	}
	defer func() {
		if err != nil {
			st.Stop()
			st = nil
		}
	}()
	kube, err := prepareKube(&cfg, &st.info)
	if err != nil {
		return st, fmt.Errorf("start stack: %w", err)
	}

	rctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	parts := []func(context.Context) error{
		func(ctx context.Context) error {
			if err := st.StartProcess(ctx, kube.etcd); err != nil {
				return err
			}
			if err := st.StartProcess(ctx, kube.apiserver); err != nil {
				return err
			}
			return kube.configure(ctx, &st.info)
		},
		func(ctx context.Context) error { return st.StartProcess(ctx, firestoreSpec(&cfg)) },
		func(ctx context.Context) error { return st.StartProcess(ctx, pubsubSpec(&cfg)) },
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() { errs[i] = part(rctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("start stack: %w", err)
	}
	context.AfterFunc(ctx, st.Stop)
	st.logger.Info("stack ready", "elapsed", time.Since(begin).Round(time.Millisecond).String(),
		"apiserver", st.info.APIServerURL, "firestore", st.info.FirestoreHost, "pubsub", st.info.PubSubHost)
	return st, nil
}

// Info returns the endpoints and credentials of the running stack.
func (s *Stack) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.info
	info.PIDs = maps.Clone(s.info.PIDs)
	return info
}

// Failed delivers an error when a child process exits while the stack is
// not stopping.
func (s *Stack) Failed() <-chan error { return s.failed }

// StartProcess starts spec as part of the stack and waits for it to be ready.
// The stack stops it with the rest. `make run` uses it to add the product's
// processes.
func (s *Stack) StartProcess(ctx context.Context, spec ProcessSpec) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return fmt.Errorf("start %s: stack is stopping", spec.Name)
	}
	begin := time.Now()
	p, err := startProcess(spec, s.logDir)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.procs = append(s.procs, p)
	if s.info.PIDs == nil {
		s.info.PIDs = map[string]int{}
	}
	s.info.PIDs[spec.Name] = p.cmd.Process.Pid
	s.mu.Unlock()
	go s.watch(p)
	if err := p.waitReady(ctx, spec.Ready); err != nil {
		return fmt.Errorf("wait for %s: %w", spec.Name, err)
	}
	s.logger.Info("part ready", "part", spec.Name, "pid", p.cmd.Process.Pid,
		"elapsed", time.Since(begin).Round(time.Millisecond).String(), "log", p.logPath)
	return nil
}

func (s *Stack) watch(p *process) {
	<-p.done
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		return
	}
	err := fmt.Errorf("%s exited unexpectedly (%v); log %s:\n%s", p.name, p.err, p.logPath, p.logTail(20))
	select {
	case s.failed <- err:
	default:
	}
}

// Stop stops every child, last started first, and waits for them to exit.
// It is safe to call more than once.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopping = true
		procs := s.procs
		s.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(10 * time.Second)
		}
		s.logger.Info("stack stopped", "processes", len(procs))
	})
}

// checkPrereqs fails with one line naming what to install or build.
func checkPrereqs(cfg *Config) error {
	if cfg.Java == "" {
		cfg.Java = "java"
	}
	java, err := exec.LookPath(cfg.Java)
	if err != nil {
		return fmt.Errorf("java not found (%v): install Debian package openjdk-17-jre-headless", err)
	}
	cfg.Java = java
	if _, err := os.Stat(firestoreJar(cfg)); err != nil {
		return fmt.Errorf("Firestore emulator missing (%v): install Debian package google-cloud-cli-firestore-emulator", err)
	}
	if _, err := os.Stat(pubsubJar(cfg)); err != nil {
		return fmt.Errorf("Pub/Sub emulator missing (%v): install Debian package google-cloud-cli-pubsub-emulator", err)
	}
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, bin)); err != nil {
			return fmt.Errorf("%s missing (%v): build it with `emulators/k8s/build.sh .nodebatch/bin` (or `make setup`)", bin, err)
		}
	}
	return nil
}

// checkPortsFree fails naming the first port something already listens on.
func checkPortsFree(p Ports) error {
	ports := []struct {
		name string
		port int
	}{
		{"kube-apiserver", p.APIServer}, {"etcd", p.EtcdClient}, {"etcd peer", p.EtcdPeer},
		{"firestore", p.Firestore}, {"pubsub", p.PubSub},
	}
	for _, x := range ports {
		l, err := net.Listen("tcp", hostPort(x.port))
		if err != nil {
			return fmt.Errorf("port %d (%s) is in use, is another stack running? (pick other ports or -free-ports): %w", x.port, x.name, err)
		}
		l.Close()
	}
	return nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
