// Package request is the HTTP batch request of the API: strict JSON decoding
// of POST /v1/batches and of the seed's (kube-node-manager style) bodies, and
// validation of everything that can be checked without the cluster, as field
// errors that name the field and value.
package request

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
)

// Batch is the body of POST /v1/batches. Changes come in kubectl syntax
// (Labels, Taints) or structured (Changes), not both; nodes come as an
// explicit list, a label selector, or all.
type Batch struct {
	Labels         []string    `json:"labels,omitempty"`
	Taints         []string    `json:"taints,omitempty"`
	Changes        *change.Set `json:"changes,omitempty"`
	Nodes          []string    `json:"nodes,omitempty"`
	Selector       string      `json:"selector,omitempty"`
	All            bool        `json:"all,omitempty"`
	Concurrency    int         `json:"concurrency,omitempty"`
	DryRun         bool        `json:"dry_run,omitempty"`
	IdempotencyKey string      `json:"idempotency_key,omitempty"`
	MaxFailures    Threshold   `json:"max_failures,omitempty"`
	// Confirm and MaxNodes answer the confirmation guard (functions/batch
	// guard.go): the number of nodes the batch resolves to, as a person
	// types it, or a limit it must not exceed.
	Confirm  *int `json:"confirm,omitempty"`
	MaxNodes *int `json:"max_nodes,omitempty"`

	// Seed marks a Batch built from a seed body (never decoded): field
	// errors name its Changes as the seed body does (taints[0].effect),
	// without the "changes." prefix.
	Seed bool `json:"-"`
}

// Threshold is the failure threshold (max_failures) of a batch; the type
// lives in the batch model (shared/model), which the patch path reads.
type Threshold = model.Threshold

// Limits bound a request.
type Limits struct {
	MaxNodes          int // nodes per batch (explicit or resolved)
	MaxChanges        int // label + taint changes per batch
	MaxConcurrency    int // per-batch cap
	MaxIdempotencyKey int // bytes
}

// Defaults of Limits (functions/config takes its defaults from them).
const (
	DefaultMaxNodes          = 10000
	DefaultMaxChanges        = 100
	DefaultMaxConcurrency    = 50
	DefaultMaxIdempotencyKey = 256
)

// DefaultLimits are the limits when none are configured.
func DefaultLimits() Limits {
	return Limits{MaxNodes: DefaultMaxNodes, MaxChanges: DefaultMaxChanges, MaxConcurrency: DefaultMaxConcurrency, MaxIdempotencyKey: DefaultMaxIdempotencyKey}
}

// Spec is a validated request: the change, the target, the options.
type Spec struct {
	Set            change.Set
	Nodes          []string        // explicit list (unique, in request order) or nil
	Selector       labels.Selector // when nodes are chosen by selector, else nil
	SelectorText   string
	All            bool
	Concurrency    int // 0: choose from the number of nodes
	DryRun         bool
	IdempotencyKey string
	MaxFailures    Threshold
	Confirm        int // 0: not given
	MaxNodes       int // 0: not given
}

// Decode reads exactly one JSON object from r into v, strictly: keys match
// field names exactly (Go's decoder would take "ALL" for "all"), no key
// appears twice in an object (Go's decoder keeps the last), no unknown
// field, no trailing data. r should be limited with http.MaxBytesReader; a
// body over the limit answers 413.
func Decode(r io.Reader, v any) *apierror.Error {
	data, err := io.ReadAll(r)
	if err != nil {
		return decodeError(err)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return decodeError(io.EOF)
	}
	// One JSON value and nothing after it, with encoding/json's syntax
	// errors (byte offsets) for the answer.
	dec := json.NewDecoder(bytes.NewReader(data))
	var one json.RawMessage
	if err := dec.Decode(&one); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apierror.New(apierror.Malformed, "request body must be one JSON object")
	}
	strict, err := kjson.UnmarshalStrict(data, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		// The same bytes through encoding/json give its typed errors (byte
		// offset, field name) for the answer.
		if serr := json.Unmarshal(data, reflect.New(reflect.TypeOf(v).Elem()).Interface()); serr != nil {
			err = serr
		}
		return decodeError(err)
	}
	if trimmed[0] != '{' {
		return apierror.New(apierror.Malformed, "request body must be one JSON object")
	}
	if len(strict) > 0 {
		return strictError(strict)
	}
	return nil
}

