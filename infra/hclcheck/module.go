// Package hclcheck checks a Terraform module without the terraform binary:
// every file parses; every var., local., data., module. and resource
// reference names something declared; every declared variable and local is
// used; variables and outputs are documented; every resource type has its
// provider declared. It also extracts what must agree with the Go code
// (function entry points, environment variable names) so tests can compare
// them with what the code registers and reads (see code.go), and checks
// what a first apply needs although every reference resolves (deploy.go:
// build grants and the wait before builds, one identity per workload with
// the least cluster rights, token audiences, managed objects; indexes.go:
// Firestore indexes against the code's declared queries; settings.go:
// settings left to a documented default).
package hclcheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Problem is one finding, located in the configuration.
type Problem struct {
	Range hcl.Range
	Msg   string
}

// String formats p as "file:line: message".
func (p Problem) String() string {
	if p.Range.Filename == "" {
		return p.Msg
	}
	return fmt.Sprintf("%s:%d: %s", p.Range.Filename, p.Range.Start.Line, p.Msg)
}

// Block is a top-level declaration: a resource, data source, variable, local
// value, output or module call.
type Block struct {
	Kind  string // "resource", "data", "variable", "local", "output", "module"
	Type  string // resource or data type; empty for the others
	Name  string
	Range hcl.Range
	Body  *hclsyntax.Body      // nil for a local
	Expr  hclsyntax.Expression // a local's value; nil for the others
}

// Address is how the configuration refers to b: "var.x", "local.x",
// "google_x.y", "data.google_x.y", "module.x", "output.x".
func (b Block) Address() string {
	switch b.Kind {
	case "resource":
		return b.Type + "." + b.Name
	case "data":
		return "data." + b.Type + "." + b.Name
	case "variable":
		return "var." + b.Name
	default:
		return b.Kind + "." + b.Name
	}
}

// Module is a parsed Terraform module: the *.tf files of one folder.
type Module struct {
	files     map[string]*hcl.File
	blocks    []Block
	providers map[string]bool // required_providers local names
	problems  []Problem       // found while indexing (duplicates)
}

// Load parses every *.tf file in dir. A syntax error in any file is returned
// as an error listing every diagnostic.
func Load(dir string) (*Module, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, fmt.Errorf("list terraform files in %s: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("load terraform module %s: no *.tf files", dir)
	}
	src := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("load terraform module: %w", err)
		}
		src[p] = b
	}
	return Parse(src)
}

// Parse parses files (name → contents) as one module.
func Parse(files map[string][]byte) (*Module, error) {
	m := &Module{files: make(map[string]*hcl.File, len(files)), providers: map[string]bool{}}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var diags hcl.Diagnostics
	for _, n := range names {
		f, d := hclsyntax.ParseConfig(files[n], n, hcl.InitialPos)
		diags = append(diags, d...)
		if !d.HasErrors() {
			m.files[n] = f
		}
	}
	if diags.HasErrors() {
		var msgs []string
		for _, d := range diags {
			msgs = append(msgs, d.Error())
		}
		return nil, fmt.Errorf("parse terraform: %s", strings.Join(msgs, "; "))
	}
	for _, n := range names {
		m.index(m.files[n].Body.(*hclsyntax.Body))
	}
	return m, nil
}

// index records the top-level declarations of one file.
func (m *Module) index(body *hclsyntax.Body) {
	for name, a := range body.Attributes {
		m.problems = append(m.problems, Problem{a.SrcRange, fmt.Sprintf("unexpected top-level attribute %q", name)})
	}
	for _, b := range body.Blocks {
		switch b.Type {
		case "resource", "data":
			if len(b.Labels) != 2 {
				m.problems = append(m.problems, Problem{b.DefRange(), fmt.Sprintf("%s block needs 2 labels (type, name), has %d", b.Type, len(b.Labels))})
				continue
			}
			m.add(Block{Kind: b.Type, Type: b.Labels[0], Name: b.Labels[1], Range: b.DefRange(), Body: b.Body})
		case "variable", "output", "module":
			if len(b.Labels) != 1 {
				m.problems = append(m.problems, Problem{b.DefRange(), fmt.Sprintf("%s block needs 1 label, has %d", b.Type, len(b.Labels))})
				continue
			}
			m.add(Block{Kind: b.Type, Name: b.Labels[0], Range: b.DefRange(), Body: b.Body})
		case "locals":
			for name, a := range b.Body.Attributes {
				m.add(Block{Kind: "local", Name: name, Range: a.SrcRange, Expr: a.Expr})
			}
		case "terraform":
			for _, rp := range b.Body.Blocks {
				if rp.Type == "required_providers" {
					for name := range rp.Body.Attributes {
						m.providers[name] = true
					}
				}
			}
		case "provider", "moved", "import", "removed", "check":
		default:
			m.problems = append(m.problems, Problem{b.DefRange(), fmt.Sprintf("unknown top-level block type %q", b.Type)})
		}
	}
}

