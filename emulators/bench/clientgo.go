package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// FieldManager marks the bench's own writes.
const FieldManager = "nodebatch-bench"

// Unthrottled returns a copy of cfg with client-side rate limiting off, so
// a plain client-go baseline is limited by the API server, not by
// client-go's default 5 QPS.
func Unthrottled(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0 // QPS < 0: no rate limiter at all
	return c
}

// ClientGo changes nodes with plain client-go calls, the way a careful
// script would: labels as one JSON merge patch per node; taints (one list
// in the API) as get, change, update with the read resourceVersion, retried
// on conflict.
type ClientGo struct {
	Client kubernetes.Interface
	Names  []string
}

// Run sets bench=value on every node as op with concurrency workers and
// returns the wall time. Concurrency 1 is the sequential loop.
func (c ClientGo) Run(ctx context.Context, op Op, value string, concurrency int) (time.Duration, error) {
	if concurrency < 1 {
		return 0, fmt.Errorf("client-go %s: concurrency %d < 1", op, concurrency)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan string)
	var wg sync.WaitGroup
	begin := time.Now()
	for range min(concurrency, len(c.Names)) {
		wg.Go(func() {
			for name := range jobs {
				if err := c.one(ctx, op, name, value); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
feed:
	for _, name := range c.Names {
		select {
		case jobs <- name:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	wall := time.Since(begin)
	if err := context.Cause(ctx); err != nil {
		return 0, fmt.Errorf("client-go %s at c=%d: %w", op, concurrency, err)
	}
	return wall, nil
}

func (c ClientGo) one(ctx context.Context, op Op, name, value string) error {
	if op == OpTaint {
		return c.taint(ctx, name, value)
	}
	return c.label(ctx, name, value)
}

func (c ClientGo) label(ctx context.Context, name, value string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{"bench": value}}})
	if err != nil {
		return fmt.Errorf("encode label patch: %w", err)
	}
	_, err = c.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("patch node %q: %w", name, err)
	}
	return nil
}

func (c ClientGo) taint(ctx context.Context, name, value string) error {
	nodes := c.Client.CoreV1().Nodes()
	for attempt := 0; ; attempt++ {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %q: %w", name, err)
		}
		n.Spec.Taints = withTaint(n.Spec.Taints, corev1.Taint{Key: "bench", Value: value, Effect: corev1.TaintEffectNoSchedule})
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{FieldManager: FieldManager})
		if apierrors.IsConflict(err) && attempt < 10 {
			continue
		}
		if err != nil {
			return fmt.Errorf("update taints of node %q: %w", name, err)
		}
		return nil
	}
}

// withTaint returns taints with t added, or replacing the taint of the same
// key and effect.
func withTaint(taints []corev1.Taint, t corev1.Taint) []corev1.Taint {
	for i := range taints {
		if taints[i].Key == t.Key && taints[i].Effect == t.Effect {
			taints[i] = t
			return taints
		}
	}
	return append(taints, t)
}
