package hclcheck

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// EntryPoint is a function entry point named in the configuration.
type EntryPoint struct {
	Resource string // address, e.g. google_cloudfunctions2_function.batch
	Name     string
	Range    hcl.Range
}

// EntryPoints returns the entry_point of every Cloud Functions resource
// (gen2: build_config.entry_point; gen1: entry_point). An entry point that
// is not a literal string is a problem: it could not be checked.
func (m *Module) EntryPoints() ([]EntryPoint, []Problem) {
	var eps []EntryPoint
	var ps []Problem
	for _, b := range m.Blocks("resource") {
		var a *hclsyntax.Attribute
		switch b.Type {
		case "google_cloudfunctions2_function":
			for _, c := range b.Body.Blocks {
				if c.Type == "build_config" {
					a = c.Body.Attributes["entry_point"]
				}
			}
		case "google_cloudfunctions_function":
			a = b.Body.Attributes["entry_point"]
		default:
			continue
		}
		if a == nil {
			ps = append(ps, Problem{b.Range, fmt.Sprintf("%s has no entry_point", b.Address())})
			continue
		}
		s, ok := literalString(a.Expr)
		if !ok {
			ps = append(ps, Problem{a.SrcRange, fmt.Sprintf("%s: entry_point must be a literal string so it can be checked against the code", b.Address())})
			continue
		}
		eps = append(eps, EntryPoint{Resource: b.Address(), Name: s, Range: a.SrcRange})
	}
	return eps, ps
}

// EnvVar is an environment variable a resource sets on a running service.
type EnvVar struct {
	Resource string // address
	Type     string // resource type
	Name     string
	Value    hclsyntax.Expression // nil for a secret environment variable
	Range    hcl.Range
}

