// Package memstore is an in-memory store of batches with the semantics of
// the Firestore one (shared/store): the same preconditions, the same
// errors, the same fields written by each call. It is for unit tests only
// (the handlers' and the runner's logic without the local stack); nothing
// in the product wires it. shared/store/storetest is the conformance suite
// both implementations pass.
//
// What it does not model: Firestore's truncation of times to microseconds
// (tests use times at microsecond precision), its 1 MiB document limit,
// lost commit answers, and contention.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Store holds batches in memory. The zero value is not ready: use New.
// It is safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	last    time.Time // the latest update time handed out
	batches map[string]*batchEntry
	idem    map[string]store.IdempotencyDoc
}

// batchEntry is a batch document with its subcollections.
type batchEntry struct {
	doc     store.BatchDoc
	updated time.Time
	lanes   map[string]*laneEntry     // by store.LaneID
	nodes   map[string]store.NodeDoc  // by node name
	names   map[string]store.NamesDoc // by store.NamesID
}

type laneEntry struct {
	doc     store.LaneDoc
	updated time.Time
}

// New returns an empty store.
func New() *Store {
	return &Store{batches: map[string]*batchEntry{}, idem: map[string]store.IdempotencyDoc{}}
}

// tick returns a fresh update time, later than every one before (two
// writes never share one, as the preconditions need). Caller holds mu.
func (s *Store) tick() time.Time {
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.last) {
		now = s.last.Add(time.Microsecond)
	}
	s.last = now
	return now
}

// entry returns batch id, creating its subcollections' maps on a
// missing batch when create is set (Firestore lets documents under a
// missing parent exist: names are written before their batch).
func (s *Store) entry(id string, create bool) *batchEntry {
	e := s.batches[id]
	if e == nil && create {
		e = &batchEntry{}
		s.batches[id] = e
	}
	if e != nil && e.lanes == nil {
		e.lanes, e.nodes, e.names = map[string]*laneEntry{}, map[string]store.NodeDoc{}, map[string]store.NamesDoc{}
	}
	return e
}

// batch returns the existing batch id (its document written), or nil.
func (s *Store) batch(id string) *batchEntry {
	if e := s.entry(id, false); e != nil && !e.updated.IsZero() {
		return e
	}
	return nil
}

// Create writes a new batch, its lanes and its idempotency key at once
// (see store.Store.Create).
func (s *Store) Create(ctx context.Context, b *store.BatchDoc, lanes []store.LaneDoc) error {
	if len(lanes) > store.MaxCommitLanes {
		return fmt.Errorf("create batch %s: %d lanes exceed one commit", b.ID, len(lanes))
	}
	if err := s.prepareNames(ctx, b); err != nil {
		return fmt.Errorf("create batch %s: %w", b.ID, err)
	}
	b.Impact.Bound()
	s.mu.Lock()
	defer s.mu.Unlock()
	var idemID string
	if b.IdempotencyKey != "" {
		idemID = store.IdempotencyID(b.Owner, b.IdempotencyKey)
		if _, ok := s.idem[idemID]; ok {
			return fmt.Errorf("create batch %s: %w", b.ID, store.ErrExists)
		}
	}
	if s.batch(b.ID) != nil {
		return fmt.Errorf("create batch %s: %w", b.ID, store.ErrExists)
	}
	if idemID != "" {
		s.idem[idemID] = store.IdempotencyDoc{BatchID: b.ID, Owner: b.Owner, Key: b.IdempotencyKey, Fingerprint: b.IdempotencyFingerprint, CreatedAt: b.CreatedAt}
	}
	s.put(b, lanes)
	return nil
}

// put writes batch b and its lanes. Caller holds mu.
func (s *Store) put(b *store.BatchDoc, lanes []store.LaneDoc) {
	e := s.entry(b.ID, true)
	now := s.tick()
	e.doc, e.updated = cloneBatch(b), now
	for i := range lanes {
		e.lanes[store.LaneID(lanes[i].Attempt, lanes[i].Lane)] = &laneEntry{doc: cloneLane(&lanes[i]), updated: now}
	}
}

