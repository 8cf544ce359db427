// Package impact is what a taint change would do to the workloads of the
// nodes it touches: the pods a NoExecute taint evicts, now or after their
// tolerationSeconds, decided as the taint manager of kube-controller-manager
// decides (pkg/controller/tainteviction), and the PodDisruptionBudgets those
// evictions exceed. Taint-based eviction deletes pods directly and never
// asks the eviction API, so a budget does not protect against it: the
// preview is the only warning a user gets.
//
// It reads pods and budgets through a kubernetes.Interface it is given (the
// caller's, impersonating the user, so the listing is what they may see)
// and writes nothing.
package impact

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/nodebatch/nodebatch/shared/change"
)

// Defaults for Options.
const (
	DefaultPageSize = 500
	// DefaultPerNodeLists is how many hit nodes are listed one by one (a
	// spec.nodeName field selector each) before one listing of every pod in
	// the cluster is cheaper.
	DefaultPerNodeLists = 16
)

// Options tune Compute; the zero value is the defaults.
type Options struct {
	// PageSize is the limit of each list call; 0: DefaultPageSize.
	PageSize int64
	// PerNodeLists: with at most this many hit nodes, pods are listed per
	// node; above it, across the cluster. 0: DefaultPerNodeLists, <0: always
	// across the cluster.
	PerNodeLists int
	// ComparisonOperators enables the Lt/Gt toleration operators, as the
	// TaintTolerationComparisonOperators feature gate does (alpha in 1.37,
	// off by default: such a toleration then tolerates nothing).
	ComparisonOperators bool
	// Now stamps the taints Apply adds; zero: time.Now().
	Now time.Time
}

// Node is a resolved node as listed before the change.
type Node struct {
	Name   string
	Taints []corev1.Taint
}

// Impact is what the change would do to the pods of its nodes.
type Impact struct {
	// NoExecute is true when the change adds or updates a NoExecute taint
	// on at least one node; only then can it evict anything.
	NoExecute bool `json:"no_execute"`
	// Summary is one sentence a person reads before confirming.
	Summary string `json:"summary"`
	// TaintedNodes is how many nodes get a new or updated NoExecute taint.
	TaintedNodes int `json:"tainted_nodes"`
	// NodesWithEvictions is how many of those lose at least one pod.
	NodesWithEvictions int `json:"nodes_with_evictions"`
	// Evictions counts the pods evicted, now or later; EvictNow those
	// evicted at once (no toleration, or tolerationSeconds <= 0).
	Evictions     int `json:"evictions"`
	EvictNow      int `json:"evict_now"`
	DaemonSetPods int `json:"daemonset_pods"`
	StaticPods    int `json:"static_pods"`
	// Budgets lists every PodDisruptionBudget with at least one evicted
	// pod, by namespace and name; BudgetsViolated counts those whose
	// evictions exceed their status.disruptionsAllowed.
	Budgets         []Budget `json:"budgets"`
	BudgetsViolated int      `json:"budgets_violated"`
	// Nodes lists, by node name, the nodes that lose pods and those pods
	// (by namespace and name); see Limit.
	Nodes []NodeImpact `json:"nodes"`
	// Truncated is true when Limit dropped pods from Nodes (the counts
	// above still count them).
	Truncated bool `json:"truncated,omitempty"`
	// Notes say what a taint change that evicts nothing does instead.
	Notes []string `json:"notes,omitempty"`
}

// NodeImpact is one node's evicted pods.
type NodeImpact struct {
	Node string `json:"node"`
	Pods []Pod  `json:"pods"`
}

// Pod is one pod the change evicts.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// AfterSeconds is when the taint manager deletes it: 0 at once, else
	// the smallest tolerationSeconds of the tolerations it matched.
	AfterSeconds int64 `json:"after_seconds"`
	// DaemonSet: its controller is a DaemonSet, which will not run it on
	// the node again while the taint stays.
	DaemonSet bool `json:"daemonset,omitempty"`
	// Static: a kubelet's mirror pod; deleting it does not stop the static
	// pod, the kubelet recreates the mirror.
	Static bool `json:"static,omitempty"`
	// Budgets names the budgets ("namespace/name") that select it.
	Budgets []string `json:"budgets,omitempty"`
}

// Budget is a PodDisruptionBudget the evictions reach.
type Budget struct {
	Namespace          string `json:"namespace"`
	Name               string `json:"name"`
	DisruptionsAllowed int32  `json:"disruptions_allowed"`
	Evictions          int    `json:"evictions"`
	// Violated: Evictions > DisruptionsAllowed. Taint eviction goes ahead
	// anyway.
	Violated bool `json:"violated"`
}