// maxStrictFields bounds the fields a strict refusal lists: a 1 MiB body
// can repeat a key tens of thousands of times.
const maxStrictFields = 20

// strictError answers the strict decoder's findings: each unknown or
// duplicate key (the first maxStrictFields), named by its path.
func strictError(errs []error) *apierror.Error {
	e := apierror.New(apierror.Malformed, "request body: %v", errs[0])
	if len(errs) > 1 {
		// The strict decoder itself stops counting at 100.
		e.Message += " (and more)"
	}
	e.Message += " (keys are case-sensitive and may appear once)"
	for _, err := range errs[:min(len(errs), maxStrictFields)] {
		reason := "refused"
		switch msg := err.Error(); {
		case strings.HasPrefix(msg, "unknown field"):
			reason = "unknown field"
		case strings.HasPrefix(msg, "duplicate field"):
			reason = "duplicate field"
		}
		name := err.Error()
		var fe kjson.FieldError
		if errors.As(err, &fe) {
			name = fe.FieldPath()
		}
		e.Fields = append(e.Fields, apierror.FieldError{Field: name, Reason: reason})
	}
	return e
}

func decodeError(err error) *apierror.Error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return apierror.New(apierror.TooLarge, "request body exceeds %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return apierror.Wrap(apierror.Malformed, ErrEmptyBody, "%v", ErrEmptyBody)
	case errors.As(err, &se):
		return apierror.New(apierror.Malformed, "request body is not valid JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te) && te.Field == "":
		return apierror.New(apierror.Malformed, "request body must be one JSON object, not %s", te.Value)
	case errors.As(err, &te):
		e := apierror.New(apierror.Malformed, "request body: field %q: want %s, got %s", te.Field, te.Type, te.Value)
		e.Fields = []apierror.FieldError{{Field: te.Field, Reason: fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)}}
		return e
	}
	if ok, off := kjson.SyntaxErrorOffset(err); ok {
		return apierror.New(apierror.Malformed, "request body is not valid JSON at byte %d: %v", off, err)
	}
	return apierror.New(apierror.Malformed, "request body: %v", err)
}

