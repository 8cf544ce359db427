package hclcheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// frameworkPath is the import path whose HTTP, CloudEvent and Typed
// functions register entry points.
const frameworkPath = "github.com/GoogleCloudPlatform/functions-framework-go/functions"

// Registration is an entry point the Go code registers with
// functions-framework-go.
type Registration struct {
	Name string
	Kind string // HTTP, CloudEvent or Typed
	Pos  string // file:line
}

// Code is what the checks need to know of the Go source.
type Code struct {
	// Registrations by entry point name.
	Registrations map[string][]Registration
	// Env holds every environment variable name the code reads: NODEBATCH_*
	// string literals (config loaders keep them in constants and tables),
	// literal arguments of calls whose callee's name contains "env"
	// (os.Getenv, os.LookupEnv, a getenv func parameter) and `env:"…"`
	// struct tags. Values are one file:line where the name occurs.
	Env map[string]string
}

var (
	nodebatchName = regexp.MustCompile(`^NODEBATCH_[A-Z0-9_]+$`)
	envName       = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
)

// ScanCode reads the non-test Go files under dirs (skipping testdata,
// vendor, node_modules and dot folders). A folder that does not exist is an
// error: the checks would otherwise pass on nothing.
func ScanCode(dirs ...string) (*Code, error) {
	c := &Code{Registrations: map[string][]Registration{}, Env: map[string]string{}}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				n := d.Name()
				if path != dir && (n == "testdata" || n == "vendor" || n == "node_modules" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return fmt.Errorf("parse %s: %w", path, err)
			}
			c.scanFile(fset, f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scan Go code in %s: %w", dir, err)
		}
	}
	return c, nil
}

func (c *Code) scanFile(fset *token.FileSet, f *ast.File) {
	framework := map[string]bool{} // local names of the framework package
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == frameworkPath {
			name := "functions"
			if imp.Name != nil {
				name = imp.Name.Name
			}
			framework[name] = true
		}
	}
	consts := stringConsts(f)
	pos := func(n ast.Node) string {
		p := fset.Position(n.Pos())
		return fmt.Sprintf("%s:%d", p.Filename, p.Line)
	}
	str := func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				s, err := strconv.Unquote(e.Value)
				return s, err == nil
			}
		case *ast.Ident:
			s, ok := consts[e.Name]
			return s, ok
		}
		return "", false
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BasicLit:
			if s, ok := str(n); ok && nodebatchName.MatchString(s) {
				c.env(s, pos(n))
			}
		case *ast.Field:
			if n.Tag != nil {
				if tag, err := strconv.Unquote(n.Tag.Value); err == nil {
					if name, _, _ := strings.Cut(reflect.StructTag(tag).Get("env"), ","); envName.MatchString(name) {
						c.env(name, pos(n))
					}
				}
			}
		case *ast.CallExpr:
			callee := ""
			switch fn := n.Fun.(type) {
			case *ast.Ident:
				callee = fn.Name
			case *ast.SelectorExpr:
				callee = fn.Sel.Name
				if x, ok := fn.X.(*ast.Ident); ok && framework[x.Name] && len(n.Args) > 0 {
					switch fn.Sel.Name {
					case "HTTP", "CloudEvent", "Typed":
						if s, ok := str(n.Args[0]); ok {
							c.Registrations[s] = append(c.Registrations[s], Registration{Name: s, Kind: fn.Sel.Name, Pos: pos(n)})
						}
					}
				}
			}
			if strings.Contains(strings.ToLower(callee), "env") {
				for _, a := range n.Args {
					if s, ok := str(a); ok && envName.MatchString(s) {
						c.env(s, pos(a))
					}
				}
			}
		}
		return true
	})
}

func (c *Code) env(name, pos string) {
	if _, ok := c.Env[name]; !ok {
		c.Env[name] = pos
	}
}

// stringConsts returns the file's string constants declared with a literal.
func stringConsts(f *ast.File) map[string]string {
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					if l, ok := vs.Values[i].(*ast.BasicLit); ok && l.Kind == token.STRING {
						if v, err := strconv.Unquote(l.Value); err == nil {
							out[n.Name] = v
						}
					}
				}
			}
		}
	}
	return out
}

// CheckEntryPoints reports entry points the configuration names that the
// code does not register, and names registered more than once.
func CheckEntryPoints(eps []EntryPoint, code *Code) []Problem {
	var ps []Problem
	for _, ep := range eps {
		regs := code.Registrations[ep.Name]
		switch len(regs) {
		case 0:
			ps = append(ps, Problem{ep.Range, fmt.Sprintf("%s: entry_point %q is not registered by the code (functions.HTTP/CloudEvent(%q, …)); registered: %s",
				ep.Resource, ep.Name, ep.Name, registeredNames(code))})
		case 1:
		default:
			var at []string
			for _, r := range regs {
				at = append(at, r.Pos)
			}
			ps = append(ps, Problem{ep.Range, fmt.Sprintf("%s: entry_point %q is registered %d times (%s)", ep.Resource, ep.Name, len(regs), strings.Join(at, ", "))})
		}
	}
	return ps
}