// Compute lists the pods on the nodes where set adds or updates a NoExecute
// taint, and the budgets of the pods it would evict, through kube. nodes are
// the batch's resolved nodes with their taints as listed. A change that adds
// no NoExecute taint anywhere lists nothing.
func Compute(ctx context.Context, kube kubernetes.Interface, set change.Set, nodes []Node, opts Options) (*Impact, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.PerNodeLists == 0 {
		opts.PerNodeLists = DefaultPerNodeLists
	}
	im := &Impact{Budgets: []Budget{}, Nodes: []NodeImpact{}}
	// The node's NoExecute taints after the change, for each node where
	// the change adds or updates one: the taint manager then re-decides
	// every pod of the node against all of them.
	hit := map[string][]corev1.Taint{}
	for _, n := range nodes {
		_, after, res := set.ApplyAt(opts.Now, nil, n.Taints)
		if res.Skipped || !addsNoExecute(n.Taints, after) {
			continue
		}
		hit[n.Name] = noExecute(after)
	}
	im.TaintedNodes = len(hit)
	im.NoExecute = len(hit) > 0
	im.Notes = notes(set, im.NoExecute)
	if !im.NoExecute {
		im.Summary = "would evict no pods: the change adds or updates no NoExecute taint"
		return im, nil
	}
	log := klog.FromContext(ctx)
	byNode := map[string][]Pod{}
	var evicted []evictedPod
	// Decided page by page: only what an evicted pod needs is kept, never
	// the cluster's pods.
	err := listPods(ctx, kube, hit, opts, func(p *corev1.Pod) {
		taints, ok := hit[p.Spec.NodeName]
		if !ok {
			return
		}
		after, evict := Evicts(log, taints, p.Spec.Tolerations, opts.ComparisonOperators)
		if !evict {
			return
		}
		ep := Pod{Namespace: p.Namespace, Name: p.Name, AfterSeconds: int64(after / time.Second), DaemonSet: daemonSet(p), Static: static(p)}
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], ep)
		evicted = append(evicted, evictedPod{namespace: p.Namespace, name: p.Name, labels: p.Labels})
	})
	if err != nil {
		return nil, err
	}
	if len(evicted) > 0 {
		if err := budgets(ctx, kube, im, byNode, evicted, opts.PageSize); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byNode)) {
		ps := byNode[name]
		slices.SortFunc(ps, func(a, b Pod) int {
			return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
		})
		im.Nodes = append(im.Nodes, NodeImpact{Node: name, Pods: ps})
		for _, p := range ps {
			im.Evictions++
			if p.AfterSeconds == 0 {
				im.EvictNow++
			}
			if p.DaemonSet {
				im.DaemonSetPods++
			}
			if p.Static {
				im.StaticPods++
			}
		}
	}
	im.NodesWithEvictions = len(im.Nodes)
	im.Summary = summary(im)
	return im, nil
}

// Limit keeps at most n pods in im.Nodes (in node order), marking im
// Truncated when it drops any; the counts are unchanged.
func (im *Impact) Limit(n int) {
	kept := 0
	for i := range im.Nodes {
		room := n - kept
		if room <= 0 {
			im.Nodes = im.Nodes[:i]
			im.Truncated = true
			return
		}
		if len(im.Nodes[i].Pods) > room {
			im.Nodes[i].Pods = im.Nodes[i].Pods[:room]
			im.Nodes = im.Nodes[:i+1]
			im.Truncated = true
			return
		}
		kept += len(im.Nodes[i].Pods)
	}
}

// Evicts decides one pod as the taint manager does (processPodOnNode): with
// taints the node's NoExecute taints, a pod not tolerating every one is
// deleted at once; one that does is deleted after the smallest
// tolerationSeconds among the first toleration matching each taint (at
// once if one is <= 0), and never when none of those sets it.
func Evicts(log klog.Logger, taints []corev1.Taint, tolerations []corev1.Toleration, comparisonOperators bool) (after time.Duration, evict bool) {
	if len(taints) == 0 {
		return 0, false
	}
	// v1helper.GetMatchingTolerations, over the exported helper.
	var used []corev1.Toleration
	for i := range taints {
		j := slices.IndexFunc(tolerations, func(t corev1.Toleration) bool {
			return t.ToleratesTaint(log, &taints[i], comparisonOperators)
		})
		if j < 0 {
			return 0, true
		}
		used = append(used, tolerations[j])
	}
	// getMinTolerationTime.
	least := int64(math.MaxInt64)
	for _, t := range used {
		if t.TolerationSeconds == nil {
			continue
		}
		if *t.TolerationSeconds <= 0 {
			return 0, true
		}
		least = min(least, *t.TolerationSeconds)
	}
	if least == math.MaxInt64 {
		return 0, false
	}
	return time.Duration(least) * time.Second, true
}

// addsNoExecute reports whether after holds a NoExecute taint that before
// does not hold with the same value.
func addsNoExecute(before, after []corev1.Taint) bool {
	for _, a := range after {
		if a.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !slices.ContainsFunc(before, func(b corev1.Taint) bool {
			return b.Key == a.Key && b.Effect == a.Effect && b.Value == a.Value
		}) {
			return true
		}
	}
	return false
}