// prepareNames is store.Store's: b.Names become attempt 1's names
// documents, b is marked Named, and an explicit list too long to keep in
// the batch document is dropped from it.
func (s *Store) prepareNames(ctx context.Context, b *store.BatchDoc) error {
	if len(b.Nodes) > store.MaxListedNodes {
		b.Nodes = nil
	}
	if len(b.Names) == 0 {
		return nil
	}
	if err := s.WriteNames(ctx, b.ID, 1, b.Names); err != nil {
		return err
	}
	b.Named = true
	return nil
}

// WriteNames stores names as attempt's names documents of batch id.
func (s *Store) WriteNames(ctx context.Context, id string, attempt int, names []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write node names of %s attempt %d: %w", id, attempt, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry(id, true)
	for c := 0; c*store.NamesPerChunk < len(names); c++ {
		part := names[c*store.NamesPerChunk : min(len(names), (c+1)*store.NamesPerChunk)]
		e.names[store.NamesID(attempt, c)] = store.NamesDoc{Attempt: attempt, Chunk: c, Names: slices.Clone(part)}
	}
	return nil
}

// BatchForKey returns the batch id recorded for owner's key (see
// store.Store.BatchForKey).
func (s *Store) BatchForKey(ctx context.Context, owner, key, fingerprint string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.idem[store.IdempotencyID(owner, key)]
	if !ok {
		return "", fmt.Errorf("idempotency key of %q: %w", owner, store.ErrNotFound)
	}
	if d.Fingerprint != "" && d.Fingerprint != fingerprint {
		return d.BatchID, fmt.Errorf("idempotency key of %q (batch %s): %w", owner, d.BatchID, store.ErrIdempotencyMismatch)
	}
	return d.BatchID, nil
}

// Batch reads a batch document.
func (s *Store) Batch(ctx context.Context, id string) (*store.BatchDoc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.batch(id)
	if e == nil {
		return nil, fmt.Errorf("get batch %s: %w", id, store.ErrNotFound)
	}
	b := cloneBatch(&e.doc)
	return &b, nil
}

// Fail moves a non-final batch to failed with a cancel (see
// store.Store.Fail).
func (s *Store) Fail(ctx context.Context, id, reason string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.batch(id)
	if e == nil {
		return fmt.Errorf("fail batch %s: %w", id, store.ErrNotFound)
	}
	if e.doc.State.Final() {
		return nil
	}
	e.doc.State, e.doc.Reason, e.doc.FinishedAt = model.StateFailed, reason, now
	e.doc.Cancel = &store.Cancel{RequestedAt: now, By: "nodebatch", Reason: reason}
	e.updated = s.tick()
	return nil
}

// lane returns lane attempt/lane of batchID, or nil. Caller holds mu.
func (s *Store) lane(batchID string, attempt, lane int) *laneEntry {
	e := s.entry(batchID, false)
	if e == nil {
		return nil
	}
	return e.lanes[store.LaneID(attempt, lane)]
}

// Lane reads one lane document and its update time.
func (s *Store) Lane(ctx context.Context, batchID string, attempt, lane int) (*store.Lane, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	le := s.lane(batchID, attempt, lane)
	if le == nil {
		return nil, fmt.Errorf("get lane %s/%s: %w", batchID, store.LaneID(attempt, lane), store.ErrNotFound)
	}
	return &store.Lane{Doc: cloneLane(&le.doc), UpdateTime: le.updated}, nil
}

// UpdateLane writes l.Doc's progress fields, having counted position pos,
// if the lane is unchanged since read (see store.Store.UpdateLane).
func (s *Store) UpdateLane(ctx context.Context, batchID string, l *store.Lane, pos int) error {
	d := &l.Doc
	s.mu.Lock()
	defer s.mu.Unlock()
	le := s.lane(batchID, d.Attempt, d.Lane)
	if le == nil {
		return fmt.Errorf("update lane %s/%s: %w", batchID, store.LaneID(d.Attempt, d.Lane), store.ErrNotFound)
	}
	if !le.updated.Equal(l.UpdateTime) {
		if laneIs(&le.doc, d) {
			l.UpdateTime = le.updated
			return nil
		}
		return fmt.Errorf("update lane %s/%s: %w", batchID, store.LaneID(d.Attempt, d.Lane), store.ErrLaneMoved)
	}
	s.progress(le, d, pos)
	l.UpdateTime = le.updated
	return nil
}