// Validate checks everything about b that needs no cluster: the change (via
// change.Set.Validate with protection p), the target, the options and the
// limits. It returns a 422 Error naming every refused field.
func (b *Batch) Validate(lim Limits, p change.Protection) (*Spec, *apierror.Error) {
	var errs field.ErrorList
	spec := &Spec{
		Concurrency:    b.Concurrency,
		DryRun:         b.DryRun,
		IdempotencyKey: b.IdempotencyKey,
		MaxFailures:    b.MaxFailures,
		All:            b.All,
	}

	// The change.
	var set change.Set
	var root *field.Path
	switch {
	case b.Changes != nil && (len(b.Labels) > 0 || len(b.Taints) > 0):
		errs = append(errs, field.Invalid(field.NewPath("changes"), "", "give changes either as labels/taints (kubectl syntax) or as changes, not both"))
	case b.Changes != nil:
		set = *b.Changes
		if !b.Seed {
			root = field.NewPath("changes")
		}
	default:
		for i, s := range b.Labels {
			l, err := change.ParseLabel(s)
			if err != nil {
				errs = append(errs, field.Invalid(field.NewPath("labels").Index(i), s, err.Error()))
				continue
			}
			set.Labels = append(set.Labels, l)
		}
		for i, s := range b.Taints {
			t, err := change.ParseTaint(s)
			if err != nil {
				errs = append(errs, field.Invalid(field.NewPath("taints").Index(i), s, err.Error()))
				continue
			}
			set.Taints = append(set.Taints, t)
		}
	}
	if len(errs) == 0 {
		n := len(set.Labels) + len(set.Taints)
		switch {
		case n == 0:
			errs = append(errs, field.Required(field.NewPath("labels"), "no label or taint change given"))
		case n > lim.MaxChanges:
			errs = append(errs, field.TooMany(field.NewPath("labels"), n, lim.MaxChanges))
		default:
			errs = append(errs, set.Validate(root, p)...)
		}
	}
	spec.Set = set

	// The target.
	targets := 0
	if len(b.Nodes) > 0 {
		targets++
	}
	if b.Selector != "" {
		targets++
	}
	if b.All {
		targets++
	}
	switch {
	case targets != 1:
		errs = append(errs, field.Required(field.NewPath("nodes"), "give exactly one of nodes, selector, all"))
	case len(b.Nodes) > lim.MaxNodes:
		errs = append(errs, field.TooMany(field.NewPath("nodes"), len(b.Nodes), lim.MaxNodes))
	case len(b.Nodes) > 0:
		seen := make(map[string]int, len(b.Nodes))
		for i, n := range b.Nodes {
			p := field.NewPath("nodes").Index(i)
			if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
				errs = append(errs, field.Invalid(p, n, strings.Join(msgs, "; ")))
				continue
			}
			if j, dup := seen[n]; dup {
				errs = append(errs, field.Duplicate(p, fmt.Sprintf("%s (also nodes[%d])", n, j)))
				continue
			}
			seen[n] = i
			spec.Nodes = append(spec.Nodes, n)
		}
	case b.Selector != "":
		sel, err := labels.Parse(b.Selector)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(field.NewPath("selector"), b.Selector, err.Error()))
		case sel.Empty():
			// labels.Parse reads a blank selector as "everything": the
			// whole cluster must be asked for with all:true.
			errs = append(errs, field.Invalid(field.NewPath("selector"), b.Selector, "a blank selector selects every node; give a requirement, or all:true for every node"))
		default:
			spec.Selector, spec.SelectorText = sel, b.Selector
		}
	}

	// Options.
	if b.Concurrency < 0 || b.Concurrency > lim.MaxConcurrency {
		errs = append(errs, field.Invalid(field.NewPath("concurrency"), b.Concurrency, fmt.Sprintf("must be between 1 and %d (0 or absent: chosen from the number of nodes)", lim.MaxConcurrency)))
	}
	if len(b.IdempotencyKey) > lim.MaxIdempotencyKey {
		errs = append(errs, field.TooLong(field.NewPath("idempotency_key"), "", lim.MaxIdempotencyKey))
	}
	if _, err := b.MaxFailures.Limit(1); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("max_failures"), string(b.MaxFailures), err.Error()))
	}
	errs = append(errs, b.validateGuard(spec)...)
	if e := Invalid(errs); e != nil {
		return nil, e
	}
	return spec, nil
}

// Fingerprint identifies what s asks for, so that an idempotency key
// reused for a different request can be told from a repeat: the change
// set, the target (nodes as a set, the selector in canonical form, all),
// concurrency, dry_run and max_failures. The key itself and how the request
// was sent (seed endpoint or POST /v1/batches, waiting or not) are not
// part of it. It is "v1:" and a SHA-256 in hex.
func (s *Spec) Fingerprint() string {
	sel := ""
	if s.Selector != nil {
		sel = s.Selector.String()
	}
	raw, err := json.Marshal(struct {
		Set         change.Set `json:"set"`
		Nodes       []string   `json:"nodes"`
		Selector    string     `json:"selector"`
		All         bool       `json:"all"`
		Concurrency int        `json:"concurrency"`
		DryRun      bool       `json:"dry_run"`
		MaxFailures string     `json:"max_failures"`
	}{s.Set, slices.Sorted(slices.Values(s.Nodes)), sel, s.All, s.Concurrency, s.DryRun, strings.TrimSpace(string(s.MaxFailures))})
	if err != nil {
		// Strings, ints and bools always encode; should they not, the
		// fingerprint names the error instead of hiding it.
		return "unencodable: " + err.Error()
	}
	sum := sha256.Sum256(raw)
	return "v1:" + hex.EncodeToString(sum[:])
}

