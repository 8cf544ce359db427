package batch

import (
	"context"
	"fmt"
	"sync"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Impersonator hands out Kubernetes clients acting as a person
// (shared/kubeclient.Pool: one shared transport).
type Impersonator interface {
	Client(u kubeclient.User, batchID string) (kubernetes.Interface, error)
}

// reviewWorkers bounds the access reviews in flight for one request.
const reviewWorkers = 8

// kubeUser is p as the API server sees them.
func kubeUser(p auth.Principal) kubeclient.User {
	return kubeclient.User{Name: p.KubeUser, Groups: p.KubeGroups}
}

// requester records p as who asked for attempt.
func requester(p auth.Principal, attempt int, at time.Time) store.Requester {
	return store.Requester{Attempt: attempt, Subject: p.Subject, User: p.KubeUser, Groups: p.KubeGroups, At: at}
}

// kubeFor returns the client that acts as p: through Users, impersonating
// p; h.Kube itself only when Users is nil (unit tests with a fake
// clientset). A token that maps to no Kubernetes user gets 403.
func (h *Handler) kubeFor(p auth.Principal) (kubernetes.Interface, *apierror.Error) {
	if h.Users == nil {
		return h.Kube, nil
	}
	if p.KubeUser == "" {
		return nil, apierror.New(apierror.Forbidden,
			"your token maps to no Kubernetes user (%v), so nodebatch cannot act for you on the cluster", auth.ErrNoKubeUser)
	}
	c, err := h.Users.Client(kubeUser(p), "")
	if err != nil {
		return nil, apierror.New(apierror.Forbidden, "cannot act for you on the cluster: %v", err)
	}
	return c, nil
}

// authorizeList returns the client acting as p after Kubernetes said p may
// list nodes (a SelfSubjectAccessReview made while impersonating p), or the
// answer to send: 403 forbidden, or 503 when the review itself failed.
func (h *Handler) authorizeList(ctx context.Context, p auth.Principal) (kubernetes.Interface, *apierror.Error) {
	kube, e := h.kubeFor(p)
	if e != nil {
		return nil, e
	}
	if h.Users == nil {
		return kube, nil
	}
	if e := h.review(ctx, kube, p, "list", ""); e != nil {
		return nil, e
	}
	return kube, nil
}

// authorizeWrite checks, before anything is written, that Kubernetes lets
// p patch every named node (every write nodebatch sends is a merge patch,
// taints too, so patch is the one verb it needs). One review on nodes as a
// whole first; if that is refused, one per node (a user whose rights are
// limited to some nodes by name gets exactly those), refused at the first
// node refused.
func (h *Handler) authorizeWrite(ctx context.Context, kube kubernetes.Interface, p auth.Principal, names []string) *apierror.Error {
	if h.Users == nil {
		return nil
	}
	for _, verb := range []string{"patch"} {
		ok, _, err := access(ctx, kube, verb, "")
		if err != nil {
			return h.reviewFailed(err)
		}
		if ok {
			continue
		}
		if e := h.reviewEach(ctx, kube, p, verb, names); e != nil {
			return e
		}
	}
	return nil
}

// reviewEach reviews verb on every node of names, reviewWorkers at a time.
// The first answer that is not "allowed" wins; the reviews still in flight
// are cancelled and their errors ignored.
func (h *Handler) reviewEach(ctx context.Context, kube kubernetes.Interface, p auth.Principal, verb string, names []string) *apierror.Error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var first *apierror.Error
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(reviewWorkers, len(names)) {
		wg.Go(func() {
			for name := range work {
				if e := h.review(ctx, kube, p, verb, name); e != nil {
					mu.Lock()
					if first == nil {
						first = e
						cancel()
					}
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, n := range names {
		select {
		case work <- n:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// Not every node was reviewed (the request ended): refuse.
		return apierror.New(apierror.Unavailable, "the request ended before Kubernetes answered")
	}
	return first
}

// review asks whether p may verb nodes (name "" = all nodes).
func (h *Handler) review(ctx context.Context, kube kubernetes.Interface, p auth.Principal, verb, name string) *apierror.Error {
	ok, reason, err := access(ctx, kube, verb, name)
	if err != nil {
		// Never allowed by default: a review that did not answer (the
		// request's context ended included) refuses.
		if ctx.Err() != nil {
			return apierror.New(apierror.Unavailable, "the request ended before Kubernetes answered")
		}
		return h.reviewFailed(err)
	}
	if ok {
		return nil
	}
	what := "nodes"
	if name != "" {
		what = fmt.Sprintf("nodes (node %q)", name)
	}
	msg := fmt.Sprintf("Kubernetes does not allow user %q", p.KubeUser)
	if len(p.KubeGroups) > 0 {
		msg += fmt.Sprintf(" (groups %q)", p.KubeGroups)
	}
	msg += fmt.Sprintf(" to %s %s", verb, what)
	if reason != "" {
		msg += ": " + reason
	}
	h.logger().Info("batch refused by Kubernetes RBAC", "subject", p.Subject, "user", p.KubeUser, "verb", verb, "node", name)
	return apierror.New(apierror.Forbidden, "%s", msg)
}

func (h *Handler) reviewFailed(err error) *apierror.Error {
	h.logger().Error("access review", "error", err)
	return apierror.New(apierror.Unavailable, "asking Kubernetes what you may do failed; try again")
}

// access makes one SelfSubjectAccessReview through kube (acting as the
// caller, so it needs no right of its own).
func access(ctx context.Context, kube kubernetes.Interface, verb, name string) (bool, string, error) {
	r, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: verb, Version: "v1", Resource: "nodes", Name: name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("review %s nodes %q: %w", verb, name, err)
	}
	return r.Status.Allowed && !r.Status.Denied, r.Status.Reason, nil
}

// previewPatcher is the patcher preview's server-side dry run uses: acting
// as p when the runner impersonates, else the runner's own.
func (h *Handler) previewPatcher(p auth.Principal) runner.Patcher {
	if h.Runner == nil {
		return nil
	}
	if h.Runner.PatcherFor != nil && h.Users != nil {
		pt, err := h.Runner.PatcherFor(p.KubeUser, p.KubeGroups, "")
		if err != nil {
			return nil
		}
		return pt
	}
	return h.Runner.Patcher
}

// authorizeSets is authorizeWrite for per-node sets (retry, revert), as p.
func (h *Handler) authorizeSets(ctx context.Context, p auth.Principal, names []string, sets map[string]change.Set) *apierror.Error {
	kube, e := h.kubeFor(p)
	if e != nil {
		return e
	}
	return h.authorizeWrite(ctx, kube, p, names)
}