// laneIs reports whether cur is d as its writer wrote it (store.Store's
// check that a retried write had landed).
func laneIs(cur, d *store.LaneDoc) bool {
	return bytes.Equal(cur.DoneBits, d.DoneBits) && cur.Counts == d.Counts && cur.UpdatedAt.Equal(d.UpdatedAt.Truncate(time.Microsecond))
}

// progress writes the fields of d the per-node path writes when it counts
// position pos, and removes pos's pending intent, as store.Store does
// (field by field: other positions' intents stay). Caller holds mu.
func (s *Store) progress(le *laneEntry, d *store.LaneDoc, pos int) {
	delete(d.Pending, store.PositionKey(pos))
	delete(le.doc.Pending, store.PositionKey(pos))
	c := cloneLane(d)
	le.doc.DoneBits, le.doc.Counts, le.doc.CurrentNode, le.doc.UpdatedAt = c.DoneBits, c.Counts, c.CurrentNode, c.UpdatedAt
	le.doc.Failures, le.doc.LatencyHist, le.doc.LatencyMaxMS = c.Failures, c.LatencyHist, c.LatencyMaxMS
	le.doc.Conflicts, le.doc.Done = c.Conflicts, d.Complete()
	le.updated = s.tick()
}

// LaneOpen reports whether some lane of attempt is not complete yet.
func (s *Store) LaneOpen(ctx context.Context, batchID string, attempt int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry(batchID, false)
	if e == nil {
		return false, nil
	}
	for _, le := range e.lanes {
		if le.doc.Attempt == attempt && !le.doc.Done {
			return true, nil
		}
	}
	return false, nil
}

// BatchAndLane reads a batch, one of its lanes and the names chunk holding
// node index (index < 0: none); see store.Store.BatchAndLane.
func (s *Store) BatchAndLane(ctx context.Context, batchID string, attempt, lane, index int) (*store.BatchDoc, *store.Lane, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, le := s.batch(batchID), s.lane(batchID, attempt, lane)
	if e == nil || le == nil {
		return nil, nil, nil, fmt.Errorf("get batch %s and lane %s: %w", batchID, store.LaneID(attempt, lane), store.ErrNotFound)
	}
	b := cloneBatch(&e.doc)
	var names []string
	if index >= 0 {
		if nd, ok := e.names[store.NamesID(attempt, index/store.NamesPerChunk)]; ok {
			names = slices.Clone(nd.Names)
		}
	}
	return &b, &store.Lane{Doc: cloneLane(&le.doc), UpdateTime: le.updated}, names, nil
}

// CountNode creates node result n and updates lane l.Doc (which counts n)
// at once, if the node has no result and the lane is unchanged since read
// (see store.Store.CountNode).
func (s *Store) CountNode(ctx context.Context, batchID string, n *store.NodeDoc, l *store.Lane) error {
	d := &l.Doc
	n.Reason = store.Clip(n.Reason)
	s.mu.Lock()
	defer s.mu.Unlock()
	le := s.lane(batchID, d.Attempt, d.Lane)
	if le == nil {
		return fmt.Errorf("count node %q in %s: %w", n.Node, batchID, store.ErrNotFound)
	}
	e := s.entry(batchID, false)
	_, exists := e.nodes[n.Node]
	if exists || !le.updated.Equal(l.UpdateTime) {
		if laneIs(&le.doc, d) {
			l.UpdateTime = le.updated
			return nil
		}
	}
	if exists {
		return fmt.Errorf("count node %q in %s: %w", n.Node, batchID, store.ErrExists)
	}
	if !le.updated.Equal(l.UpdateTime) {
		return fmt.Errorf("count node %q in lane %s/%s: %w", n.Node, batchID, store.LaneID(d.Attempt, d.Lane), store.ErrLaneMoved)
	}
	e.nodes[n.Node] = cloneNode(n)
	s.progress(le, d, n.Position)
	l.UpdateTime = le.updated
	return nil
}