func noExecute(ts []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range ts {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

// notes explains the taints of set that evict nothing.
func notes(set change.Set, noExecute bool) []string {
	var out []string
	for _, t := range set.Taints {
		if t.Remove {
			continue
		}
		switch t.Effect {
		case corev1.TaintEffectNoSchedule:
			out = append(out, fmt.Sprintf("taint %s evicts nothing: NoSchedule keeps new pods that do not tolerate it off the node, running pods stay", t))
		case corev1.TaintEffectPreferNoSchedule:
			out = append(out, fmt.Sprintf("taint %s evicts nothing: PreferNoSchedule only steers the scheduler away, running pods stay", t))
		case corev1.TaintEffectNoExecute:
			if !noExecute {
				out = append(out, fmt.Sprintf("taint %s evicts nothing: no node gets it new or with a new value", t))
			}
		}
	}
	return out
}

func summary(im *Impact) string {
	s := fmt.Sprintf("would evict %d %s on %d %s", im.Evictions, plural(im.Evictions, "pod", "pods"), im.NodesWithEvictions, plural(im.NodesWithEvictions, "node", "nodes"))
	if later := im.Evictions - im.EvictNow; later > 0 {
		s += fmt.Sprintf(" (%d at once, %d after their tolerationSeconds)", im.EvictNow, later)
	}
	if im.BudgetsViolated > 0 {
		s += fmt.Sprintf("; %d %s would be violated: taint eviction ignores budgets", im.BudgetsViolated, plural(im.BudgetsViolated, "budget", "budgets"))
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// evictedPod is what matching an evicted pod to budgets needs.
type evictedPod struct {
	namespace, name string
	labels          map[string]string
}

// listPods calls visit with each pod bound to a hit node: listed per node
// when they are few, else every bound pod of the cluster, page by page.
func listPods(ctx context.Context, kube kubernetes.Interface, hit map[string][]corev1.Taint, opts Options, visit func(*corev1.Pod)) error {
	if opts.PerNodeLists > 0 && len(hit) <= opts.PerNodeLists {
		for _, name := range slices.Sorted(maps.Keys(hit)) {
			sel := fields.OneTermEqualSelector("spec.nodeName", name).String()
			err := pagePods(ctx, kube, sel, opts.PageSize, func(p *corev1.Pod) {
				// A server that ignores the selector must not count a pod twice.
				if p.Spec.NodeName == name {
					visit(p)
				}
			})
			if err != nil {
				return fmt.Errorf("list pods on node %q: %w", name, err)
			}
		}
		return nil
	}
	if err := pagePods(ctx, kube, "spec.nodeName!=", opts.PageSize, visit); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	return nil
}

func pagePods(ctx context.Context, kube kubernetes.Interface, fieldSelector string, limit int64, visit func(*corev1.Pod)) error {
	opts := metav1.ListOptions{FieldSelector: fieldSelector, Limit: limit}
	for {
		list, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range list.Items {
			visit(&list.Items[i])
		}
		if list.Continue == "" {
			return nil
		}
		opts.Continue = list.Continue
	}
}

// budgets lists every budget, matches the evicted pods to them, fills
// im.Budgets and names each pod's budgets in byNode.
func budgets(ctx context.Context, kube kubernetes.Interface, im *Impact, byNode map[string][]Pod, evicted []evictedPod, limit int64) error {
	type matcher struct {
		pdb *policyv1.PodDisruptionBudget
		sel labels.Selector
	}
	byNS := map[string][]matcher{}
	opts := metav1.ListOptions{Limit: limit}
	var all []policyv1.PodDisruptionBudget
	for {
		list, err := kube.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("list pod disruption budgets: %w", err)
		}
		all = append(all, list.Items...)
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	for i := range all {
		pdb := &all[i]
		// policy/v1: a nil selector selects no pod, an empty one every pod
		// of the namespace (LabelSelectorAsSelector gives exactly that).
		if pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			continue // the API server refuses such a selector; nothing to match
		}
		byNS[pdb.Namespace] = append(byNS[pdb.Namespace], matcher{pdb, sel})
	}
	hits := map[*policyv1.PodDisruptionBudget]int{}
	names := map[string][]string{} // namespace/pod → budgets
	for _, p := range evicted {
		for _, m := range byNS[p.namespace] {
			if m.sel.Matches(labels.Set(p.labels)) {
				hits[m.pdb]++
				key := p.namespace + "/" + p.name
				names[key] = append(names[key], m.pdb.Namespace+"/"+m.pdb.Name)
			}
		}
	}
	for pdb, n := range hits {
		b := Budget{Namespace: pdb.Namespace, Name: pdb.Name, DisruptionsAllowed: pdb.Status.DisruptionsAllowed, Evictions: n}
		b.Violated = int32(min(n, math.MaxInt32)) > pdb.Status.DisruptionsAllowed
		if b.Violated {
			im.BudgetsViolated++
		}
		im.Budgets = append(im.Budgets, b)
	}
	slices.SortFunc(im.Budgets, func(a, b Budget) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for node, ps := range byNode {
		for i := range ps {
			ps[i].Budgets = names[ps[i].Namespace+"/"+ps[i].Name]
		}
		byNode[node] = ps
	}
	return nil
}

func daemonSet(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	return c != nil && c.Kind == "DaemonSet" && strings.HasPrefix(c.APIVersion, "apps/")
}

func static(p *corev1.Pod) bool {
	_, ok := p.Annotations[corev1.MirrorPodAnnotationKey]
	return ok
}
