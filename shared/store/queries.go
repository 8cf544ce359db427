package store

import (
	"fmt"

	"cloud.google.com/go/firestore"
)

// Query declares the shape of one Firestore query the code runs: its
// collection, the fields it filters on and how, and its explicit order.
// Every query of the repository is built from one of the declarations
// below (Apply), so this file is the list infra/hclcheck reads to derive the
// composite indexes the queries need and compare them with
// infra/firestore.tf: an index no query needs only costs writes, and a
// query without its index fails in production (the emulator needs none).
type Query struct {
	// Name identifies the query in messages.
	Name string
	// Collection is the collection ID the query runs on (a subcollection
	// by its own ID: "nodes" for batches/{id}/nodes).
	Collection string
	// Filters are applied in this order; Apply takes one value per filter.
	Filters []Filter
	// Order is the explicit order, applied after the filters.
	Order []Order
}

// Filter is one field condition of a Query.
type Filter struct {
	Field string
	Op    string // a Firestore operator: "==", "in", ">=", ...
}

// Order is one order-by clause of a Query.
type Order struct {
	Field string // firestore.DocumentID for the document name
	Dir   firestore.Direction
}

// Apply adds q's filters, with values in the order of q.Filters, and q's
// order to base (a collection's query). A value count that does not match
// the declaration is a programming error and panics.
func (q Query) Apply(base firestore.Query, values ...any) firestore.Query {
	if len(values) != len(q.Filters) {
		panic(fmt.Sprintf("store: query %s takes %d values, got %d", q.Name, len(q.Filters), len(values)))
	}
	for i, f := range q.Filters {
		base = base.Where(f.Field, f.Op, values[i])
	}
	for _, o := range q.Order {
		base = base.OrderBy(o.Field, o.Dir)
	}
	return base
}

// The queries on batches: the history list (newest first, optionally by
// owner and/or state) and the relay's owner feed (active batches, batches
// finished since shortly before the feed started).
var (
	QueryHistory             = Query{Name: "history", Collection: BatchesCollection, Order: historyOrder}
	QueryHistoryByOwner      = Query{Name: "history by owner", Collection: BatchesCollection, Filters: []Filter{{"owner", "=="}}, Order: historyOrder}
	QueryHistoryByState      = Query{Name: "history by state", Collection: BatchesCollection, Filters: []Filter{{"state", "=="}}, Order: historyOrder}
	QueryHistoryByOwnerState = Query{Name: "history by owner and state", Collection: BatchesCollection, Filters: []Filter{{"owner", "=="}, {"state", "=="}}, Order: historyOrder}

	QueryActive               = Query{Name: "active batches", Collection: BatchesCollection, Filters: []Filter{{"state", "in"}}}
	QueryActiveByOwner        = Query{Name: "active batches of an owner", Collection: BatchesCollection, Filters: []Filter{{"state", "in"}, {"owner", "=="}}}
	QueryFinishedSince        = Query{Name: "batches finished since", Collection: BatchesCollection, Filters: []Filter{{"finished_at", ">="}}}
	QueryFinishedSinceByOwner = Query{Name: "batches of an owner finished since", Collection: BatchesCollection, Filters: []Filter{{"owner", "=="}, {"finished_at", ">="}}}
)

// The queries on a batch's node results and lanes.
var (
	QueryNodesByName  = Query{Name: "node results by name", Collection: NodesCollection, Order: []Order{{firestore.DocumentID, firestore.Asc}}}
	QueryNodesByState = Query{Name: "node results by state", Collection: NodesCollection, Filters: []Filter{{"state", "=="}}}
	QueryNodesChanged = Query{Name: "node results by changed", Collection: NodesCollection, Filters: []Filter{{"changed", "=="}}}

	QueryLanes          = Query{Name: "lanes", Collection: LanesCollection}
	QueryLanesOfAttempt = Query{Name: "lanes of an attempt", Collection: LanesCollection, Filters: []Filter{{"attempt", "=="}}}
	QueryLaneOpen       = Query{Name: "open lane of an attempt", Collection: LanesCollection, Filters: []Filter{{"attempt", "=="}, {"done", "=="}}}
	QueryLanesBefore    = Query{Name: "lanes of earlier attempts", Collection: LanesCollection, Filters: []Filter{{"attempt", "<"}}}
)

var historyOrder = []Order{{"created_at", firestore.Desc}, {firestore.DocumentID, firestore.Desc}}

// Queries returns every declared query.
func Queries() []Query {
	return []Query{
		QueryHistory, QueryHistoryByOwner, QueryHistoryByState, QueryHistoryByOwnerState,
		QueryActive, QueryActiveByOwner, QueryFinishedSince, QueryFinishedSinceByOwner,
		QueryNodesByName, QueryNodesByState, QueryNodesChanged,
		QueryLanes, QueryLanesOfAttempt, QueryLaneOpen, QueryLanesBefore,
	}
}

// historyQuery is the history query for the filters a HistoryQuery sets.
func historyQuery(byOwner, byState bool) Query {
	switch {
	case byOwner && byState:
		return QueryHistoryByOwnerState
	case byOwner:
		return QueryHistoryByOwner
	case byState:
		return QueryHistoryByState
	default:
		return QueryHistory
	}
}

// nodesWhereQuery is the declared node-result query filtering on field alone.
func nodesWhereQuery(field string) (Query, bool) {
	for _, q := range []Query{QueryNodesByState, QueryNodesChanged} {
		if len(q.Filters) == 1 && q.Filters[0].Field == field && q.Filters[0].Op == "==" {
			return q, true
		}
	}
	return Query{}, false
}