// WriteIntent records in at position pos of lane l if the lane is
// unchanged since read (see store.Store.WriteIntent).
func (s *Store) WriteIntent(ctx context.Context, batchID string, l *store.Lane, pos int, in store.Intent) error {
	d := &l.Doc
	s.mu.Lock()
	defer s.mu.Unlock()
	le := s.lane(batchID, d.Attempt, d.Lane)
	if le == nil {
		return fmt.Errorf("record intent on lane %s/%s: %w", batchID, store.LaneID(d.Attempt, d.Lane), store.ErrNotFound)
	}
	if !le.updated.Equal(l.UpdateTime) {
		return fmt.Errorf("record intent on lane %s/%s: %w", batchID, store.LaneID(d.Attempt, d.Lane), store.ErrLaneMoved)
	}
	if le.doc.Pending == nil {
		le.doc.Pending = map[string]store.Intent{}
	}
	le.doc.Pending[store.PositionKey(pos)] = cloneIntent(in)
	le.updated = s.tick()
	if d.Pending == nil {
		d.Pending = map[string]store.Intent{}
	}
	d.Pending[store.PositionKey(pos)] = in
	l.UpdateTime = le.updated
	return nil
}

// Refuse records on batch id that an event was refused (see
// store.Store.Refuse).
func (s *Store) Refuse(ctx context.Context, id string, r store.Refusal) error {
	r = store.ClipRefusal(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.batch(id)
	if e == nil {
		return fmt.Errorf("record refused event %s on batch %s: %w", r.EventID, id, store.ErrNotFound)
	}
	e.doc.Refused++
	e.doc.LastRefusal = &r
	e.updated = s.tick()
	return nil
}

// Lanes reads the lanes of a batch, of one attempt (attempt > 0) or all,
// ordered by attempt then lane.
func (s *Store) Lanes(ctx context.Context, batchID string, attempt int) ([]store.LaneDoc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry(batchID, false)
	if e == nil {
		return nil, nil
	}
	var out []store.LaneDoc
	for _, le := range e.lanes {
		if attempt <= 0 || le.doc.Attempt == attempt {
			out = append(out, cloneLane(&le.doc))
		}
	}
	slices.SortFunc(out, func(a, b store.LaneDoc) int {
		if a.Attempt != b.Attempt {
			return a.Attempt - b.Attempt
		}
		return a.Lane - b.Lane
	})
	return out, nil
}

// RecordNode writes a node's result unless one of the same or a later
// attempt stands, and returns the result that stands (see
// store.Store.RecordNode).
func (s *Store) RecordNode(ctx context.Context, batchID string, n *store.NodeDoc) (*store.NodeDoc, error) {
	n.Reason = store.Clip(n.Reason)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry(batchID, true)
	if cur, ok := e.nodes[n.Node]; ok {
		if cur.Attempt >= n.Attempt {
			stand := cloneNode(&cur)
			return &stand, nil
		}
		store.Supersede(&cur, n)
	}
	e.nodes[n.Node] = cloneNode(n)
	return n, nil
}

// SetNode writes (overwrites) a node's result.
func (s *Store) SetNode(ctx context.Context, batchID string, n *store.NodeDoc) error {
	n.Reason = store.Clip(n.Reason)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entry(batchID, true).nodes[n.Node] = cloneNode(n)
	return nil
}

// Node reads a node's result.
func (s *Store) Node(ctx context.Context, batchID, node string) (*store.NodeDoc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entry(batchID, false); e != nil {
		if n, ok := e.nodes[node]; ok {
			c := cloneNode(&n)
			return &c, nil
		}
	}
	return nil, fmt.Errorf("get result of node %q in %s: %w", node, batchID, store.ErrNotFound)
}

// Nodes returns up to limit node results ordered by name, after the node
// named after; next is the after of the following page, "" at the end.
func (s *Store) Nodes(ctx context.Context, batchID, after string, limit int) (nodes []store.NodeDoc, next string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry(batchID, false)
	if e == nil {
		return nil, "", nil
	}
	var names []string
	for name := range e.nodes {
		if after == "" || name > after {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if len(nodes) == limit {
			next = nodes[len(nodes)-1].Node
			break
		}
		n := e.nodes[name]
		nodes = append(nodes, cloneNode(&n))
	}
	return nodes, next, nil
}

// Finish moves the batch to its final state exactly once, as a
// compare-and-swap (see store.Store.Finish): final is called without the
// lock, and a batch that moved meanwhile is read again.
func (s *Store) Finish(ctx context.Context, id string, final func(*store.BatchDoc) *store.BatchDoc) (bool, error) {
	for try := 0; ; try++ {
		s.mu.Lock()
		e := s.batch(id)
		if e == nil {
			s.mu.Unlock()
			return false, fmt.Errorf("finish batch %s: %w", id, store.ErrNotFound)
		}
		b, read := cloneBatch(&e.doc), e.updated
		s.mu.Unlock()
		if b.State.Final() {
			return false, nil
		}
		nb := final(&b)
		if nb == nil {
			return false, nil
		}
		s.mu.Lock()
		if !e.updated.Equal(read) {
			s.mu.Unlock()
			if try < maxSwapTries {
				continue
			}
			return false, fmt.Errorf("finish batch %s: changed under %d tries", id, try+1)
		}
		c := cloneBatch(nb)
		e.doc.State, e.doc.Reason, e.doc.FinishedAt, e.doc.Counts, e.doc.Timing = c.State, c.Reason, c.FinishedAt, c.Counts, c.Timing
		e.updated = s.tick()
		s.mu.Unlock()
		return true, nil
	}
}

// maxSwapTries is store.Store's bound on a compare-and-swap that keeps
// losing.
const maxSwapTries = 20

// RecordCancel records c on batch id unless it is final or already
// cancelled (see store.Store.RecordCancel).
func (s *Store) RecordCancel(ctx context.Context, id string, c store.Cancel) (*store.BatchDoc, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.batch(id)
	if e == nil {
		return nil, false, fmt.Errorf("cancel batch %s: %w", id, store.ErrNotFound)
	}
	if e.doc.State.Final() || e.doc.Cancel != nil {
		b := cloneBatch(&e.doc)
		return &b, false, nil
	}
	e.doc.Cancel = &c
	e.updated = s.tick()
	b := cloneBatch(&e.doc)
	return &b, true, nil
}

// StartAttempt moves final batch id to attempt a with its lanes, then
// stores a.Names (see store.Store.StartAttempt).
func (s *Store) StartAttempt(ctx context.Context, id string, a store.Attempt, lanes []store.LaneDoc) (*store.BatchDoc, error) {
	if len(lanes) > store.MaxCommitLanes {
		return nil, fmt.Errorf("start attempt %d of %s: %d lanes exceed one commit", a.Number, id, len(lanes))
	}
	out, err := s.startAttempt(id, a, lanes)
	if err != nil {
		// store.Store takes a batch already at this attempt, started at
		// this instant, for its own commit whose answer was lost.
		if b, rerr := s.Batch(ctx, id); rerr == nil && b.Attempt == a.Number && b.AttemptStartedAt.Equal(a.StartedAt.Truncate(time.Microsecond)) {
			return b, nil
		}
		return nil, fmt.Errorf("start attempt %d of %s: %w", a.Number, id, err)
	}
	if len(a.Names) > 0 {
		if err := s.WriteNames(ctx, id, a.Number, a.Names); err != nil {
			return nil, fmt.Errorf("start attempt %d of %s: %w", a.Number, id, err)
		}
	}
	return out, nil
}

func (s *Store) startAttempt(id string, a store.Attempt, lanes []store.LaneDoc) (*store.BatchDoc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.batch(id)
	switch {
	case e == nil:
		return nil, store.ErrNotFound
	case !e.doc.State.Final():
		return nil, store.ErrNotFinal
	case e.doc.Attempt != a.Number-1:
		return nil, store.ErrMoved
	}
	for i := range lanes {
		if _, ok := e.lanes[store.LaneID(lanes[i].Attempt, lanes[i].Lane)]; ok {
			return nil, store.ErrMoved
		}
	}
	now := s.tick()
	for i := range lanes {
		e.lanes[store.LaneID(lanes[i].Attempt, lanes[i].Lane)] = &laneEntry{doc: cloneLane(&lanes[i]), updated: now}
	}
	b := &e.doc
	b.Attempt, b.Lanes, b.AttemptTotal, b.State = a.Number, a.Lanes, a.Total, model.StateRunning
	b.Adjust = b.Adjust.Add(a.Adjust)
	b.Cancel, b.Reason, b.AttemptStartedAt = nil, "", a.StartedAt
	req := a.RequestedBy
	req.Attempt = a.Number
	b.Requesters = append(b.Requesters, cloneRequesters([]store.Requester{req})...)
	e.updated = now
	out := cloneBatch(b)
	return &out, nil
}

// CreateRevert writes revert batch b with its lanes and marks its source
// reverted by it, at once; a source already reverted returns that revert's
// id with store.ErrExists (see store.Store.CreateRevert).
func (s *Store) CreateRevert(ctx context.Context, b *store.BatchDoc, lanes []store.LaneDoc) (string, error) {
	if len(lanes) > store.MaxCommitLanes {
		return "", fmt.Errorf("create revert %s: %d lanes exceed one commit", b.ID, len(lanes))
	}
	if err := s.prepareNames(ctx, b); err != nil {
		return "", fmt.Errorf("create revert %s of %s: %w", b.ID, b.Reverts, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.batch(b.Reverts)
	switch {
	case src == nil:
		return "", fmt.Errorf("create revert %s of %s: %w", b.ID, b.Reverts, store.ErrNotFound)
	case src.doc.RevertedBy == b.ID:
		return b.ID, nil
	case src.doc.RevertedBy != "":
		return src.doc.RevertedBy, fmt.Errorf("create revert of %s: reverted by %s: %w", b.Reverts, src.doc.RevertedBy, store.ErrExists)
	case s.batch(b.ID) != nil:
		return "", fmt.Errorf("create revert %s of %s: batch %s already exists", b.ID, b.Reverts, b.ID)
	}
	s.put(b, lanes)
	src.doc.RevertedBy = b.ID
	src.updated = s.tick()
	return b.ID, nil
}

// NodesWhere returns every node result of a batch whose field equals
// value; only the fields store.Store declares queries for ("state",
// "changed") may be asked for.
func (s *Store) NodesWhere(ctx context.Context, batchID, field string, value any) ([]store.NodeDoc, error) {
	var match func(*store.NodeDoc) bool
	switch field {
	case "state":
		match = func(n *store.NodeDoc) bool { return fmt.Sprint(value) == string(n.State) && isString(value) }
	case "changed":
		match = func(n *store.NodeDoc) bool { v, ok := value.(bool); return ok && n.Changed == v }
	default:
		return nil, fmt.Errorf("list node results of %s where %s == %v: no such query is declared in shared/store/queries.go", batchID, field, value)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry(batchID, false)
	if e == nil {
		return nil, nil
	}
	var out []store.NodeDoc
	for _, n := range e.nodes {
		if match(&n) {
			out = append(out, cloneNode(&n))
		}
	}
	return out, nil
}

// isString reports whether v is a string or of a string type (as
// model.NodeState), which Firestore compares as strings.
func isString(v any) bool {
	switch v.(type) {
	case string, model.NodeState:
		return true
	}
	return false
}

// AddRedelivery counts one transient answer on a lane (which moves it).
func (s *Store) AddRedelivery(ctx context.Context, batchID string, attempt, lane int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	le := s.lane(batchID, attempt, lane)
	if le == nil {
		return fmt.Errorf("count redelivery on lane %s/%s: %w", batchID, store.LaneID(attempt, lane), store.ErrNotFound)
	}
	le.doc.Redeliveries++
	le.updated = s.tick()
	return nil
}

// History lists batches newest first (created_at, then id, descending),
// filtered by owner and state; next is the following page's cursor, nil at
// the end.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (batches []store.BatchDoc, next *store.Cursor, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []store.BatchDoc
	for _, e := range s.batches {
		if e.updated.IsZero() || q.Owner != "" && e.doc.Owner != q.Owner || q.State != "" && e.doc.State != q.State {
			continue
		}
		if q.After != nil && !follows(&e.doc, q.After) {
			continue
		}
		all = append(all, cloneBatch(&e.doc))
	}
	slices.SortFunc(all, func(a, b store.BatchDoc) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	for _, b := range all {
		if len(batches) == q.Limit {
			last := batches[len(batches)-1]
			next = &store.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
			break
		}
		batches = append(batches, b)
	}
	return batches, next, nil
}

// follows reports whether b comes after cursor c in the history order
// (newest first).
func follows(b *store.BatchDoc, c *store.Cursor) bool {
	if cmp := b.CreatedAt.Compare(c.CreatedAt); cmp != 0 {
		return cmp < 0
	}
	return b.ID < c.ID
}
