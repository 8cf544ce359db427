package bench

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Verify checks through the API server that exactly want nodes match
// selector and that each carries bench=value as op (the label, or the taint
// bench=value:NoSchedule). Every run is verified, outside its timing, so a
// row cannot report a change that did not happen.
func Verify(ctx context.Context, client kubernetes.Interface, selector string, op Op, value string, want int) error {
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("verify %s bench=%s: list nodes %s: %w", op, value, selector, err)
	}
	if len(list.Items) != want {
		return fmt.Errorf("verify %s bench=%s: %d nodes match %s, want %d", op, value, len(list.Items), selector, want)
	}
	bad := 0
	first := ""
	for _, n := range list.Items {
		ok := n.Labels["bench"] == value
		if op == OpTaint {
			ok = false
			for _, t := range n.Spec.Taints {
				if t.Key == "bench" && t.Effect == "NoSchedule" && t.Value == value {
					ok = true
				}
			}
		}
		if !ok {
			if bad == 0 {
				first = n.Name
			}
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("verify %s bench=%s: %d of %d nodes lack it (first: %s)", op, value, bad, want, first)
	}
	return nil
}
