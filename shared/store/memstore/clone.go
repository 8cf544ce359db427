package memstore

import (
	"maps"
	"slices"

	"github.com/nodebatch/nodebatch/shared/store"
)

// The clones below copy documents in and out of the store, so a caller
// that changes a document it wrote or read changes nothing stored, as
// with Firestore, where every read decodes a fresh copy.

// cloneBatch copies b as Firestore stores it: the fields tagged
// firestore:"-" (Names, IdempotencyFingerprint) are not kept.
func cloneBatch(b *store.BatchDoc) store.BatchDoc {
	c := *b
	c.Names, c.IdempotencyFingerprint = nil, ""
	c.Changes.Labels = slices.Clone(b.Changes.Labels)
	c.Changes.Taints = slices.Clone(b.Changes.Taints)
	c.Nodes = slices.Clone(b.Nodes)
	c.Cancel = clonePtr(b.Cancel)
	c.LastRefusal = clonePtr(b.LastRefusal)
	c.Timing = clonePtr(b.Timing)
	c.Requesters = cloneRequesters(b.Requesters)
	c.Impact = cloneImpact(b.Impact)
	return c
}

func cloneImpact(im *store.Impact) *store.Impact {
	if im == nil {
		return nil
	}
	c := *im
	c.Budgets = slices.Clone(im.Budgets)
	return &c
}

func cloneRequesters(rs []store.Requester) []store.Requester {
	if rs == nil {
		return nil
	}
	out := make([]store.Requester, len(rs))
	for i, r := range rs {
		r.Groups = slices.Clone(r.Groups)
		out[i] = r
	}
	return out
}

func cloneLane(l *store.LaneDoc) store.LaneDoc {
	c := *l
	c.DoneBits = slices.Clone(l.DoneBits)
	c.Failures = slices.Clone(l.Failures)
	c.LatencyHist = maps.Clone(l.LatencyHist)
	c.Pending = clonePending(l.Pending)
	return c
}

func clonePending(p map[string]store.Intent) map[string]store.Intent {
	if p == nil {
		return nil
	}
	out := make(map[string]store.Intent, len(p))
	for k, in := range p {
		out[k] = cloneIntent(in)
	}
	return out
}

func cloneIntent(in store.Intent) store.Intent {
	in.Before, in.After = cloneValues(in.Before), cloneValues(in.After)
	return in
}

func cloneNode(n *store.NodeDoc) store.NodeDoc {
	c := *n
	c.Before, c.After = cloneValues(n.Before), cloneValues(n.After)
	c.Unknown = slices.Clone(n.Unknown)
	if n.History != nil {
		c.History = make([]store.PriorResult, len(n.History))
		for i, h := range n.History {
			h.Before, h.After = cloneValues(h.Before), cloneValues(h.After)
			h.Unknown = slices.Clone(h.Unknown)
			c.History[i] = h
		}
	}
	return c
}

// cloneValues copies a before/after map, values included (nil: absent).
func cloneValues(m map[string]*string) map[string]*string {
	if m == nil {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = clonePtr(v)
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
