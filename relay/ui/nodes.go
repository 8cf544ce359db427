package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/shared/apierror"
)

// listPage is how many nodes one List call asks the API server for; the
// handler pages through the whole set so one call never loads a huge
// response into the API server at once.
const listPage = 500

// Node is one row of the UI's node table.
type Node struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels"`
	Taints        []Taint           `json:"taints"`
	Ready         string            `json:"ready"` // status of the Ready condition: True, False or Unknown
	Unschedulable bool              `json:"unschedulable"`
	Created       string            `json:"created"` // RFC 3339
}

// Taint is a node taint as the UI shows it.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// NodeList is the body of a node list answer.
type NodeList struct {
	Nodes []Node `json:"nodes"`
	Count int    `json:"count"`
}

// NodesHandler answers GET requests with the cluster's nodes (name, labels,
// taints, readiness), sorted by name, optionally filtered by the label
// selector in the "selector" query parameter. It only reads. Mount it at
// /v1/nodes behind the same authentication as the batch API.
func NodesHandler(client kubernetes.Interface) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			apierror.Write(w, apierror.New(apierror.MethodNotAllowed, "use GET"))
			return
		}
		sel := r.URL.Query().Get("selector")
		if _, err := labels.Parse(sel); err != nil {
			apierror.Write(w, apierror.Field(apierror.Invalid, "selector", sel, err.Error(), "%s %q: %s", "selector", sel, err.Error()))
			return
		}
		nodes, err := listNodes(r, client, sel)
		if err != nil {
			apierror.Write(w, apierror.Wrap(apierror.KubernetesUnavailable, err, "%s", err.Error()))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(NodeList{Nodes: nodes, Count: len(nodes)})
	})
}

// listNodes pages through every node matching sel.
func listNodes(r *http.Request, client kubernetes.Interface, sel string) ([]Node, error) {
	out := []Node{}
	opts := metav1.ListOptions{LabelSelector: sel, Limit: listPage}
	for {
		list, err := client.CoreV1().Nodes().List(r.Context(), opts)
		if err != nil {
			return nil, fmt.Errorf("list nodes (selector %q): %w", sel, err)
		}
		for i := range list.Items {
			out = append(out, toNode(&list.Items[i]))
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func toNode(n *corev1.Node) Node {
	out := Node{
		Name:          n.Name,
		Labels:        n.Labels,
		Taints:        []Taint{},
		Ready:         string(corev1.ConditionUnknown),
		Unschedulable: n.Spec.Unschedulable,
		Created:       n.CreationTimestamp.UTC().Format(time.RFC3339),
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for _, t := range n.Spec.Taints {
		out.Taints = append(out.Taints, Taint{Key: t.Key, Value: t.Value, Effect: string(t.Effect)})
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Ready = string(c.Status)
		}
	}
	return out
}
