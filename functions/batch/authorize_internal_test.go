package batch

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
)

// fakeUsers hands out one fake clientset for everyone.
type fakeUsers struct{ c kubernetes.Interface }

func (f fakeUsers) Client(kubeclient.User, string) (kubernetes.Interface, error) { return f.c, nil }

// reviewing returns a fake clientset answering access reviews with decide.
func reviewing(decide func(verb, name string) (bool, error)) *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		ok, err := decide(ra.Verb, ra.Name)
		if err != nil {
			return true, nil, err
		}
		r.Status.Allowed = ok
		return true, r, nil
	})
	return c
}

func TestAuthorizeWrite(t *testing.T) {
	bob := auth.Principal{Subject: "bob@example.com", KubeUser: "bob@example.com"}
	names := []string{"n0", "n1", "n2", "n3"}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name       string
		ctx        context.Context
		decide     func(verb, name string) (bool, error)
		wantStatus int    // 0: allowed
		wantIn     string // in the message
	}{
		{name: "patch on nodes as a whole", decide: func(v, n string) (bool, error) { return v == "patch" && n == "", nil }},
		{name: "taints need patch only (every write is a merge patch)", decide: func(v, n string) (bool, error) { return v == "patch", nil }},
		{name: "no patch: refused", decide: func(v, n string) (bool, error) { return v == "update", nil },
			wantStatus: http.StatusForbidden, wantIn: `"bob@example.com" to patch nodes (node "n`}, // reviews run in parallel: any node may be named first
		{name: "by name: every node allowed", decide: func(v, n string) (bool, error) { return n != "", nil }},
		{name: "by name: one node refused", decide: func(v, n string) (bool, error) { return n != "" && n != "n2", nil },
			wantStatus: http.StatusForbidden, wantIn: `to patch nodes (node "n2")`},
		{name: "review fails: refused", decide: func(string, string) (bool, error) { return false, errors.New("boom") },
			wantStatus: http.StatusServiceUnavailable},
		{name: "request gone: refused, not allowed", ctx: cancelled, decide: func(v, n string) (bool, error) {
			if n == "" {
				return false, nil
			}
			return false, context.Canceled
		}, wantStatus: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			c := reviewing(tt.decide)
			h := &Handler{Users: fakeUsers{c}}
			e := h.authorizeWrite(ctx, c, bob, names)
			switch {
			case tt.wantStatus == 0 && e != nil:
				t.Fatalf("authorizeWrite = %v, want allowed", e)
			case tt.wantStatus != 0 && (e == nil || e.Status() != tt.wantStatus):
				t.Fatalf("authorizeWrite = %v, want status %d", e, tt.wantStatus)
			case e != nil && !strings.Contains(e.Message, tt.wantIn):
				t.Errorf("message %q, want it to contain %q", e.Message, tt.wantIn)
			}
		})
	}
}

func TestNoKubeUserForbidden(t *testing.T) {
	h := &Handler{Users: fakeUsers{fake.NewClientset()}}
	_, e := h.authorizeList(context.Background(), auth.Principal{Subject: "https://issuer#sub"})
	if e == nil || e.Status() != http.StatusForbidden || e.Code() != "forbidden" {
		t.Errorf("authorizeList(no Kubernetes user) = %v, want 403 forbidden", e)
	}
}
