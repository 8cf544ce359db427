package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
)

// The local stack's people as Kubernetes sees them (infra/k8s/local): the
// development issuer's tokens map to the verified email.
const (
	Alice = "alice@example.com" // get/list/watch/patch/update nodes
	Bob   = "bob@example.com"   // get/list/watch nodes only
	Carol = "carol@example.com" // like alice, but the policy allows only team.example.com/ labels
	// CarolPrefix is the only label prefix the policy lets carol change.
	CarolPrefix = "team.example.com/"
)

// Pool returns impersonating clients over nodebatch's own identity, the way
// the functions build them.
func (e *Env) Pool(t testing.TB) *kubeclient.Pool {
	t.Helper()
	p, err := kubeclient.New(e.PatcherConfig)
	if err != nil {
		t.Fatalf("harness: kubeclient pool: %v", err)
	}
	return p
}

// As returns a clientset acting as user (no groups) for batchID, through
// nodebatch's own identity.
func (e *Env) As(t testing.TB, user, batchID string) kubernetes.Interface {
	t.Helper()
	c, err := e.Pool(t).Client(kubeclient.User{Name: user}, batchID)
	if err != nil {
		t.Fatalf("harness: client as %s: %v", user, err)
	}
	return c
}

// WaitPolicy waits until the API server enforces the local team-labels
// policy (a ValidatingAdmissionPolicy takes effect a moment after it is
// created): a dry-run label patch of node as carol outside her prefix is
// refused.
func (e *Env) WaitPolicy(t testing.TB, node string) {
	t.Helper()
	c := e.As(t, Carol, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	patch := []byte(`{"metadata":{"labels":{"nodebatch.dev/policy-probe":"x"}}}`)
	wait.For(ctx, t, "the team-labels policy to be enforced", func() error {
		_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return wait.True(apierrors.IsForbidden(err) || apierrors.IsInvalid(err), "carol's dry-run label patch answered %v", err)
	})
}

// AuditEvent is the part of an API server audit event the tests read.
type AuditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string              `json:"username"`
		Groups   []string            `json:"groups"`
		Extra    map[string][]string `json:"extra"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource string `json:"resource"`
		Name     string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Stage string `json:"stage"`
}

// Audit returns the audit events (stage ResponseComplete) for which keep
// is true, waiting up to a minute until want of them are in the log (the
// API server writes an event after it answered).
func (e *Env) Audit(t testing.TB, want int, keep func(AuditEvent) bool) []AuditEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got []AuditEvent
	// Polling a file the API server appends to.
	err := wait.Until(ctx, fmt.Sprintf("%d matching audit events", want), func() error {
		b, err := os.ReadFile(e.AuditLog)
		if err != nil {
			t.Fatalf("harness: read audit log: %v", err)
		}
		got = got[:0]
		for line := range strings.Lines(string(b)) {
			var ev AuditEvent
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Stage != "ResponseComplete" {
				continue
			}
			if keep(ev) {
				got = append(got, ev)
			}
		}
		return wait.True(len(got) >= want, "%d of them", len(got))
	})
	if err != nil {
		t.Errorf("harness: %v", err)
	}
	return got
}

// String renders an event for failure messages.
func (ev AuditEvent) String() string {
	imp := "-"
	if ev.ImpersonatedUser != nil {
		imp = fmt.Sprintf("%s %v %v", ev.ImpersonatedUser.Username, ev.ImpersonatedUser.Groups, ev.ImpersonatedUser.Extra)
	}
	code := 0
	if ev.ResponseStatus != nil {
		code = ev.ResponseStatus.Code
	}
	return fmt.Sprintf("%s %s by %s as %s → %d", ev.Verb, ev.RequestURI, ev.User.Username, imp, code)
}
