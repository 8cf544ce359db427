package batch_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Authorization is Kubernetes': every call made for a person impersonates
// them (docs/design.md "Who may change which node").

// TestAliceAudited: alice's batch succeeds, the batch records her as its
// requester, and the API server's audit log shows every node's patch sent
// by nodebatch's identity impersonating alice with the batch id.
func TestAliceAudited(t *testing.T) {
	p := newPipeline(t, options{})
	prefix, names := p.env.SeedNodes(t, 4)
	alice := p.token(t, "alice")
	c := p.submit(t, alice, map[string]any{"labels": []string{"example.com/audited=yes"}, "selector": selector(prefix), "concurrency": 2})
	if st := p.wait(t, alice, c.BatchID); st.State != "succeeded" {
		t.Fatalf("alice's batch = %s %v, want succeeded", st.State, st.Failures)
	}
	b, err := p.store.Batch(context.Background(), c.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	got := b.Requesters
	for i := range got {
		got[i].At = time.Time{}
	}
	if diff := cmp.Diff([]store.Requester{{Attempt: 1, Subject: harness.Alice, User: harness.Alice}}, got); diff != "" {
		t.Errorf("requesters (-want +got):\n%s", diff)
	}
	isNode := map[string]bool{}
	for _, n := range names {
		isNode[n] = true
	}
	evs := p.env.Audit(t, len(names), func(ev harness.AuditEvent) bool {
		return ev.Verb == "patch" && ev.ObjectRef != nil && isNode[ev.ObjectRef.Name]
	})
	for _, ev := range evs {
		if ev.User.Username != "nodebatch-patch" || ev.ImpersonatedUser == nil || ev.ImpersonatedUser.Username != harness.Alice ||
			!cmp.Equal(ev.ImpersonatedUser.Extra["nodebatch.dev/batch-id"], []string{c.BatchID}) {
			t.Errorf("audit event %s, want nodebatch-patch impersonating %s with batch id %s", ev, harness.Alice, c.BatchID)
		}
	}
}

// TestBobForbidden: bob may list nodes but not patch them, so every way to
// start a batch answers 403 forbidden naming him, the verb and the
// resource, and nothing is written or published.
func TestBobForbidden(t *testing.T) {
	p := newPipeline(t, options{noDeliverer: true, inlineMax: 3})
	prefix, names := p.env.SeedNodes(t, 2)
	bob := p.token(t, "bob")
	tests := []struct {
		name, path string
		body       map[string]any
	}{
		{"submit", "/v1/batches", map[string]any{"labels": []string{"x=y"}, "selector": selector(prefix)}},
		{"submit inline", "/v1/batches", map[string]any{"labels": []string{"x=y"}, "nodes": names[:1]}},
		{"submit all", "/v1/batches", map[string]any{"taints": []string{"x:NoExecute"}, "all": true}},
		{"preview", "/v1/batches:preview", map[string]any{"labels": []string{"x=y"}, "nodes": names}},
		{"dry run", "/v1/batches", map[string]any{"labels": []string{"x=y"}, "nodes": names, "dry_run": true}},
		{"seed labels", "/api/v1/nodes/labels/batch-add", map[string]any{"nodes": names, "labels": map[string]string{"x": "y"}}},
		{"seed labels progress", "/api/v1/nodes/labels/batch-add-progress", map[string]any{"nodes": names, "labels": map[string]string{"x": "y"}}},
		{"seed taints", "/api/v1/nodes/taints/batch-add", map[string]any{"nodes": names, "taints": []map[string]string{{"key": "x", "effect": "NoSchedule"}}}},
		{"seed taints progress", "/api/v1/nodes/taints/batch-add-progress", map[string]any{"nodes": names, "taints": []map[string]string{{"key": "x", "effect": "NoSchedule"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			code, raw := p.do(t, http.MethodPost, tt.path, bob, tt.body, nil)
			if err := jsonUnmarshal(raw, &e); err != nil || code != http.StatusForbidden || e.Error.Code != "forbidden" {
				t.Fatalf("POST %s as bob = %d %s, want 403 forbidden", tt.path, code, raw)
			}
			for _, want := range []string{`"bob@example.com"`, "patch nodes"} {
				if !strings.Contains(e.Error.Message, want) {
					t.Errorf("message %q does not name %s", e.Error.Message, want)
				}
			}
		})
	}
	var page batch.HistoryPage
	if code, raw := p.do(t, http.MethodGet, "/v1/batches", bob, nil, &page); code != http.StatusOK || len(page.Batches) != 0 {
		t.Errorf("bob's history = %d %s, want 200 and no batch", code, raw)
	}
	assertNothingPublished(t, p)
}

// TestCarolPolicy: the admission policy lets carol set labels under
// team.example.com/ only. Her allowed key succeeds; any other key fails
// per node, permanently, with the policy's message: no redelivery, no dead
// letter.
func TestCarolPolicy(t *testing.T) {
	p := newPipeline(t, options{})
	prefix, names := p.env.SeedNodes(t, 4)
	p.env.WaitPolicy(t, names[0])
	carol := p.token(t, "carol")
	ok := p.submit(t, carol, map[string]any{"labels": []string{harness.CarolPrefix + "owner=carol"}, "selector": selector(prefix)})
	if st := p.wait(t, carol, ok.BatchID); st.State != "succeeded" {
		t.Errorf("carol's %s batch = %s %v, want succeeded", harness.CarolPrefix, st.State, st.Failures)
	}
	before := p.push.Stats()
	bad := p.submit(t, carol, map[string]any{"labels": []string{"example.com/owner=carol"}, "selector": selector(prefix)})
	st := p.wait(t, carol, bad.BatchID)
	wantCounts(t, st, map[string]int{"failed": len(names)})
	for _, r := range st.Results {
		if r.State != "failed" || !strings.Contains(r.Reason, "may change only labels under team.example.com/, not example.com/owner") {
			t.Errorf("node %s = %s %q, want failed with the policy's message", r.Node, r.State, r.Reason)
		}
	}
	after := p.push.Stats()
	if after.Retried != before.Retried || after.DeadLettered != before.DeadLettered {
		t.Errorf("deliverer stats %+v → %+v: a refusal by admission was retried or dead-lettered", before, after)
	}
}

// waitBound waits until the API server itself lets user (as c) list nodes
// and patch node: RBAC decides from an informer, so a binding just
// created may not count yet.
func waitBound(ctx context.Context, t *testing.T, c kubernetes.Interface, user, node string) {
	t.Helper()
	wait.For(ctx, t, user+" allowed to list nodes and patch "+node+" after the bind", func() error {
		if _, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return fmt.Errorf("list answered %v", err)
		}
		_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return wait.True(err == nil, "a dry-run patch answered %v", err)
	})
}

// TestRightsRevokedMidBatch: a user's patch right is removed while their
// batch is held at the gate; the nodes not yet patched fail permanently
// with the API server's reason, and nothing is dead-lettered.
func TestRightsRevokedMidBatch(t *testing.T) {
	const before, lanes = 4, 2
	gate := newGate(t, before)
	p := newPipeline(t, options{proxy: kubeproxy.Options{Gate: gate}})
	prefix, names := p.env.SeedNodes(t, 12)
	admin := p.env.Kube(t)
	ctx := context.Background()
	const user = "victor@example.com"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-revoke-" + prefix},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "nodebatch-node-editor"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("bind %s: %v", user, err)
	}
	t.Cleanup(func() { _ = admin.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}) })
	victor := p.env.As(t, user, "")
	waitBound(ctx, t, victor, user, names[0])
	tok := p.token(t, "victor")
	c := p.submit(t, tok, map[string]any{"labels": []string{"example.com/revoked=no"}, "selector": selector(prefix), "concurrency": lanes})
	waitHeld(t, gate, lanes)
	if err := admin.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("unbind %s: %v", user, err)
	}
	// RBAC decides from an informer: wait until the API server itself says
	// victor may no longer patch, then let the batch go on.
	wait.For(ctx, t, user+" forbidden to patch after the unbind", func() error {
		_, err := victor.CoreV1().Nodes().Patch(ctx, names[0], types.MergePatchType, []byte(`{}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return wait.True(apierrors.IsForbidden(err), "a dry-run patch answered %v", err)
	})
	statsBefore := p.push.Stats()
	gate.Open()
	st := p.wait(t, tok, c.BatchID)
	var ok, forbidden int
	for _, r := range st.Results {
		switch {
		case r.State == "succeeded":
			ok++
		case r.State == "failed" && strings.Contains(r.Reason, "forbidden") && strings.Contains(r.Reason, user):
			forbidden++
		default:
			t.Errorf("node %s = %s %q, want succeeded (before the revoke) or failed forbidden", r.Node, r.State, r.Reason)
		}
	}
	// The held patches waited at the proxy, in front of the API server, so
	// they reach it after the revoke and are refused too: exactly the ones
	// let through before the gate closed succeed.
	if ok != before || forbidden != len(names)-before {
		t.Errorf("succeeded %d, failed forbidden %d; want %d and %d", ok, forbidden, before, len(names)-before)
	}
	if s := p.push.Stats(); s.DeadLettered != statsBefore.DeadLettered {
		t.Errorf("dead-lettered %d → %d, want none", statsBefore.DeadLettered, s.DeadLettered)
	}
}

// TestRightsByNodeName: a user allowed to patch only some nodes by name
// may change exactly those; a selector reaching any other node is refused
// as a whole, naming it, before anything is written.
func TestRightsByNodeName(t *testing.T) {
	p := newPipeline(t, options{inlineMax: 5})
	prefix, names := p.env.SeedNodes(t, 4)
	admin := p.env.Kube(t)
	ctx := context.Background()
	const user = "wendy@example.com"
	name := "test-by-name-" + prefix
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"patch", "update"}, ResourceNames: names[:2]},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}) })
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{}) })
	waitBound(ctx, t, p.env.As(t, user, ""), user, names[1])
	tok := p.token(t, "wendy")

	var st status
	code, raw := p.do(t, http.MethodPost, "/v1/batches", tok, map[string]any{"labels": []string{"example.com/mine=yes"}, "nodes": names[:2]}, &st)
	if code != http.StatusOK || st.State != "succeeded" {
		t.Errorf("wendy's batch on her two nodes = %d %s, want 200 succeeded", code, raw)
	}
	code, raw = p.do(t, http.MethodPost, "/v1/batches", tok, map[string]any{"labels": []string{"example.com/mine=yes"}, "selector": selector(prefix)}, nil)
	if code != http.StatusForbidden || !strings.Contains(string(raw), `to patch nodes (node \"`+prefix) ||
		(!strings.Contains(string(raw), names[2]) && !strings.Contains(string(raw), names[3])) {
		t.Errorf("wendy's selector over 4 nodes = %d %s, want 403 naming %s or %s", code, raw, names[2], names[3])
	}
	for _, n := range names[2:] {
		node, err := admin.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := node.Labels["example.com/mine"]; ok {
			t.Errorf("node %s got the label of a refused batch", n)
		}
	}
}

// TestRetryRunsAsRequester: a retry runs as the person who asks for it and
// the batch records them. carol's batch fails on every node (the policy);
// bob, an app admin whom Kubernetes does not let patch nodes, is refused
// the retry (nothing changes); root, an admin who may, retries it and
// attempt 2 succeeds as root.
func TestRetryRunsAsRequester(t *testing.T) {
	p := newPipeline(t, options{})
	prefix, names := p.env.SeedNodes(t, 3)
	p.env.WaitPolicy(t, names[0])
	carol := p.token(t, "carol")
	c := p.submit(t, carol, map[string]any{"labels": []string{"example.com/retried=yes"}, "selector": selector(prefix)})
	if st := p.wait(t, carol, c.BatchID); st.State != "failed" || st.Counts["failed"] != len(names) {
		t.Fatalf("carol's batch = %s %v, want failed on every node", st.State, st.Counts)
	}
	bobAdmin := p.token(t, "bob", "admin")
	code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":retry", bobAdmin, nil, nil)
	if code != http.StatusForbidden || !strings.Contains(string(raw), `\"bob@example.com\" to patch nodes`) {
		t.Errorf("retry by bob (app admin, Kubernetes viewer) = %d %s, want 403 forbidden naming him", code, raw)
	}
	if b, err := p.store.Batch(context.Background(), c.BatchID); err != nil || b.Attempt != 1 {
		t.Fatalf("after bob's refused retry: batch %+v, %v; want still attempt 1", b, err)
	}
	root := p.token(t, "root", "admin")
	var r batch.Retried
	if code, raw := p.do(t, http.MethodPost, "/v1/batches/"+c.BatchID+":retry", root, nil, &r); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("retry by root = %d %s, want accepted", code, raw)
	}
	if st := p.wait(t, root, c.BatchID); st.State != "succeeded" {
		t.Errorf("after root's retry: %s %v, want succeeded", st.State, st.Failures)
	}
	b, err := p.store.Batch(context.Background(), c.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	var who []string
	for _, q := range b.Requesters {
		who = append(who, fmt.Sprintf("%d:%s", q.Attempt, q.User))
	}
	if diff := cmp.Diff([]string{"1:" + harness.Carol, "2:root@example.com"}, who); diff != "" {
		t.Errorf("requesters (-want +got):\n%s", diff)
	}
	isNode := map[string]bool{}
	for _, n := range names {
		isNode[n] = true
	}
	evs := p.env.Audit(t, len(names), func(ev harness.AuditEvent) bool {
		return ev.Verb == "patch" && ev.ObjectRef != nil && isNode[ev.ObjectRef.Name] && ev.ResponseStatus != nil && ev.ResponseStatus.Code == 200 &&
			!strings.Contains(ev.RequestURI, "dryRun") // WaitPolicy's probes
	})
	for _, ev := range evs {
		if ev.ImpersonatedUser == nil || ev.ImpersonatedUser.Username != "root@example.com" {
			t.Errorf("successful patch %s, want it impersonating root@example.com", ev)
		}
	}
}