func (m *Module) add(b Block) {
	for _, o := range m.blocks {
		if o.Address() == b.Address() {
			m.problems = append(m.problems, Problem{b.Range, fmt.Sprintf("%s declared twice (also at %s:%d)", b.Address(), o.Range.Filename, o.Range.Start.Line)})
			return
		}
	}
	m.blocks = append(m.blocks, b)
}

// Blocks returns the declarations of kind ("resource", "variable", ...), in
// file order.
func (m *Module) Blocks(kind string) []Block {
	var out []Block
	for _, b := range m.blocks {
		if b.Kind == kind {
			out = append(out, b)
		}
	}
	return out
}

// Resources returns the resources of type typ.
func (m *Module) Resources(typ string) []Block {
	var out []Block
	for _, b := range m.Blocks("resource") {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

func (m *Module) declared(addr string) bool {
	return slices.ContainsFunc(m.blocks, func(b Block) bool { return b.Address() == addr })
}

func (m *Module) local(name string) (hclsyntax.Expression, bool) {
	for _, b := range m.blocks {
		if b.Kind == "local" && b.Name == name {
			return b.Expr, true
		}
	}
	return nil, false
}

// Check runs every structural check and returns the problems, sorted by
// position. An empty result means the module is consistent.
func (m *Module) Check() []Problem {
	ps := append([]Problem(nil), m.problems...)
	ps = append(ps, m.checkReferences()...)
	ps = append(ps, m.checkDocumented()...)
	ps = append(ps, m.checkProviders()...)
	sortProblems(ps)
	return ps
}

// checkReferences resolves every reference and reports the unresolved ones,
// then the variables and locals nothing references.
func (m *Module) checkReferences() []Problem {
	var ps []Problem
	used := map[string]bool{}
	for _, b := range m.blocks {
		var refs []ref
		if b.Expr != nil {
			refs = collect(b.Expr, nil)
		} else {
			refs = collectBody(b.Body, nil, b.Kind)
		}
		for _, r := range refs {
			addr, p := m.resolve(r)
			if p != "" {
				ps = append(ps, Problem{r.trav.SourceRange(), p})
				continue
			}
			if addr != "" && addr != b.Address() {
				used[addr] = true
			}
		}
	}
	for _, b := range m.blocks {
		if (b.Kind == "variable" || b.Kind == "local") && !used[b.Address()] {
			ps = append(ps, Problem{b.Range, fmt.Sprintf("%s is declared but never used", b.Address())})
		}
	}
	return ps
}

// ref is one traversal with the iterator names in scope where it occurs.
type ref struct {
	trav  hcl.Traversal
	scope []string // dynamic-block iterators
}

// metaRoots are reference roots Terraform provides itself.
var metaRoots = map[string]bool{"each": true, "count": true, "self": true, "path": true, "terraform": true}

// resolve returns the address r refers to (empty for meta references) or a
// problem message.
func (m *Module) resolve(r ref) (string, string) {
	root := r.trav.RootName()
	if metaRoots[root] || slices.Contains(r.scope, root) {
		return "", ""
	}
	step := func(i int) string {
		if i >= len(r.trav) {
			return ""
		}
		if a, ok := r.trav[i].(hcl.TraverseAttr); ok {
			return a.Name
		}
		return ""
	}
	var addr string
	switch root {
	case "var", "local", "module":
		if step(1) == "" {
			return "", fmt.Sprintf("%s needs a name (%s.NAME)", root, root)
		}
		addr = root + "." + step(1)
	case "data":
		if step(1) == "" || step(2) == "" {
			return "", "data reference needs a type and a name (data.TYPE.NAME)"
		}
		addr = "data." + step(1) + "." + step(2)
	default:
		if step(1) == "" {
			return "", fmt.Sprintf("%q is not a declared name: not a variable, local, resource or iterator", root)
		}
		addr = root + "." + step(1)
	}
	if !m.declared(addr) {
		kind := map[string]string{"var": "variable", "local": "local value", "module": "module", "data": "data source"}[root]
		if kind == "" {
			kind = "resource"
		}
		return "", fmt.Sprintf("reference to undeclared %s %s", kind, addr)
	}
	return addr, ""
}

// collectBody returns the references in every attribute of body and its
// nested blocks. Attributes whose values are not expressions are skipped: a
// variable's type, a resource's provider, lifecycle.ignore_changes. kind is
// the kind of the top-level block; nested blocks pass "".
func collectBody(body *hclsyntax.Body, scope []string, kind string) []ref {
	resource := kind == "resource" || kind == "data"
	var refs []ref
	for name, a := range body.Attributes {
		if (resource && name == "provider") || (kind == "variable" && name == "type") {
			continue
		}
		refs = append(refs, collect(a.Expr, scope)...)
	}
	for _, b := range body.Blocks {
		inner := scope
		switch {
		case b.Type == "dynamic" && len(b.Labels) == 1:
			it := b.Labels[0]
			if a, ok := b.Body.Attributes["iterator"]; ok {
				if kw := hcl.ExprAsKeyword(a.Expr); kw != "" {
					it = kw
				}
			}
			inner = append(slices.Clone(scope), it)
			// for_each is evaluated outside the iterator's scope.
			if a, ok := b.Body.Attributes["for_each"]; ok {
				refs = append(refs, collect(a.Expr, scope)...)
			}
			for _, c := range b.Body.Blocks {
				refs = append(refs, collectBody(c.Body, inner, "")...)
			}
			continue
		case resource && b.Type == "lifecycle":
			for name, a := range b.Body.Attributes {
				if name != "ignore_changes" {
					refs = append(refs, collect(a.Expr, scope)...)
				}
			}
			for _, c := range b.Body.Blocks {
				refs = append(refs, collectBody(c.Body, scope, "")...)
			}
			continue
		}
		refs = append(refs, collectBody(b.Body, inner, "")...)
	}
	return refs
}

// collect returns the references of expr; for-expression variables are
// already excluded by hclsyntax.
func collect(expr hclsyntax.Expression, scope []string) []ref {
	var refs []ref
	for _, t := range expr.Variables() {
		refs = append(refs, ref{trav: t, scope: scope})
	}
	return refs
}

// checkDocumented wants a description on every variable and output and a
// type on every variable.
func (m *Module) checkDocumented() []Problem {
	var ps []Problem
	for _, b := range m.blocks {
		if b.Kind != "variable" && b.Kind != "output" {
			continue
		}
		if !hasNonEmptyString(b.Body, "description") {
			ps = append(ps, Problem{b.Range, fmt.Sprintf("%s has no description", b.Address())})
		}
		if b.Kind == "variable" {
			if _, ok := b.Body.Attributes["type"]; !ok {
				ps = append(ps, Problem{b.Range, fmt.Sprintf("%s has no type", b.Address())})
			}
		}
	}
	return ps
}

func hasNonEmptyString(body *hclsyntax.Body, name string) bool {
	a, ok := body.Attributes[name]
	if !ok {
		return false
	}
	v, diags := a.Expr.Value(nil)
	return !diags.HasErrors() && v.Type().FriendlyName() == "string" && v.IsKnown() && !v.IsNull() && strings.TrimSpace(v.AsString()) != ""
}

// checkProviders wants every resource and data type's provider (the prefix
// before the first "_") in required_providers.
func (m *Module) checkProviders() []Problem {
	var ps []Problem
	for _, b := range m.blocks {
		if b.Kind != "resource" && b.Kind != "data" {
			continue
		}
		p, _, _ := strings.Cut(b.Type, "_")
		if _, explicit := b.Body.Attributes["provider"]; explicit {
			continue
		}
		if !m.providers[p] {
			ps = append(ps, Problem{b.Range, fmt.Sprintf("%s: provider %q is not in terraform.required_providers", b.Address(), p)})
		}
	}
	return ps
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Range, ps[j].Range
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Line < b.Start.Line
	})
}

// Join formats problems one per line, for a test failure message.
func Join(ps []Problem) error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, errors.New(p.String()))
	}
	return errors.Join(errs...)
}

// Unformatted returns the names of files whose contents differ from their
// canonical HCL formatting (what `terraform fmt` writes), sorted.
func Unformatted(files map[string][]byte) []string {
	var out []string
	for n, b := range files {
		if !bytes.Equal(hclwrite.Format(b), b) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
