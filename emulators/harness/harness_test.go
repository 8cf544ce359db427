package harness_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

func TestNodesCreatePatchAndValidation(t *testing.T) {
	env := harness.Start(t)
	ctx := t.Context()
	_, names := env.SeedNodes(t, 3)
	nodes := env.Kube(t).CoreV1().Nodes()

	patched, err := nodes.Patch(ctx, names[0], types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"team":"payments"}}}`), metav1.PatchOptions{FieldManager: "test"})
	if err != nil {
		t.Fatalf("merge-patch label: %v", err)
	}
	if got := patched.Labels["team"]; got != "payments" {
		t.Errorf("label team after patch = %q, want %q", got, "payments")
	}
	if got := patched.Labels["kubernetes.io/hostname"]; got != names[0] {
		t.Errorf("merge patch dropped hostname label: got %q, want %q", got, names[0])
	}

	_, err = nodes.Patch(ctx, names[1], types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"bad key!":"x"}}}`), metav1.PatchOptions{})
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		t.Fatalf("patch with invalid label key: err = %v, want an API status error", err)
	}
	if code := status.Status().Code; code != http.StatusUnprocessableEntity {
		t.Errorf("invalid label key: status code = %d, want 422 (%v)", code, err)
	}
	var fields []string
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			fields = append(fields, c.Field)
		}
	}
	if diff := cmp.Diff([]string{"metadata.labels"}, fields); diff != "" {
		t.Errorf("invalid label key: causes' fields mismatch (-want +got):\n%s\nerr: %v", diff, err)
	}

	got, err := nodes.Get(ctx, names[1], metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	if _, ok := got.Labels["bad key!"]; ok {
		t.Errorf("rejected patch changed node %s: labels %v", names[1], got.Labels)
	}
}

// TestPatcherIdentityIsNarrow: nodebatch's own identity can do nothing to
// nodes by itself; impersonating alice it can do what alice may, and the
// constrained impersonation role stops it from using her for anything but
// reading and patching nodes (not updating them) and her own access
// review.
func TestPatcherIdentityIsNarrow(t *testing.T) {
	env := harness.Start(t)
	ctx := t.Context()
	_, names := env.SeedNodes(t, 1)
	self, err := kubernetes.NewForConfig(env.PatcherConfig)
	if err != nil {
		t.Fatalf("patcher clientset: %v", err)
	}
	alice := env.As(t, harness.Alice, "b-narrow")
	admin := env.As(t, "nodebatch-admin", "")

	allowed := []struct {
		name string
		call func() error
	}{
		{"get node as alice", func() error { _, err := alice.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{}); return err }},
		{"list nodes as alice", func() error { _, err := alice.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); return err }},
		{"patch node as alice", func() error {
			_, err := alice.CoreV1().Nodes().Patch(ctx, names[0], types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"patched-by":"alice"}}}`), metav1.PatchOptions{})
			return err
		}},
		// The impact preview of a NoExecute taint lists pods as the user.
		{"list pods as alice", func() error { _, err := alice.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); return err }},
	}
	for _, tc := range allowed {
		if err := tc.call(); err != nil {
			t.Errorf("%s: %v, want allowed", tc.name, err)
		}
	}

	forbidden := []struct {
		name string
		call func() error
	}{
		{"get node as itself", func() error { _, err := self.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{}); return err }},
		{"list nodes as itself", func() error { _, err := self.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); return err }},
		{"patch node as itself", func() error {
			_, err := self.CoreV1().Nodes().Patch(ctx, names[0], types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"list pods as itself", func() error { _, err := self.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); return err }},
		// alice may list pods and budgets (the impact preview), nothing more.
		{"get a pod as alice", func() error {
			_, err := alice.CoreV1().Pods("default").Get(ctx, "any", metav1.GetOptions{})
			return err
		}},
		{"delete pods as alice", func() error {
			return alice.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}},
		{"list secrets as alice", func() error { _, err := alice.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); return err }},
		// Every nodebatch write is a merge patch: the role lets it
		// impersonate for no update, although alice may update.
		{"update node as alice", func() error {
			n, err := alice.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "example.com/drain", Effect: corev1.TaintEffectNoSchedule})
			_, err = alice.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		}},
		{"delete node as alice", func() error { return alice.CoreV1().Nodes().Delete(ctx, names[0], metav1.DeleteOptions{}) }},
		{"create node as alice", func() error {
			_, err := alice.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: names[0] + "-x"}}, metav1.CreateOptions{})
			return err
		}},
		{"list secrets as the admin user (no system:masters group)", func() error {
			_, err := admin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"impersonate system:masters", func() error {
			c, err := env.Pool(t).Client(kubeclient.User{Name: harness.Alice, Groups: []string{"system:masters"}}, "")
			if err != nil {
				return err
			}
			_, err = c.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
			return err
		}},
		{"impersonate a service account", func() error {
			c, err := env.Pool(t).Client(kubeclient.User{Name: "system:serviceaccount:kube-system:default"}, "")
			if err != nil {
				return err
			}
			_, err = c.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
			return err
		}},
	}
	for _, tc := range forbidden {
		if err := tc.call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: err = %v, want 403 Forbidden", tc.name, err)
		}
	}
}

// TestPeople: the local users' rights, the team-labels policy, and the
// audit log's record of nodebatch impersonating a user with a batch id.
func TestPeople(t *testing.T) {
	env := harness.Start(t)
	ctx := t.Context()
	_, names := env.SeedNodes(t, 1)
	node := names[0]
	env.WaitPolicy(t, node)
	patch := func(c kubernetes.Interface, key string) error {
		_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"`+key+`":"v"}}}`), metav1.PatchOptions{})
		return err
	}
	if err := patch(env.As(t, harness.Alice, "b-alice"), "example.com/by-alice"); err != nil {
		t.Errorf("alice patch: %v, want allowed", err)
	}
	if err := patch(env.As(t, harness.Bob, ""), "example.com/by-bob"); !apierrors.IsForbidden(err) {
		t.Errorf("bob patch: %v, want 403", err)
	}
	if _, err := env.As(t, harness.Bob, "").CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("bob list: %v, want allowed", err)
	}
	carol := env.As(t, harness.Carol, "")
	if err := patch(carol, harness.CarolPrefix+"owner"); err != nil {
		t.Errorf("carol patch of %sowner: %v, want allowed", harness.CarolPrefix, err)
	}
	err := patch(carol, "example.com/by-carol")
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "only labels under team.example.com/") {
		t.Errorf("carol patch of example.com/by-carol: %v, want 403 with the policy's message", err)
	}

	evs := env.Audit(t, 1, func(ev harness.AuditEvent) bool {
		return ev.Verb == "patch" && ev.ObjectRef != nil && ev.ObjectRef.Name == node &&
			ev.ImpersonatedUser != nil && ev.ImpersonatedUser.Username == harness.Alice
	})
	if len(evs) != 1 {
		t.Fatalf("audit events of alice's patch = %v, want 1", evs)
	}
	ev := evs[0]
	if ev.User.Username != "nodebatch-patch" || ev.ResponseStatus == nil || ev.ResponseStatus.Code != 200 {
		t.Errorf("audit event = %s, want by nodebatch-patch, 200", ev)
	}
	if diff := cmp.Diff([]string{"b-alice"}, ev.ImpersonatedUser.Extra["nodebatch.dev/batch-id"]); diff != "" {
		t.Errorf("audit event %s: batch id extra (-want +got):\n%s", ev, diff)
	}
}

