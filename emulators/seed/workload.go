package seed

import (
	"context"
	"fmt"
	"maps"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Workload defaults.
const (
	DefaultNamespace   = "workloads"
	DefaultPodsPerNode = 20
	// DrainKey is the taint key the seeded tolerations are about: taint a
	// node with DrainKey=DrainValue:NoExecute to see each kind's fate.
	DrainKey   = "nodebatch.dev/drain"
	DrainValue = "now"
	// SlowSeconds is the tolerationSeconds of KindSlow.
	SlowSeconds = 300
	// DaemonSetName is the DaemonSet that owns the KindAgent pods.
	DaemonSetName = "node-agent"
	// WebDisruptionsAllowed and DBDisruptionsAllowed are the seeded
	// budgets' status.disruptionsAllowed.
	WebDisruptionsAllowed = 1
	DBDisruptionsAllowed  = 1000
)

// Kind is one sort of seeded pod: its label app=Kind and its tolerations.
type Kind string

// The kinds of seeded pods. Pod 0 of every node is KindAgent; the others
// cycle through the rest in this order.
const (
	KindAgent      Kind = "agent"      // owned by DaemonSet node-agent, with the DaemonSet controller's tolerations
	KindWeb        Kind = "web"        // no toleration; budget "web"
	KindExact      Kind = "exact"      // DrainKey=DrainValue:NoExecute, operator Equal
	KindExists     Kind = "exists"     // DrainKey, operator Exists, any effect
	KindSlow       Kind = "slow"       // DrainKey Exists NoExecute, tolerationSeconds SlowSeconds
	KindSystem     Kind = "system"     // empty key, operator Exists: every taint
	KindDB         Kind = "db"         // no toleration; budget "db"
	KindNoSchedule Kind = "noschedule" // DrainKey Exists, effect NoSchedule only
)

// cycle is the order of the kinds after pod 0.
var cycle = []Kind{KindWeb, KindExact, KindExists, KindSlow, KindSystem, KindDB, KindNoSchedule}

// PodKind returns the kind of pod j of a node.
func PodKind(j int) Kind {
	if j == 0 {
		return KindAgent
	}
	return cycle[(j-1)%len(cycle)]
}

// PodName returns the name of pod j on node.
func PodName(node string, j int) string { return fmt.Sprintf("%s-%s-%02d", node, PodKind(j), j) }

// WorkloadOptions say where to put pods and how many.
type WorkloadOptions struct {
	// Namespace for every object; empty means DefaultNamespace.
	Namespace string
	// Nodes the pods are bound to (spec.nodeName).
	Nodes []string
	// PodsPerNode; zero means DefaultPodsPerNode.
	PodsPerNode int
	// ExtraLabels are added to every object created.
	ExtraLabels map[string]string
	// Workers bounds concurrent API calls; zero means DefaultWorkers.
	Workers int
}

func (o *WorkloadOptions) defaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.PodsPerNode <= 0 {
		o.PodsPerNode = DefaultPodsPerNode
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
}

// Workloads creates, in opts.Namespace, its default ServiceAccount (the
// ServiceAccount admission plugin refuses pods without it, and no
// controller-manager runs to create it), the DaemonSet node-agent, pods
// bound to each node (they stay Pending: no kubelet runs), and the budgets
// "web" and "db" with their status set through the status subresource (no
// disruption controller runs either). Objects that exist are kept, so
// running it twice is the same as once.
func Workloads(ctx context.Context, client kubernetes.Interface, opts WorkloadOptions) error {
	opts.defaults()
	ns := opts.Namespace
	meta := func(name string, more map[string]string) metav1.ObjectMeta {
		l := maps.Clone(opts.ExtraLabels)
		if l == nil {
			l = map[string]string{}
		}
		maps.Copy(l, more)
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l}
	}
	create := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("seed workloads: create %s: %w", what, err)
		}
		return nil
	}
	nsMeta := meta(ns, nil)
	nsMeta.Namespace = ""
	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: nsMeta}, createOpts)
	if err := create("namespace "+ns, err); err != nil {
		return err
	}
	_, err = client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta("default", nil)}, createOpts)
	if err := create("service account default", err); err != nil {
		return err
	}
	ds, err := daemonSet(ctx, client, meta(DaemonSetName, map[string]string{"app": string(KindAgent)}))
	if err != nil {
		return err
	}
	for _, b := range []struct {
		kind    Kind
		allowed int32
	}{{KindWeb, WebDisruptionsAllowed}, {KindDB, DBDisruptionsAllowed}} {
		if err := budget(ctx, client, meta(string(b.kind), nil), b.kind, b.allowed); err != nil {
			return err
		}
	}
	type job struct {
		node string
		j    int
	}
	jobs := make(chan job)
	errs := make(chan error, opts.Workers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() {
			for jb := range jobs {
				kind := PodKind(jb.j)
				p := &corev1.Pod{
					ObjectMeta: meta(PodName(jb.node, jb.j), map[string]string{"app": string(kind)}),
					Spec: corev1.PodSpec{
						NodeName:    jb.node,
						Containers:  []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
						Tolerations: tolerations(kind),
					},
				}
				if kind == KindAgent {
					p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))}
				}
				_, err := client.CoreV1().Pods(ns).Create(ctx, p, createOpts)
				if err := create("pod "+p.Name, err); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for _, node := range opts.Nodes {
		for j := range opts.PodsPerNode {
			select {
			case jobs <- job{node, j}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

var createOpts = metav1.CreateOptions{FieldManager: "nodebatch-seed"}

// tolerations returns kind's tolerations (KindAgent's are those the
// DaemonSet controller adds to every daemon pod, NoExecute ones first).
func tolerations(kind Kind) []corev1.Toleration {
	slow := int64(SlowSeconds)
	switch kind {
	case KindAgent:
		var ts []corev1.Toleration
		for _, k := range []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} {
			ts = append(ts, corev1.Toleration{Key: k, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
		}
		for _, k := range []string{"node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure", "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable"} {
			ts = append(ts, corev1.Toleration{Key: k, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
		}
		return ts
	case KindExact:
		return []corev1.Toleration{{Key: DrainKey, Operator: corev1.TolerationOpEqual, Value: DrainValue, Effect: corev1.TaintEffectNoExecute}}
	case KindExists:
		return []corev1.Toleration{{Key: DrainKey, Operator: corev1.TolerationOpExists}}
	case KindSlow:
		return []corev1.Toleration{{Key: DrainKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &slow}}
	case KindSystem:
		return []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	case KindNoSchedule:
		return []corev1.Toleration{{Key: DrainKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	return nil
}

// daemonSet creates (or reads) the DaemonSet; no controller runs, so it
// makes no pod: Workloads binds its pods itself.
func daemonSet(ctx context.Context, client kubernetes.Interface, meta metav1.ObjectMeta) (*appsv1.DaemonSet, error) {
	sel := map[string]string{"app": string(KindAgent)}
	want := &appsv1.DaemonSet{
		ObjectMeta: meta,
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{
					Containers:  []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
					Tolerations: tolerations(KindAgent),
				},
			},
		},
	}
	dsc := client.AppsV1().DaemonSets(meta.Namespace)
	got, err := dsc.Create(ctx, want, createOpts)
	if apierrors.IsAlreadyExists(err) {
		got, err = dsc.Get(ctx, meta.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("seed workloads: daemonset %s: %w", meta.Name, err)
	}
	return got, nil
}

// budget creates the PodDisruptionBudget selecting app=kind and sets its
// status as the disruption controller would, with allowed disruptions.
func budget(ctx context.Context, client kubernetes.Interface, meta metav1.ObjectMeta, kind Kind, allowed int32) error {
	one := intstr.FromInt32(1)
	pdbs := client.PolicyV1().PodDisruptionBudgets(meta.Namespace)
	pdb, err := pdbs.Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: meta,
		Spec: policyv1.PodDisruptionBudgetSpec{
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": string(kind)}},
			MinAvailable: &one,
		},
	}, createOpts)
	if apierrors.IsAlreadyExists(err) {
		pdb, err = pdbs.Get(ctx, meta.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("seed workloads: budget %s: %w", meta.Name, err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{
		ObservedGeneration: pdb.Generation,
		DisruptionsAllowed: allowed,
		CurrentHealthy:     allowed + 1,
		DesiredHealthy:     1,
		ExpectedPods:       allowed + 1,
	}
	if _, err := pdbs.UpdateStatus(ctx, pdb, metav1.UpdateOptions{FieldManager: "nodebatch-seed"}); err != nil {
		return fmt.Errorf("seed workloads: status of budget %s: %w", meta.Name, err)
	}
	return nil
}

// DeleteWorkloads deletes what Workloads created in namespace: pods one by
// one with grace period 0 (no kubelet would ever confirm a graceful
// deletion; one collection delete of 20,000 pods outlasts the server's
// request timeout, its deletions being sequential), the budgets and the
// DaemonSet. The namespace and its ServiceAccount stay: no namespace
// controller runs to finish deleting a namespace.
func DeleteWorkloads(ctx context.Context, client kubernetes.Interface, namespace string) error {
	pods := client.CoreV1().Pods(namespace)
	opts := metav1.ListOptions{Limit: 1000}
	var names []string
	for {
		list, err := pods.List(ctx, opts)
		if err != nil {
			return fmt.Errorf("list seeded pods in %s: %w", namespace, err)
		}
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	zero := int64(0)
	jobs := make(chan string)
	errs := make(chan error, DefaultWorkers)
	var wg sync.WaitGroup
	for range DefaultWorkers {
		wg.Go(func() {
			for name := range jobs {
				err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
				if err != nil && !apierrors.IsNotFound(err) {
					select {
					case errs <- fmt.Errorf("delete seeded pod %s/%s: %w", namespace, name, err):
					default:
					}
				}
			}
		})
	}
	for _, n := range names {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	all := metav1.ListOptions{}
	if err := client.PolicyV1().PodDisruptionBudgets(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, all); err != nil {
		return fmt.Errorf("delete seeded budgets in %s: %w", namespace, err)
	}
	if err := client.AppsV1().DaemonSets(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, all); err != nil {
		return fmt.Errorf("delete seeded daemonsets in %s: %w", namespace, err)
	}
	return nil
}