// EnvVars returns the runtime environment variables each function and
// Cloud Run service sets: service_config.environment_variables and
// secret_environment_variables (gen2 functions), environment_variables
// (gen1), template.containers.env (Cloud Run v2). Map values built from
// object literals, merge() and local values are resolved; anything else is
// reported, since its names could not be checked.
func (m *Module) EnvVars() ([]EnvVar, []Problem) {
	var out []EnvVar
	var ps []Problem
	add := func(b Block, name string, val hclsyntax.Expression, r hcl.Range) {
		out = append(out, EnvVar{Resource: b.Address(), Type: b.Type, Name: name, Value: val, Range: r})
	}
	addMap := func(b Block, expr hclsyntax.Expression) {
		keys, p := m.objectKeys(expr, map[string]bool{})
		ps = append(ps, p...)
		for _, k := range keys {
			add(b, k.name, k.val, k.rng)
		}
	}
	for _, b := range m.Blocks("resource") {
		switch b.Type {
		case "google_cloudfunctions2_function":
			for _, sc := range blocksOf(b.Body, "service_config") {
				if a, ok := sc.Body.Attributes["environment_variables"]; ok {
					addMap(b, a.Expr)
				}
				for _, s := range blocksOf(sc.Body, "secret_environment_variables") {
					if a, ok := s.Body.Attributes["key"]; ok {
						if n, ok := literalString(a.Expr); ok {
							add(b, n, nil, a.SrcRange)
						} else {
							ps = append(ps, Problem{a.SrcRange, "secret_environment_variables.key must be a literal string"})
						}
					}
				}
			}
		case "google_cloudfunctions_function":
			if a, ok := b.Body.Attributes["environment_variables"]; ok {
				addMap(b, a.Expr)
			}
		case "google_cloud_run_v2_service", "google_cloud_run_v2_job":
			for _, t := range blocksOf(b.Body, "template") {
				conts := blocksOf(t.Body, "containers")
				for _, tt := range blocksOf(t.Body, "template") { // jobs nest one more template
					conts = append(conts, blocksOf(tt.Body, "containers")...)
				}
				for _, c := range conts {
					for _, e := range blocksOf(c.Body, "env") {
						if a, ok := e.Body.Attributes["name"]; ok {
							if n, ok := literalString(a.Expr); ok {
								var val hclsyntax.Expression
								if v, ok := e.Body.Attributes["value"]; ok {
									val = v.Expr
								}
								add(b, n, val, a.SrcRange)
							} else {
								ps = append(ps, Problem{a.SrcRange, "env.name must be a literal string"})
							}
						}
					}
					for _, d := range blocksOf(c.Body, "dynamic") {
						ps = append(ps, Problem{d.DefRange(), "dynamic blocks in containers hide env names from the checks; write env blocks out"})
					}
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out, ps
}

type key struct {
	name string
	val  hclsyntax.Expression
	rng  hcl.Range
}

// objectKeys returns the keys of a map expression.
func (m *Module) objectKeys(expr hclsyntax.Expression, seen map[string]bool) ([]key, []Problem) {
	switch e := expr.(type) {
	case *hclsyntax.ObjectConsExpr:
		var keys []key
		var ps []Problem
		for _, it := range e.Items {
			if kw := hcl.ExprAsKeyword(it.KeyExpr); kw != "" {
				keys = append(keys, key{kw, it.ValueExpr, it.KeyExpr.Range()})
				continue
			}
			if s, ok := literalString(it.KeyExpr); ok {
				keys = append(keys, key{s, it.ValueExpr, it.KeyExpr.Range()})
				continue
			}
			ps = append(ps, Problem{it.KeyExpr.Range(), "environment variable name is not a literal"})
		}
		return keys, ps
	case *hclsyntax.FunctionCallExpr:
		if e.Name != "merge" {
			break
		}
		var keys []key
		var ps []Problem
		for _, a := range e.Args {
			k, p := m.objectKeys(a, seen)
			keys, ps = append(keys, k...), append(ps, p...)
		}
		return keys, ps
	case *hclsyntax.ScopeTraversalExpr:
		if e.Traversal.RootName() == "local" && len(e.Traversal) == 2 {
			name := e.Traversal[1].(hcl.TraverseAttr).Name
			if local, ok := m.local(name); ok && !seen[name] {
				seen[name] = true
				return m.objectKeys(local, seen)
			}
		}
	case *hclsyntax.ParenthesesExpr:
		return m.objectKeys(e.Expression, seen)
	}
	return nil, []Problem{{expr.Range(), "cannot tell the environment variable names of this expression statically; use an object literal, merge() or a local"}}
}

func blocksOf(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// literalString returns the value of a constant string expression.
func literalString(expr hcl.Expression) (string, bool) {
	if len(expr.Variables()) > 0 {
		return "", false
	}
	if k, ok := expr.(*hclsyntax.ObjectConsKeyExpr); ok {
		expr = k.Wrapped
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return "", false
	}
	return strings.Clone(v.AsString()), true
}

// AttrRefs returns, for each attribute of the nested block typ of body (or
// of body itself when typ is empty) whose value is a single reference, that
// reference ("var.x"), so tests can assert where a setting comes from.
func AttrRefs(body *hclsyntax.Body, typ string) map[string]string {
	out := map[string]string{}
	bodies := []*hclsyntax.Body{body}
	if typ != "" {
		bodies = nil
		for _, b := range blocksOf(body, typ) {
			bodies = append(bodies, b.Body)
		}
	}
	for _, b := range bodies {
		for name, a := range b.Attributes {
			if t, ok := a.Expr.(*hclsyntax.ScopeTraversalExpr); ok {
				var parts []string
				for _, s := range t.Traversal {
					switch s := s.(type) {
					case hcl.TraverseRoot:
						parts = append(parts, s.Name)
					case hcl.TraverseAttr:
						parts = append(parts, s.Name)
					}
				}
				out[name] = strings.Join(parts, ".")
			}
		}
	}
	return out
}

// VariableDefault evaluates the default of variable name, which must be a
// constant expression (Terraform requires it).
func (m *Module) VariableDefault(name string) (cty.Value, error) {
	for _, b := range m.Blocks("variable") {
		if b.Name != name {
			continue
		}
		a, ok := b.Body.Attributes["default"]
		if !ok {
			return cty.NilVal, fmt.Errorf("var.%s has no default", name)
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			return cty.NilVal, fmt.Errorf("evaluate default of var.%s: %s", name, diags.Error())
		}
		return v, nil
	}
	return cty.NilVal, fmt.Errorf("no variable %q", name)
}

// Nested returns the bodies of body's nested blocks of type typ.
func Nested(body *hclsyntax.Body, typ string) []*hclsyntax.Body {
	var out []*hclsyntax.Body
	for _, b := range blocksOf(body, typ) {
		out = append(out, b.Body)
	}
	return out
}

// LiteralString returns the value of a constant string expression.
func LiteralString(expr hcl.Expression) (string, bool) {
	if expr == nil {
		return "", false
	}
	return literalString(expr)
}