func TestFirestoreWriteQueryListen(t *testing.T) {
	env := harness.Start(t)
	ctx := t.Context()
	fs := env.Firestore(t, env.ProjectID(t))
	col := fs.Collection("batches")

	// Listen to one document before it exists; the first snapshot says so.
	it := col.Doc("b1").Snapshots(ctx)
	defer it.Stop()
	snap, err := it.Next()
	if err != nil {
		t.Fatalf("first snapshot: %v", err)
	}
	if snap.Exists() {
		t.Fatalf("first snapshot of b1 exists before any write")
	}

	docs := map[string]map[string]any{
		"b1": {"owner": "alice", "total": 10},
		"b2": {"owner": "bob", "total": 20},
		"b3": {"owner": "alice", "total": 30},
	}
	for id, data := range docs {
		if _, err := col.Doc(id).Set(ctx, data); err != nil {
			t.Fatalf("set %s: %v", id, err)
		}
	}

	for {
		snap, err = it.Next()
		if err != nil {
			t.Fatalf("next snapshot of b1: %v", err)
		}
		if snap.Exists() {
			break
		}
	}
	if diff := cmp.Diff(map[string]any{"owner": "alice", "total": int64(10)}, snap.Data()); diff != "" {
		t.Errorf("snapshot of b1 mismatch (-want +got):\n%s", diff)
	}

	var got []string
	q := col.Where("owner", "==", "alice").OrderBy("total", firestore.Desc)
	docsIt := q.Documents(ctx)
	defer docsIt.Stop()
	for {
		d, err := docsIt.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("query owner==alice: %v", err)
		}
		got = append(got, d.Ref.ID)
	}
	if diff := cmp.Diff([]string{"b3", "b1"}, got); diff != "" {
		t.Errorf("query owner==alice order by total desc (-want +got):\n%s", diff)
	}

	// An update reaches the listener.
	if _, err := col.Doc("b1").Update(ctx, []firestore.Update{{Path: "total", Value: 11}}); err != nil {
		t.Fatalf("update b1: %v", err)
	}
	snap, err = it.Next()
	if err != nil {
		t.Fatalf("snapshot after update: %v", err)
	}
	if got, err := snap.DataAt("total"); err != nil || got != int64(11) {
		t.Errorf("listener saw total = %v (err %v), want 11", got, err)
	}
}

func TestProjectsAreIsolated(t *testing.T) {
	env := harness.Start(t)
	ctx := t.Context()
	p1, p2 := env.ProjectID(t), env.ProjectID(t)
	if p1 == p2 {
		t.Fatalf("ProjectID returned %q twice", p1)
	}
	if _, err := env.Firestore(t, p1).Collection("c").Doc("d").Set(ctx, map[string]any{"v": 1}); err != nil {
		t.Fatalf("set in %s: %v", p1, err)
	}
	_, err := env.Firestore(t, p2).Collection("c").Doc("d").Get(ctx)
	if err == nil {
		t.Errorf("document written in project %s is visible in project %s", p1, p2)
	}
}

func TestPubSubRoundTrip(t *testing.T) {
	env := harness.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	project := env.ProjectID(t)
	ps := env.PubSub(t, project)
	topic := "projects/" + project + "/topics/greetings"
	sub := "projects/" + project + "/subscriptions/greetings-sub"
	if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic}); err != nil {
		t.Fatalf("create subscription: %v", err)
	}
	pub := ps.Publisher(topic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("hello")}).Get(ctx); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got := make(chan string, 1)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	err := ps.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		select {
		case got <- string(m.Data):
		default:
		}
		rcancel()
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	select {
	case data := <-got:
		if data != "hello" {
			t.Errorf("received %q, want %q", data, "hello")
		}
	default:
		t.Errorf("receive returned without a message")
	}
}
