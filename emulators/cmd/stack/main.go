// Command stack runs the local nodebatch stack in the foreground: it builds
// etcd and kube-apiserver if needed, starts them with the Firestore and
// Pub/Sub emulators, seeds Nodes, prints the exports a user needs, writes a
// kubeconfig and a state file, and stops every child on Ctrl-C or SIGTERM.
//
// `make stack` runs it with defaults; `make test` runs it in the background
// with -free-ports and -nodes 0 and points tests at its -state-file.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/seed"
	"github.com/nodebatch/nodebatch/emulators/stack"
	"github.com/nodebatch/nodebatch/shared/setting"
)

type options struct {
	binDir, stateDir, stateFile, kubeconfig, cloudSDK string
	nodes, podsPerNode                                int
	ports                                             stack.Ports
	freePorts, build, product                         bool
}

func main() {
	def := stack.DefaultPorts()
	var o options
	flag.StringVar(&o.binDir, "bin-dir", setting.String(os.Getenv, "NODEBATCH_BIN_DIR", ".nodebatch/bin"), "folder with etcd, kube-apiserver, kubectl (env NODEBATCH_BIN_DIR)")
	flag.StringVar(&o.stateDir, "state-dir", ".nodebatch/stack", "folder for etcd data, certificates, tokens, kubeconfigs, logs")
	flag.StringVar(&o.stateFile, "state-file", setting.String(os.Getenv, "NODEBATCH_STACK_FILE", ".nodebatch/stack.json"), "where to write endpoints and credentials once ready (env NODEBATCH_STACK_FILE)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", ".nodebatch/kubeconfig", "where to write the admin kubeconfig; empty to skip")
	flag.StringVar(&o.cloudSDK, "cloud-sdk", setting.String(os.Getenv, "NODEBATCH_CLOUD_SDK", "/usr/lib/google-cloud-sdk"), "Cloud SDK root holding the emulators (env NODEBATCH_CLOUD_SDK)")
	flag.IntVar(&o.nodes, "nodes", envInt("NODEBATCH_NODES", seed.DefaultCount), "Nodes to seed; 0 for none (env NODEBATCH_NODES)")
	flag.IntVar(&o.podsPerNode, "pods-per-node", envInt("NODEBATCH_PODS_PER_NODE", 8), "Pods to seed on each node, in namespace "+seed.DefaultNamespace+"; 0 for none (env NODEBATCH_PODS_PER_NODE)")
	flag.IntVar(&o.ports.APIServer, "apiserver-port", def.APIServer, "kube-apiserver HTTPS port")
	flag.IntVar(&o.ports.EtcdClient, "etcd-port", def.EtcdClient, "etcd client port")
	flag.IntVar(&o.ports.EtcdPeer, "etcd-peer-port", def.EtcdPeer, "etcd peer port")
	flag.IntVar(&o.ports.Firestore, "firestore-port", def.Firestore, "Firestore emulator port")
	flag.IntVar(&o.ports.PubSub, "pubsub-port", def.PubSub, "Pub/Sub emulator port")
	flag.BoolVar(&o.freePorts, "free-ports", false, "ignore the port flags and pick free ports (make test)")
	flag.BoolVar(&o.build, "build", true, "build etcd/kube-apiserver/kubectl with emulators/k8s/build.sh when out of date")
	flag.BoolVar(&o.product, "product", false, "also start the product's processes (make run)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(logger)
	if err := run(o, logger); err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(1)
	}
}

func run(o options, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begin := time.Now()
	if o.build {
		if err := build(ctx, o.binDir); err != nil {
			return err
		}
	}
	if o.freePorts {
		ports, err := stack.FreePorts()
		if err != nil {
			return err
		}
		o.ports = ports
	}
	// A stale state file would point readers at a dead stack.
	os.Remove(o.stateFile)
	st, err := stack.Start(ctx, stack.Config{
		BinDir:      o.binDir,
		StateDir:    o.stateDir,
		CloudSDKDir: o.cloudSDK,
		Ports:       o.ports,
		Logger:      logger,
	})
	if err != nil {
		return err
	}
	defer st.Stop()
	defer os.Remove(o.stateFile)
	info := st.Info()

	if o.nodes > 0 {
		seedBegin := time.Now()
		client, err := kubernetes.NewForConfig(info.AdminConfig())
		if err != nil {
			return fmt.Errorf("seed: clientset: %w", err)
		}
		names, err := seed.Nodes(ctx, client, seed.Options{Count: o.nodes})
		if err != nil {
			return err
		}
		if o.podsPerNode > 0 {
			if err := seed.Workloads(ctx, client, seed.WorkloadOptions{Nodes: names, PodsPerNode: o.podsPerNode}); err != nil {
				return err
			}
		}
		logger.Info("seeded nodes", "count", o.nodes, "pods_per_node", o.podsPerNode, "elapsed", time.Since(seedBegin).Round(time.Millisecond).String())
	}
	if o.product {
		if err := startProduct(ctx, st, &info, o.binDir, o.stateDir); err != nil {
			return err
		}
	}
	kubeconfig := info.AdminKubeconfig
	if o.kubeconfig != "" {
		if err := stack.WriteKubeconfig(o.kubeconfig, info.AdminConfig(), stack.AdminUser); err != nil {
			return err
		}
		if kubeconfig, err = filepath.Abs(o.kubeconfig); err != nil {
			return fmt.Errorf("kubeconfig path: %w", err)
		}
	}
	if err := stack.WriteInfo(o.stateFile, info); err != nil {
		return err
	}
	logger.Info("ready", "elapsed", time.Since(begin).Round(time.Millisecond).String(), "state_file", o.stateFile)
	fmt.Printf("\nexport KUBECONFIG=%s FIRESTORE_EMULATOR_HOST=%s PUBSUB_EMULATOR_HOST=%s GOOGLE_CLOUD_PROJECT=%s\n\n",
		kubeconfig, info.FirestoreHost, info.PubSubHost, info.Project)
	if o.product {
		printProduct(o.binDir, o.nodes)
	}
	fmt.Println("Ctrl-C stops the stack.")

	select {
	case <-ctx.Done():
		logger.Info("stopping", "reason", "signal")
		return nil
	case err := <-st.Failed():
		return err
	}
}

// build runs emulators/k8s/build.sh, a no-op when the binaries are current.
func build(ctx context.Context, binDir string) error {
	const script = "emulators/k8s/build.sh"
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("build kube binaries: run from the repository root (or -build=false): %w", err)
	}
	cmd := exec.CommandContext(ctx, "bash", script, binDir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build kube binaries: %w", err)
	}
	return nil
}

// envInt is the flag default of the integer setting key (def when
// unset); a bad value stops the command.
func envInt(key string, def int) int {
	n, err := setting.Int(os.Getenv, key, def, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stack: %v\n", err)
		os.Exit(2)
	}
	return n
}
