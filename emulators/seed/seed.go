// Package seed creates Node objects that look like a real fleet on a
// Kubernetes API server: hostnames, roles, zones over one region, node pools
// with their instance types and taints. Seeding is idempotent.
package seed

import (
	"context"
	"fmt"
	"k8s.io/apimachinery/pkg/api/resource"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Defaults for Options.
const (
	DefaultCount   = 100
	DefaultPrefix  = "node"
	DefaultWorkers = 32
	// Region holds the three zones nodes are spread over.
	Region = "us-central1"
	// ControlPlaneNodes is how many of the first nodes are control-plane.
	ControlPlaneNodes = 3
)

// Zones are the zones nodes are spread over, round-robin by index.
var Zones = [...]string{"us-central1-a", "us-central1-b", "us-central1-c"}

// Options say how many nodes to create and how to name and mark them.
type Options struct {
	// Count of nodes; zero means DefaultCount.
	Count int
	// Prefix of node names "{Prefix}-0000"..; empty means DefaultPrefix.
	Prefix string
	// ExtraLabels are added to every node (the test harness marks its
	// nodes with nodebatch.dev/test={prefix}).
	ExtraLabels map[string]string
	// Workers bounds concurrent API calls; zero means DefaultWorkers.
	Workers int
}

// Name returns the name of node i.
func Name(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }

// Node returns node i of a fleet, as seeding creates it. The fleet is
// deterministic: the first ControlPlaneNodes are control-plane; among the
// rest, index%10 == 9 is in pool gpu, 7 or 8 in pool spot, others general
// (index%20 == 4 of those on arm64); zones go round-robin over Zones.
func Node(prefix string, i int, extra map[string]string) *corev1.Node {
	name := Name(prefix, i)
	zone := Zones[i%len(Zones)]
	pool, instance, arch := "general", "n2-standard-8", "amd64"
	var taints []corev1.Taint
	role := "node-role.kubernetes.io/worker"
	switch {
	case i < ControlPlaneNodes:
		role, instance = "node-role.kubernetes.io/control-plane", "n2-standard-4"
		taints = append(taints, corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule})
	case i%10 == 9:
		pool, instance = "gpu", "a2-highgpu-1g"
		taints = append(taints, corev1.Taint{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule})
	case i%10 == 7 || i%10 == 8:
		pool, instance = "spot", "e2-standard-4"
		taints = append(taints, corev1.Taint{Key: "cloud.google.com/gke-spot", Value: "true", Effect: corev1.TaintEffectNoSchedule})
	case i%20 == 4:
		instance, arch = "t2a-standard-8", "arm64"
	}
	labels := map[string]string{
		"kubernetes.io/hostname":           name,
		"kubernetes.io/os":                 "linux",
		"kubernetes.io/arch":               arch,
		role:                               "",
		"topology.kubernetes.io/zone":      zone,
		"topology.kubernetes.io/region":    Region,
		"node.kubernetes.io/instance-type": instance,
		"pool":                             pool,
	}
	maps.Copy(labels, extra)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.NodeSpec{
			ProviderID: fmt.Sprintf("gce://nodebatch-local/%s/%s", zone, name),
			Taints:     taints,
		},
	}
}

// Nodes creates the fleet and returns the node names in index order. Nodes
// that already exist keep their other labels and taints but get any of the
// fleet's labels and taints they are missing, so running it twice is the
// same as running it once.
func Nodes(ctx context.Context, client kubernetes.Interface, opts Options) ([]string, error) {
	if opts.Count < 0 {
		return nil, fmt.Errorf("seed nodes: count %d < 0", opts.Count)
	}
	if opts.Count == 0 {
		opts.Count = DefaultCount
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	names := make([]string, opts.Count)
	jobs := make(chan int)
	errs := make(chan error, opts.Workers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range min(opts.Workers, opts.Count) {
		wg.Go(func() {
			for i := range jobs {
				node := Node(opts.Prefix, i, opts.ExtraLabels)
				names[i] = node.Name
				if err := ensure(ctx, client, node); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for i := range opts.Count {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("seed nodes: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("seed nodes: %w", err)
	}
	return names, nil
}

// ensure creates node, or adds its labels and taints to the existing one.
func ensure(ctx context.Context, client kubernetes.Interface, want *corev1.Node) error {
	nodes := client.CoreV1().Nodes()
	created, err := nodes.Create(ctx, want, metav1.CreateOptions{FieldManager: "nodebatch-seed"})
	if err == nil {
		// No kubelet reports for these nodes: give them the status one would,
		// so `kubectl get nodes` reads Ready with a version, as in a fleet.
		created.Status = readyStatus(created.CreationTimestamp, created.Labels["kubernetes.io/arch"])
		if _, err := nodes.UpdateStatus(ctx, created, metav1.UpdateOptions{FieldManager: "nodebatch-seed"}); err != nil {
			return fmt.Errorf("set status of node %q: %w", want.Name, err)
		}
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %q: %w", want.Name, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got, err := nodes.Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !merge(got, want) {
			return nil
		}
		_, err = nodes.Update(ctx, got, metav1.UpdateOptions{FieldManager: "nodebatch-seed"})
		return err
	})
	if err != nil {
		return fmt.Errorf("update node %q to seed spec: %w", want.Name, err)
	}
	return nil
}

// merge adds want's labels and taints to got and reports whether it changed.
func merge(got, want *corev1.Node) bool {
	changed := false
	if got.Labels == nil {
		got.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		if cur, ok := got.Labels[k]; !ok || cur != v {
			got.Labels[k] = v
			changed = true
		}
	}
	for _, wt := range want.Spec.Taints {
		found := false
		for i, gt := range got.Spec.Taints {
			if gt.Key == wt.Key && gt.Effect == wt.Effect {
				found = true
				if gt.Value != wt.Value {
					got.Spec.Taints[i].Value = wt.Value
					changed = true
				}
			}
		}
		if !found {
			got.Spec.Taints = append(got.Spec.Taints, wt)
			changed = true
		}
	}
	return changed
}

// KubeletVersion is the version seeded nodes report.
const KubeletVersion = "v1.37.2"

// readyStatus is a healthy node's status as its kubelet would report it.
func readyStatus(since metav1.Time, arch string) corev1.NodeStatus {
	if arch == "" {
		arch = "amd64"
	}
	return corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "kubelet is posting ready status", LastHeartbeatTime: since, LastTransitionTime: since,
		}},
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("8"),
			corev1.ResourceMemory: resource.MustParse("32Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		},
		Allocatable: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("7910m"),
			corev1.ResourceMemory: resource.MustParse("29Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: KubeletVersion, OperatingSystem: "linux", Architecture: arch, ContainerRuntimeVersion: "containerd://2.1.0"},
	}
}