func registeredNames(code *Code) string {
	var names []string
	for n := range code.Registrations {
		names = append(names, n)
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// reserved are names Cloud Run and Cloud Run functions set themselves and
// refuse in a deployment.
var reserved = map[string]bool{
	"PORT": true, "K_SERVICE": true, "K_REVISION": true, "K_CONFIGURATION": true,
	"FUNCTION_TARGET": true, "FUNCTION_SIGNATURE_TYPE": true,
}

// CheckEnv reports every environment variable a resource sets that the code
// serving it does not read (a typo, or a setting that was renamed), and the
// names the platform reserves. readers maps a resource type to what its code
// reads; a resource type with env vars but no entry is a problem too.
func CheckEnv(vars []EnvVar, readers map[string]*Code) []Problem {
	var ps []Problem
	seen := map[string]bool{}
	for _, v := range vars {
		id := v.Resource + "/" + v.Name
		if seen[id] {
			ps = append(ps, Problem{v.Range, fmt.Sprintf("%s sets %s twice", v.Resource, v.Name)})
			continue
		}
		seen[id] = true
		if reserved[v.Name] || strings.HasPrefix(v.Name, "X_GOOGLE_") {
			ps = append(ps, Problem{v.Range, fmt.Sprintf("%s sets %s, which the platform reserves", v.Resource, v.Name)})
			continue
		}
		code, ok := readers[v.Type]
		if !ok {
			ps = append(ps, Problem{v.Range, fmt.Sprintf("%s sets %s but no Go code is mapped to resource type %s", v.Resource, v.Name, v.Type)})
			continue
		}
		if _, ok := code.Env[v.Name]; !ok {
			ps = append(ps, Problem{v.Range, fmt.Sprintf("%s sets %s, which its code never reads%s", v.Resource, v.Name, suggest(v.Name, code))})
		}
	}
	return ps
}

// suggest names the closest variable the code reads, for a likely typo.
func suggest(name string, code *Code) string {
	best, bestD := "", 4
	for n := range code.Env {
		if d := distance(name, n); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// ModuleImports returns every package of module (import path prefix) that
// the packages in dirs import, directly or not, as folders relative to root,
// sorted. Test files are ignored. The source zip of a function must hold all
// of them.
func ModuleImports(root, module string, dirs ...string) ([]string, error) {
	seen := map[string]bool{}
	queue := append([]string(nil), dirs...)
	fset := token.NewFileSet()
	for len(queue) > 0 {
		dir := filepath.ToSlash(filepath.Clean(queue[0]))
		queue = queue[1:]
		if seen[dir] {
			continue
		}
		seen[dir] = true
		paths, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		if len(paths) == 0 {
			return nil, fmt.Errorf("package folder %s has no Go files", dir)
		}
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
			if err != nil {
				return nil, fmt.Errorf("parse imports of %s: %w", p, err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if rel, ok := strings.CutPrefix(path, module+"/"); ok {
					queue = append(queue, rel)
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out, nil
}

// queryMethods are the firestore.Query methods that name a field.
var queryMethods = map[string]bool{"Where": true, "WherePath": true, "OrderBy": true, "OrderByPath": true}

// QueryCalls returns file:line of every call in the non-test Go files under
// dirs of a method that names a Firestore query field (Where, OrderBy and
// their Path forms) with a string literal or constant as its first
// argument, except in files named queries.go, where queries are declared.
func QueryCalls(dirs ...string) ([]string, error) {
	var out []string
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				n := d.Name()
				if path != dir && (n == "testdata" || n == "vendor" || n == "node_modules" || strings.HasPrefix(n, ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || d.Name() == "queries.go" {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return fmt.Errorf("parse %s: %w", path, err)
			}
			consts := stringConsts(f)
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !queryMethods[sel.Sel.Name] {
					return true
				}
				literal := false
				switch a := call.Args[0].(type) {
				case *ast.BasicLit:
					literal = a.Kind == token.STRING
				case *ast.Ident:
					_, literal = consts[a.Name]
				case *ast.SelectorExpr:
					literal = a.Sel.Name == "DocumentID" // firestore.DocumentID
				}
				if literal {
					p := fset.Position(call.Pos())
					out = append(out, fmt.Sprintf("%s:%d", p.Filename, p.Line))
				}
				return true
			})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scan Go code in %s: %w", dir, err)
		}
	}
	return out, nil
}

// EnvAssignment returns the value a Go file assigns to the environment
// variable name in a "NAME=value" string literal (how process launchers
// such as emulators/cmd/stack build child environments), or "(unset)" when
// the file has none. Two different assignments are an error.
func EnvAssignment(path, name string) (string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", path, err)
	}
	found := "(unset)"
	var errOut error
	ast.Inspect(f, func(n ast.Node) bool {
		l, ok := n.(*ast.BasicLit)
		if !ok || l.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(l.Value)
		if err != nil {
			return true
		}
		v, ok := strings.CutPrefix(s, name+"=")
		if !ok {
			return true
		}
		if found != "(unset)" && found != v {
			errOut = fmt.Errorf("%s assigns %s twice (%q, %q)", path, name, found, v)
		}
		found = v
		return true
	})
	return found, errOut
}