// Concurrency is the per-batch cap for a batch of total nodes when the
// request gives none: one lane per 20 nodes, at least 1, at most maxCap.
func Concurrency(total, maxCap int) int {
	c := (total + 19) / 20
	return max(1, min(c, maxCap))
}

// SeedLabels is the seed's body for /api/v1/nodes/labels/batch-add(-progress).
type SeedLabels struct {
	Nodes          []string          `json:"nodes"`
	Labels         map[string]string `json:"labels"`
	Operation      string            `json:"operation,omitempty"` // "add" (default) or "remove"
	Concurrency    int               `json:"concurrency,omitempty"`
	DryRun         bool              `json:"dry_run,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Confirm        *int              `json:"confirm,omitempty"`
	MaxNodes       *int              `json:"max_nodes,omitempty"`
}

// SeedTaint is one taint in the seed's taint body.
type SeedTaint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect,omitempty"`
}

// SeedTaints is the seed's body for /api/v1/nodes/taints/batch-add(-progress).
type SeedTaints struct {
	Nodes          []string    `json:"nodes"`
	Taints         []SeedTaint `json:"taints"`
	Operation      string      `json:"operation,omitempty"`
	Concurrency    int         `json:"concurrency,omitempty"`
	DryRun         bool        `json:"dry_run,omitempty"`
	IdempotencyKey string      `json:"idempotency_key,omitempty"`
	Confirm        *int        `json:"confirm,omitempty"`
	MaxNodes       *int        `json:"max_nodes,omitempty"`
}

func operation(op string) (remove bool, e *apierror.Error) {
	switch op {
	case "", "add":
		return false, nil
	case "remove", "delete":
		return true, nil
	}
	return false, Invalid(field.ErrorList{field.NotSupported(field.NewPath("operation"), op, []string{"add", "remove"})})
}

// Batch converts the seed body to a Batch of structured changes (labels
// sorted by key): adding sets key to value; removing drops the key (a value
// given with it is ignored). Keys and values are not rendered to kubectl
// syntax and parsed back, so a key such as "a=b" or a value ending in "-"
// cannot change meaning: Validate refuses them, naming labels[i].key or
// labels[i].value.
func (s *SeedLabels) Batch() (*Batch, *apierror.Error) {
	remove, e := operation(s.Operation)
	if e != nil {
		return nil, e
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	set := &change.Set{Labels: make([]change.Label, 0, len(keys))}
	for _, k := range keys {
		if remove {
			set.Labels = append(set.Labels, change.Label{Key: k, Remove: true})
		} else {
			set.Labels = append(set.Labels, change.Label{Key: k, Value: s.Labels[k]})
		}
	}
	return &Batch{Changes: set, Nodes: s.Nodes, Concurrency: s.Concurrency, DryRun: s.DryRun, IdempotencyKey: s.IdempotencyKey, Confirm: s.Confirm, MaxNodes: s.MaxNodes, Seed: true}, nil
}

// Batch converts the seed body to a Batch of structured changes, one per
// taint in body order: adding sets key:effect to value; removing drops
// key:effect (every effect of key when none is given; a value given with it
// is ignored). The fields are used as given, never rendered to kubectl
// syntax and parsed back, so "=" or ":" in a key, ":" in a value or an
// unknown effect (such as "NoSchedule-") are refused by Validate, naming
// taints[i].key, taints[i].value or taints[i].effect.
func (s *SeedTaints) Batch() (*Batch, *apierror.Error) {
	remove, e := operation(s.Operation)
	if e != nil {
		return nil, e
	}
	set := &change.Set{Taints: make([]change.Taint, 0, len(s.Taints))}
	for _, t := range s.Taints {
		ct := change.Taint{Key: t.Key, Effect: corev1.TaintEffect(t.Effect), Remove: remove}
		if !remove {
			ct.Value = t.Value
		}
		set.Taints = append(set.Taints, ct)
	}
	return &Batch{Changes: set, Nodes: s.Nodes, Concurrency: s.Concurrency, DryRun: s.DryRun, IdempotencyKey: s.IdempotencyKey, Confirm: s.Confirm, MaxNodes: s.MaxNodes, Seed: true}, nil
}
