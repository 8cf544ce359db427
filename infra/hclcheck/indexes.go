package hclcheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Query is the shape of a Firestore query, as the code declares it (the
// caller converts its declarations, e.g. shared/store.Queries()).
type Query struct {
	Name       string
	Collection string
	Filters    []QueryFilter
	Order      []IndexField // explicit order-by clauses
}

// QueryFilter is one field condition of a Query.
type QueryFilter struct {
	Field string
	Op    string // "==", "in", "<", ">=", "!=", ...
}

// IndexField is one field of an index or order-by clause.
type IndexField struct {
	Field string
	Desc  bool
}

// Index is a composite index: collection and fields in index order.
type Index struct {
	Resource   string // address, for declared indexes
	Collection string
	Scope      string // COLLECTION or COLLECTION_GROUP
	Fields     []IndexField
	Range      hcl.Range
}

// String formats ix as Firestore's console does: collection(field ORDER, ...).
func (ix Index) String() string {
	var fs []string
	for _, f := range ix.Fields {
		d := "ASCENDING"
		if f.Desc {
			d = "DESCENDING"
		}
		fs = append(fs, f.Field+" "+d)
	}
	return fmt.Sprintf("%s(%s)", ix.Collection, strings.Join(fs, ", "))
}

// documentID is the field path of a document's name.
const documentID = "__name__"

// NeededIndex returns the composite index q needs, or false when the
// automatic single-field indexes serve it. Firestore's rules
// (firebase.google.com/docs/firestore/query-data/index-overview): a query on
// one field, and a query of equality filters only (== and in), are served
// by single-field indexes (merged); any other combination needs a composite
// index holding the equality fields (in any order) and then the order-by
// fields with their directions, where a range or != filter on a field not
// explicitly ordered orders by that field first, ascending. The document
// name ordered last is implicit in every index.
func NeededIndex(q Query) (Index, bool) {
	var eq, order []IndexField
	ranged := map[string]bool{}
	for _, f := range q.Filters {
		switch f.Op {
		case "==", "in":
			if !slices.ContainsFunc(eq, func(x IndexField) bool { return x.Field == f.Field }) {
				eq = append(eq, IndexField{Field: f.Field})
			}
		default:
			ranged[f.Field] = true
		}
	}
	explicit := map[string]bool{}
	for _, o := range q.Order {
		explicit[o.Field] = true
	}
	for _, f := range q.Filters {
		if ranged[f.Field] && !explicit[f.Field] && !slices.ContainsFunc(order, func(x IndexField) bool { return x.Field == f.Field }) {
			order = append(order, IndexField{Field: f.Field})
		}
	}
	order = append(order, q.Order...)
	for len(order) > 0 && order[len(order)-1].Field == documentID {
		order = order[:len(order)-1]
	}
	fields := map[string]bool{}
	for _, f := range append(slices.Clone(eq), order...) {
		fields[f.Field] = true
	}
	if len(fields) <= 1 || len(order) == 0 {
		return Index{}, false
	}
	return Index{Collection: q.Collection, Scope: "COLLECTION", Fields: append(eq, order...)}, true
}

// serves reports whether declared index d is the index need asks for: same
// collection and scope, the same equality fields first (any order, all
// ascending), then exactly the same ordered fields.
func serves(d, need Index, eqCount int) bool {
	if d.Collection != need.Collection || d.Scope != need.Scope || len(d.Fields) != len(need.Fields) {
		return false
	}
	var want, got []string
	for i := 0; i < eqCount; i++ {
		want = append(want, need.Fields[i].Field)
		if d.Fields[i].Desc {
			return false
		}
		got = append(got, d.Fields[i].Field)
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(want, got) {
		return false
	}
	return slices.Equal(d.Fields[eqCount:], need.Fields[eqCount:])
}

// FirestoreIndexes returns the google_firestore_index resources. Their
// collection, query scope and fields must be literals.
func (m *Module) FirestoreIndexes() ([]Index, []Problem) {
	var out []Index
	var ps []Problem
	for _, b := range m.Resources("google_firestore_index") {
		ix := Index{Resource: b.Address(), Scope: "COLLECTION", Range: b.Range}
		lit := func(name string) (string, bool) {
			a, ok := b.Body.Attributes[name]
			if !ok {
				return "", false
			}
			s, ok := literalString(a.Expr)
			if !ok {
				ps = append(ps, Problem{a.SrcRange, fmt.Sprintf("%s: %s must be a literal so it can be checked against the queries", b.Address(), name)})
			}
			return s, ok
		}
		ix.Collection, _ = lit("collection")
		if s, ok := lit("query_scope"); ok {
			ix.Scope = s
		}
		for _, f := range blocksOf(b.Body, "fields") {
			path, ok := f.Body.Attributes["field_path"]
			fp, ok2 := "", false
			if ok {
				fp, ok2 = literalString(path.Expr)
			}
			if !ok2 {
				ps = append(ps, Problem{f.DefRange(), fmt.Sprintf("%s: fields.field_path must be a literal", b.Address())})
				continue
			}
			desc := false
			if o, ok := f.Body.Attributes["order"]; ok {
				s, _ := literalString(o.Expr)
				desc = s == "DESCENDING"
			}
			if fp == documentID && len(ix.Fields) > 0 {
				continue // implicit last field
			}
			ix.Fields = append(ix.Fields, IndexField{Field: fp, Desc: desc})
		}
		out = append(out, ix)
	}
	return out, ps
}

// CheckIndexes reports every query whose composite index is not declared
// and every declared index that no query needs.
func (m *Module) CheckIndexes(queries []Query) []Problem {
	declared, ps := m.FirestoreIndexes()
	used := make([]bool, len(declared))
	for _, q := range queries {
		need, ok := NeededIndex(q)
		if !ok {
			continue
		}
		found := false
		for i, d := range declared {
			if serves(d, need, countEq(q)) {
				used[i], found = true, true
			}
		}
		if !found {
			ps = append(ps, Problem{Msg: fmt.Sprintf("query %q needs the composite index %s, which infra/ does not declare (google_firestore_index)", q.Name, need)})
		}
	}
	for i, d := range declared {
		if !used[i] {
			ps = append(ps, Problem{d.Range, fmt.Sprintf("%s: index %s serves no declared query; it only costs writes (remove it, or declare the query that needs it)", d.Resource, d)})
		}
	}
	return ps
}

// countEq is the number of distinct equality fields of q, which come first
// in its needed index.
func countEq(q Query) int {
	seen := map[string]bool{}
	for _, f := range q.Filters {
		if f.Op == "==" || f.Op == "in" {
			seen[f.Field] = true
		}
	}
	return len(seen)
}
