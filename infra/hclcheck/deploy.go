package hclcheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The checks in this file catch what makes a first `terraform apply` fail
// or over-grant although every reference resolves: a build account without
// its grants, a function that starts building before the grants exist,
// workloads sharing an identity or holding cluster rights their code does
// not use, and tokens minted for an audience the receiver does not accept.

// refText renders a reference expression as Terraform writes it
// ("google_service_account.build.id", `local.secret["batch"]`); ok is false
// for anything but a single reference.
func refText(expr hcl.Expression) (string, bool) {
	t, ok := expr.(*hclsyntax.ScopeTraversalExpr)
	if !ok {
		return "", false
	}
	return traversalText(t.Traversal), true
}

func traversalText(tr hcl.Traversal) string {
	var b strings.Builder
	for _, s := range tr {
		switch s := s.(type) {
		case hcl.TraverseRoot:
			b.WriteString(s.Name)
		case hcl.TraverseAttr:
			b.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			if s.Key.Type() == cty.String {
				fmt.Fprintf(&b, "[%q]", s.Key.AsString())
			} else {
				b.WriteString("[" + s.Key.GoString() + "]")
			}
		}
	}
	return b.String()
}

// refersTo reports whether expr holds a reference to the resource address
// (type.name), in any attribute of it.
func refersTo(expr hcl.Expression, addr string) bool {
	for _, t := range expr.Variables() {
		if resourceAddr(t) == addr {
			return true
		}
	}
	return false
}

// resourceAddr is the managed-resource address a traversal starts with, or
// "" for variables, locals, data sources and meta references.
func resourceAddr(t hcl.Traversal) string {
	root := t.RootName()
	if root == "var" || root == "local" || root == "data" || root == "module" || metaRoots[root] || len(t) < 2 {
		return ""
	}
	a, ok := t[1].(hcl.TraverseAttr)
	if !ok {
		return ""
	}
	return root + "." + a.Name
}

// dependsOn returns the addresses in b's depends_on.
func dependsOn(b Block) map[string]bool {
	out := map[string]bool{}
	a, ok := b.Body.Attributes["depends_on"]
	if !ok {
		return out
	}
	if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
		for _, e := range tup.Exprs {
			if s, ok := refText(e); ok {
				out[s] = true
			}
		}
	}
	return out
}

// nestedAttr returns the attribute at path (block types, then the attribute
// name) in body, the first match.
func nestedAttr(body *hclsyntax.Body, path ...string) (*hclsyntax.Attribute, bool) {
	if len(path) == 1 {
		a, ok := body.Attributes[path[0]]
		return a, ok
	}
	for _, b := range blocksOf(body, path[0]) {
		if a, ok := nestedAttr(b.Body, path[1:]...); ok {
			return a, true
		}
	}
	return nil, false
}

// serviceAccountOf returns the google_service_account address expr refers to.
func serviceAccountOf(expr hcl.Expression) string {
	for _, t := range expr.Variables() {
		if a := resourceAddr(t); strings.HasPrefix(a, "google_service_account.") {
			return a
		}
	}
	return ""
}

