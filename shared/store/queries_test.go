package store

import (
	"context"
	"testing"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// offlineClient is a Firestore client that never connects (queries are
// only built and serialized).
func offlineClient(t *testing.T) *firestore.Client {
	t.Helper()
	c, err := firestore.NewClient(context.Background(), "p",
		option.WithEndpoint("127.0.0.1:1"), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatalf("firestore.NewClient() error = %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestApplyBuildsTheDeclaredQuery: a query built by Apply is the one written
// out by hand (what the store built before the declarations existed).
func TestApplyBuildsTheDeclaredQuery(t *testing.T) {
	t.Parallel()
	c := offlineClient(t)
	batches := c.Collection(BatchesCollection).Query
	lanes := c.Doc(BatchPath("b")).Collection(LanesCollection).Query
	nodes := c.Doc(BatchPath("b")).Collection(NodesCollection).Query
	tests := []struct {
		name      string
		got, want firestore.Query
	}{
		{"history by owner and state", QueryHistoryByOwnerState.Apply(batches, "alice", "done"),
			batches.Where("owner", "==", "alice").Where("state", "==", "done").OrderBy("created_at", firestore.Desc).OrderBy(firestore.DocumentID, firestore.Desc)},
		{"open lane", QueryLaneOpen.Apply(lanes, 2, false), lanes.Where("attempt", "==", 2).Where("done", "==", false)},
		{"lanes before", QueryLanesBefore.Apply(lanes, 3), lanes.Where("attempt", "<", 3)},
		{"active of an owner", QueryActiveByOwner.Apply(batches, []string{"pending", "running"}, "alice"),
			batches.Where("state", "in", []string{"pending", "running"}).Where("owner", "==", "alice")},
		{"finished since, by owner", QueryFinishedSinceByOwner.Apply(batches, "alice", 5),
			batches.Where("owner", "==", "alice").Where("finished_at", ">=", 5)},
		{"node results by name", QueryNodesByName.Apply(nodes), nodes.OrderBy(firestore.DocumentID, firestore.Asc)},
	}
	for _, tc := range tests {
		got, err := tc.got.Serialize()
		if err != nil {
			t.Fatalf("%s: Serialize() error = %v", tc.name, err)
		}
		want, err := tc.want.Serialize()
		if err != nil {
			t.Fatalf("%s: Serialize() error = %v", tc.name, err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: Apply built a different query than declared", tc.name)
		}
	}
}

func TestQueriesHaveUniqueNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, q := range Queries() {
		if q.Name == "" || seen[q.Name] {
			t.Errorf("query name %q is empty or declared twice", q.Name)
		}
		seen[q.Name] = true
		if q.Collection == "" {
			t.Errorf("query %q has no collection", q.Name)
		}
	}
}

func TestHistoryQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		owner, state bool
		want         string
	}{
		{false, false, QueryHistory.Name},
		{true, false, QueryHistoryByOwner.Name},
		{false, true, QueryHistoryByState.Name},
		{true, true, QueryHistoryByOwnerState.Name},
	}
	for _, tc := range tests {
		if got := historyQuery(tc.owner, tc.state).Name; got != tc.want {
			t.Errorf("historyQuery(%v, %v) = %q, want %q", tc.owner, tc.state, got, tc.want)
		}
	}
}

func TestNodesWhereQuery(t *testing.T) {
	t.Parallel()
	got := map[string]string{}
	for _, f := range []string{"state", "changed", "position"} {
		if q, ok := nodesWhereQuery(f); ok {
			got[f] = q.Name
		}
	}
	want := map[string]string{"state": QueryNodesByState.Name, "changed": QueryNodesChanged.Name}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodesWhereQuery (-want +got):\n%s", diff)
	}
}

func TestApplyWantsOneValuePerFilter(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("Apply with too few values did not panic")
		}
	}()
	QueryLaneOpen.Apply(offlineClient(t).Collection(LanesCollection).Query, 1)
}
