package runner

import (
	"fmt"

	"github.com/nodebatch/nodebatch/shared/kubeclient"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Impersonating returns a Runner.PatcherFor that patches through pool as
// the user and groups given, with the batch id as the extra
// nodebatch.dev/batch-id; base carries the patcher's settings (its Client
// is replaced). Every client shares the pool's one transport.
func Impersonating(pool *kubeclient.Pool, base nodepatch.Patcher) func(user string, groups []string, batchID string) (Patcher, error) {
	return func(user string, groups []string, batchID string) (Patcher, error) {
		c, err := pool.Client(kubeclient.User{Name: user, Groups: groups}, batchID)
		if err != nil {
			return nil, err
		}
		p := base
		p.Client = c
		return &p, nil
	}
}

// patcher is the patcher for attempt of b: the requester's when PatcherFor
// is set. A batch that records no requester for the attempt is patched as
// nobody: the node fails (permanently) instead.
func (r *Runner) patcher(b *store.BatchDoc, attempt int) (Patcher, error) {
	if r.PatcherFor == nil {
		return r.Patcher, nil
	}
	q, ok := b.RequesterOf(attempt)
	if !ok || q.User == "" {
		return nil, fmt.Errorf("batch %s records no Kubernetes user for attempt %d: nothing is done without one", b.ID, attempt)
	}
	p, err := r.PatcherFor(q.User, q.Groups, b.ID)
	if err != nil {
		return nil, fmt.Errorf("patch as %s: %w", q.User, err)
	}
	return p, nil
}