// stringSet returns the literal strings of a list/set expression: a tuple
// of literals, optionally wrapped in toset() or tolist(), or a local holding
// one.
func (m *Module) stringSet(expr hclsyntax.Expression) ([]string, bool) {
	switch e := expr.(type) {
	case *hclsyntax.FunctionCallExpr:
		if (e.Name == "toset" || e.Name == "tolist") && len(e.Args) == 1 {
			return m.stringSet(e.Args[0])
		}
	case *hclsyntax.ScopeTraversalExpr:
		if e.Traversal.RootName() == "local" && len(e.Traversal) == 2 {
			if l, ok := m.local(e.Traversal[1].(hcl.TraverseAttr).Name); ok {
				return m.stringSet(l)
			}
		}
	case *hclsyntax.TupleConsExpr:
		var out []string
		for _, x := range e.Exprs {
			s, ok := literalString(x)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// roles returns the roles an IAM member resource grants: its literal role,
// or, for role = each.value, the literal strings of its for_each.
func (m *Module) roles(b Block) []string {
	a, ok := b.Body.Attributes["role"]
	if !ok {
		return nil
	}
	if s, ok := literalString(a.Expr); ok {
		return []string{s}
	}
	if s, ok := refText(a.Expr); ok && s == "each.value" {
		if fe, ok := b.Body.Attributes["for_each"]; ok {
			if set, ok := m.stringSet(fe.Expr); ok {
				return set
			}
		}
	}
	return nil
}

// CheckBuildGrants checks every Cloud Functions (gen2) resource's build:
// it names a build service account of its own (build_config.service_account),
// that account is granted every role in roles by google_project_iam_member
// resources, and the function's depends_on holds the enabled APIs
// (google_project_service), each of those grants, the secret accessor
// grants when it mounts secrets, and a time_sleep that
// itself depends on all of them and waits at least minWait (IAM grants
// take time to propagate; a build that starts before cannot read its
// source).
func (m *Module) CheckBuildGrants(roles []string, minWait time.Duration) []Problem {
	var ps []Problem
	for _, f := range m.Resources("google_cloudfunctions2_function") {
		a, ok := nestedAttr(f.Body, "build_config", "service_account")
		sa := ""
		if ok {
			sa = serviceAccountOf(a.Expr)
		}
		if sa == "" {
			ps = append(ps, Problem{f.Range, fmt.Sprintf("%s: build_config.service_account must name a google_service_account of this module (the default build account has no grants in a new project)", f.Address())})
			continue
		}
		granted := map[string]string{} // role → grant address
		for _, g := range m.Resources("google_project_iam_member") {
			if mem, ok := g.Body.Attributes["member"]; ok && refersTo(mem.Expr, sa) {
				for _, r := range m.roles(g) {
					granted[r] = g.Address()
				}
			}
		}
		needs := map[string]bool{}
		for _, r := range roles {
			g, ok := granted[r]
			if !ok {
				ps = append(ps, Problem{f.Range, fmt.Sprintf("%s: its build account %s is not granted %s (google_project_iam_member)", f.Address(), sa, r)})
				continue
			}
			needs[g] = true
		}
		if _, mounts := nestedAttr(f.Body, "service_config", "secret_volumes", "secret"); mounts {
			for _, g := range m.Resources("google_secret_manager_secret_iam_member") {
				needs[g.Address()] = true
			}
		}
		deps := dependsOn(f)
		var waits []Block
		for _, t := range m.Resources("time_sleep") {
			if !deps[t.Address()] {
				continue
			}
			waits = append(waits, t)
			d, ok := waitOf(t)
			if !ok {
				ps = append(ps, Problem{t.Range, fmt.Sprintf("%s: create_duration must be a literal duration (\"120s\")", t.Address())})
			} else if d < minWait {
				ps = append(ps, Problem{t.Range, fmt.Sprintf("%s: waits %s before %s builds; IAM propagation needs at least %s", t.Address(), d, f.Address(), minWait)})
			}
		}
		for _, api := range m.Resources("google_project_service") {
			if !deps[api.Address()] {
				ps = append(ps, Problem{f.Range, fmt.Sprintf("%s: depends_on lacks %s, so it may be created before the APIs it uses are enabled", f.Address(), api.Address())})
			}
		}
		for _, g := range sortedKeys(needs) {
			if !deps[g] {
				ps = append(ps, Problem{f.Range, fmt.Sprintf("%s: depends_on lacks %s, so its build may start before the grant exists", f.Address(), g)})
			}
			if !slices.ContainsFunc(waits, func(t Block) bool { return dependsOn(t)[g] }) {
				ps = append(ps, Problem{f.Range, fmt.Sprintf("%s: no time_sleep in its depends_on waits for %s to propagate", f.Address(), g)})
			}
		}
	}
	return ps
}

// waitOf is a time_sleep's create_duration.
func waitOf(t Block) (time.Duration, bool) {
	a, ok := t.Body.Attributes["create_duration"]
	if !ok {
		return 0, false
	}
	s, ok := literalString(a.Expr)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Workload is a function or Cloud Run service and its identities.
type Workload struct {
	Resource       string // address
	Key            string // the entry point of a function, the address of a service
	ServiceAccount string // google_service_account address, "" when none
	Identity       string // the cluster identity it mounts (a key of the identities local), "" when none
	Range          hcl.Range
}

// Workloads returns the functions and Cloud Run services with their runtime
// service account and the cluster identity their kubeconfig secret is, as
// found by evaluating the mounted secret with identities (a local that maps
// identity names to objects with a secret attribute) replaced by markers.
func (m *Module) Workloads(identities string) ([]Workload, []Problem) {
	idVal, err := m.evalLocal(identities, nil)
	var ps []Problem
	if err != nil || !knownObject(idVal) {
		return nil, []Problem{{Msg: fmt.Sprintf("local.%s: cannot evaluate the cluster identities (want an object literal of objects): %v", identities, err)}}
	}
	marked := map[string]cty.Value{}
	for k, v := range idVal.AsValueMap() {
		if !knownObject(v) {
			ps = append(ps, Problem{Msg: fmt.Sprintf("local.%s.%s is not an object literal", identities, k)})
			continue
		}
		attrs := v.AsValueMap()
		attrs["secret"] = cty.StringVal("identity:" + k)
		marked[k] = cty.ObjectVal(attrs)
	}
	override := map[string]cty.Value{identities: cty.ObjectVal(marked)}
	var out []Workload
	for _, b := range m.Blocks("resource") {
		var sa, secret *hclsyntax.Attribute
		key := b.Address()
		switch b.Type {
		case "google_cloudfunctions2_function":
			sa, _ = nestedAttr(b.Body, "service_config", "service_account_email")
			secret, _ = nestedAttr(b.Body, "service_config", "secret_volumes", "secret")
			if ep, ok := nestedAttr(b.Body, "build_config", "entry_point"); ok {
				if s, ok := literalString(ep.Expr); ok {
					key = s
				}
			}
		case "google_cloud_run_v2_service":
			sa, _ = nestedAttr(b.Body, "template", "service_account")
			secret, _ = nestedAttr(b.Body, "template", "volumes", "secret", "secret")
		default:
			continue
		}
		w := Workload{Resource: b.Address(), Key: key, Range: b.Range}
		if sa != nil {
			w.ServiceAccount = serviceAccountOf(sa.Expr)
		}
		if secret != nil {
			v, err := m.eval(secret.Expr, override)
			if err != nil || !v.IsKnown() || v.Type() != cty.String || !strings.HasPrefix(v.AsString(), "identity:") {
				ps = append(ps, Problem{secret.SrcRange, fmt.Sprintf("%s mounts a kubeconfig secret that is not one of local.%s (so its cluster rights cannot be checked)", b.Address(), identities)})
			} else {
				w.Identity = strings.TrimPrefix(v.AsString(), "identity:")
			}
		}
		out = append(out, w)
	}
	return out, ps
}

// CheckIdentities checks that every workload runs as a service account of
// its own (shared by no other workload and not the functions' build
// account), and that the cluster identity it mounts is the least one that
// covers what its code uses: uses maps a workload's Key to the node verbs
// its code calls (none for a workload that needs a kubeconfig only to
// start). identities is the local that lists each identity's verbs.
func (m *Module) CheckIdentities(identities string, uses map[string][]string) []Problem {
	ws, ps := m.Workloads(identities)
	idVal, err := m.evalLocal(identities, nil)
	if err != nil || !knownObject(idVal) {
		return ps
	}
	verbs := map[string][]string{}
	for k, v := range idVal.AsValueMap() {
		list, ok := literalStrings(v, "verbs")
		if !ok {
			ps = append(ps, Problem{Msg: fmt.Sprintf("local.%s.%s has no literal verbs list", identities, k)})
			continue
		}
		verbs[k] = list
	}
	builders := map[string]bool{}
	for _, f := range m.Resources("google_cloudfunctions2_function") {
		if a, ok := nestedAttr(f.Body, "build_config", "service_account"); ok {
			builders[serviceAccountOf(a.Expr)] = true
		}
	}
	owner := map[string]string{}
	for _, w := range ws {
		switch {
		case w.ServiceAccount == "":
			ps = append(ps, Problem{w.Range, fmt.Sprintf("%s runs without a service account of this module (the default compute account has Editor)", w.Resource)})
		case builders[w.ServiceAccount]:
			ps = append(ps, Problem{w.Range, fmt.Sprintf("%s runs as the build account %s", w.Resource, w.ServiceAccount)})
		case owner[w.ServiceAccount] != "":
			ps = append(ps, Problem{w.Range, fmt.Sprintf("%s runs as %s, which %s runs as too: each workload needs its own identity", w.Resource, w.ServiceAccount, owner[w.ServiceAccount])})
		default:
			owner[w.ServiceAccount] = w.Resource
		}
		if w.Identity == "" {
			continue
		}
		use, ok := uses[w.Key]
		if !ok {
			ps = append(ps, Problem{w.Range, fmt.Sprintf("%s (%s) mounts cluster identity %q but nothing says which node verbs its code uses", w.Resource, w.Key, w.Identity)})
			continue
		}
		have := verbs[w.Identity]
		if missing := minus(use, have); len(missing) > 0 {
			ps = append(ps, Problem{w.Range, fmt.Sprintf("%s mounts cluster identity %q, which lacks %s that its code uses", w.Resource, w.Identity, strings.Join(missing, ", "))})
			continue
		}
		for _, id := range sortedIdentities(verbs) {
			if len(minus(use, verbs[id])) == 0 && len(verbs[id]) < len(have) {
				ps = append(ps, Problem{w.Range, fmt.Sprintf("%s mounts cluster identity %q (%s), but its code uses only [%s]: %q would do", w.Resource, w.Identity, strings.Join(have, ", "), strings.Join(use, ", "), id)})
				break
			}
		}
	}
	return ps
}

// knownObject reports whether v is a known, non-null object.
func knownObject(v cty.Value) bool {
	return v.IsKnown() && !v.IsNull() && v.Type().IsObjectType()
}

// literalStrings returns the known strings of list attribute attr of v.
func literalStrings(v cty.Value, attr string) ([]string, bool) {
	if !knownObject(v) || !v.Type().HasAttribute(attr) {
		return nil, false
	}
	l := v.GetAttr(attr)
	if !l.IsWhollyKnown() || l.IsNull() || !l.CanIterateElements() {
		return nil, false
	}
	var out []string
	for _, x := range l.AsValueSlice() {
		if x.IsNull() || x.Type() != cty.String {
			return nil, false
		}
		out = append(out, x.AsString())
	}
	return out, true
}

func sortedIdentities(verbs map[string][]string) []string {
	out := make([]string, 0, len(verbs))
	for k := range verbs {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(verbs[out[i]]) != len(verbs[out[j]]) {
			return len(verbs[out[i]]) < len(verbs[out[j]])
		}
		return out[i] < out[j]
	})
	return out
}

// minus returns the elements of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// eval evaluates expr with every local it references evaluated the same
// way (override replaces a local's value), variables, resources, data
// sources and iterators unknown, and no functions.
func (m *Module) eval(expr hcl.Expression, override map[string]cty.Value) (cty.Value, error) {
	return m.evalIn(expr, override, map[string]bool{})
}

func (m *Module) evalLocal(name string, override map[string]cty.Value) (cty.Value, error) {
	if v, ok := override[name]; ok {
		return v, nil
	}
	e, ok := m.local(name)
	if !ok {
		return cty.NilVal, fmt.Errorf("no local %q", name)
	}
	return m.evalIn(e, override, map[string]bool{name: true})
}

func (m *Module) evalIn(expr hcl.Expression, override map[string]cty.Value, busy map[string]bool) (cty.Value, error) {
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}}
	locals := map[string]cty.Value{}
	for _, t := range expr.Variables() {
		root := t.RootName()
		if root != "local" {
			ctx.Variables[root] = cty.DynamicVal
			continue
		}
		if len(t) < 2 {
			continue
		}
		a, ok := t[1].(hcl.TraverseAttr)
		if !ok {
			continue
		}
		if _, done := locals[a.Name]; done {
			continue
		}
		if v, ok := override[a.Name]; ok {
			locals[a.Name] = v
			continue
		}
		l, ok := m.local(a.Name)
		if !ok || busy[a.Name] {
			locals[a.Name] = cty.DynamicVal
			continue
		}
		inner := map[string]bool{a.Name: true}
		for k := range busy {
			inner[k] = true
		}
		v, err := m.evalIn(l, override, inner)
		if err != nil {
			v = cty.DynamicVal
		}
		locals[a.Name] = v
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return v, nil
}

// Sender is a resource that calls a function or service with a
// Google-signed OIDC token: a push subscription or a scheduler job.
type Sender struct {
	Resource string
	Type     string
	Endpoint hclsyntax.Expression
	Audience hclsyntax.Expression
	Range    hcl.Range
}

// Senders returns every push subscription and scheduler job that sends an
// OIDC token.
func (m *Module) Senders() []Sender {
	var out []Sender
	for _, b := range m.Blocks("resource") {
		var block, endpoint string
		switch b.Type {
		case "google_pubsub_subscription":
			block, endpoint = "push_config", "push_endpoint"
		case "google_cloud_scheduler_job":
			block, endpoint = "http_target", "uri"
		default:
			continue
		}
		for _, c := range blocksOf(b.Body, block) {
			aud, ok := nestedAttr(c.Body, "oidc_token", "audience")
			ep, ok2 := c.Body.Attributes[endpoint]
			if !ok || !ok2 {
				continue
			}
			out = append(out, Sender{Resource: b.Address(), Type: b.Type, Endpoint: ep.Expr, Audience: aud.Expr, Range: aud.SrcRange})
		}
	}
	return out
}

// CheckAudiences checks that every sender mints its token for the URL it
// calls, that this URL is a local built as the receiver's run.app URL (the
// audience Cloud Run accepts without custom audiences; the cloudfunctions.net
// URL is not one) from the local naming the receiver, and, when the
// receiver checks the token itself, that it is told the same audience:
// receiverEnv maps a sender type to the environment variable that carries
// the expected audience on the receiver.
func (m *Module) CheckAudiences(receiverEnv map[string]string) []Problem {
	var ps []Problem
	env, _ := m.EnvVars()
	for _, s := range m.Senders() {
		aud, ok := refText(s.Audience)
		if !ok || !strings.HasPrefix(aud, "local.") {
			ps = append(ps, Problem{s.Range, fmt.Sprintf("%s: oidc_token.audience must be a local holding the receiver's URL, so sender and receiver share one value", s.Resource)})
			continue
		}
		if first, ok := templateHead(s.Endpoint); !ok || first != aud {
			ps = append(ps, Problem{s.Range, fmt.Sprintf("%s: mints tokens for %s but does not send to it (endpoint must start with ${%s})", s.Resource, aud, aud)})
		}
		urlExpr, _ := m.local(strings.TrimPrefix(aud, "local."))
		lit, refs := templateParts(urlExpr)
		if !strings.Contains(lit, ".run.app") || strings.Contains(lit, "cloudfunctions.net") {
			ps = append(ps, Problem{s.Range, fmt.Sprintf("%s: audience %s is not a run.app URL; Cloud Run accepts only its run.app URLs (or custom audiences) as audience", s.Resource, aud)})
			continue
		}
		receiver := ""
		for _, b := range m.Blocks("resource") {
			if b.Type != "google_cloudfunctions2_function" && b.Type != "google_cloud_run_v2_service" {
				continue
			}
			if n, ok := b.Body.Attributes["name"]; ok {
				if r, ok := refText(n.Expr); ok && slices.Contains(refs, r) {
					receiver = b.Address()
				}
			}
		}
		if receiver == "" {
			ps = append(ps, Problem{s.Range, fmt.Sprintf("%s: audience %s is not built from the name of a function or service of this module", s.Resource, aud)})
			continue
		}
		name, ok := receiverEnv[s.Type]
		if !ok {
			continue
		}
		found := false
		for _, v := range env {
			if v.Resource == receiver && v.Name == name {
				found = true
				if r, ok := refText(v.Value); !ok || r != aud {
					ps = append(ps, Problem{v.Range, fmt.Sprintf("%s: %s must be %s, the audience %s mints tokens for", receiver, name, aud, s.Resource)})
				}
			}
		}
		if !found {
			ps = append(ps, Problem{s.Range, fmt.Sprintf("%s: receiver %s does not set %s to the audience %s", s.Resource, receiver, name, aud)})
		}
	}
	return ps
}

// templateHead returns the reference a template (or a bare reference)
// starts with.
func templateHead(expr hclsyntax.Expression) (string, bool) {
	if s, ok := refText(expr); ok {
		return s, true
	}
	t, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok || len(t.Parts) == 0 {
		return "", false
	}
	if w, ok := t.Parts[0].(*hclsyntax.TemplateWrapExpr); ok {
		return refText(w.Wrapped)
	}
	return refText(t.Parts[0])
}

// templateParts returns a template's literal text and the references it
// interpolates.
func templateParts(expr hclsyntax.Expression) (string, []string) {
	t, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok {
		return "", nil
	}
	var lit strings.Builder
	var refs []string
	for _, p := range t.Parts {
		if l, ok := p.(*hclsyntax.LiteralValueExpr); ok && l.Val.Type() == cty.String {
			lit.WriteString(l.Val.AsString())
			continue
		}
		if r, ok := refText(p); ok {
			refs = append(refs, r)
		}
	}
	return lit.String(), refs
}

// LocalValue evaluates local name as far as it is known without a plan:
// variables, resources and data sources are unknown.
func (m *Module) LocalValue(name string) (cty.Value, error) {
	return m.evalLocal(name, nil)
}

// CheckManagedObjectLifecycle reports a bucket lifecycle rule that deletes
// objects in a bucket holding google_storage_bucket_object resources: the
// rule removes objects Terraform manages, and every later plan recreates
// them. A rule limited to a prefix (condition.matches_prefix) is taken to
// spare them.
func (m *Module) CheckManagedObjectLifecycle() []Problem {
	var ps []Problem
	for _, b := range m.Resources("google_storage_bucket") {
		managed := slices.ContainsFunc(m.Resources("google_storage_bucket_object"), func(o Block) bool {
			a, ok := o.Body.Attributes["bucket"]
			return ok && refersTo(a.Expr, b.Address())
		})
		if !managed {
			continue
		}
		for _, r := range blocksOf(b.Body, "lifecycle_rule") {
			del := false
			for _, a := range blocksOf(r.Body, "action") {
				if t, ok := a.Body.Attributes["type"]; ok {
					s, _ := literalString(t.Expr)
					del = del || s == "Delete"
				}
			}
			_, prefixed := nestedAttr(r.Body, "condition", "matches_prefix")
			if del && !prefixed {
				ps = append(ps, Problem{r.DefRange(), fmt.Sprintf("%s: a lifecycle rule deletes objects that Terraform manages (google_storage_bucket_object); the next plan recreates them", b.Address())})
			}
		}
	}
	return ps
}
