package hclcheck

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// MetricQuery is one PromQL query of a dashboard widget or an alert condition,
// as Terraform would send it (variables at their defaults).
type MetricQuery struct {
	Resource string // e.g. "google_monitoring_dashboard.nodebatch"
	Where    string // the widget's title or the condition's display name
	PromQL   string
	Range    hcl.Range
}

// MonitoringQueries evaluates the Cloud Monitoring dashboards and alert
// policies: each dashboard's dashboard_json must be valid JSON whose every
// widget has a PromQL query (timeSeriesQuery.prometheusQuery), and each
// alert policy must notify var.notification_channels and have a condition.
// It returns every PromQL query found (CheckQueries checks their names).
func (m *Module) MonitoringQueries() ([]MetricQuery, []Problem) {
	ctx := m.evalContext()
	var qs []MetricQuery
	var ps []Problem
	for _, r := range m.Resources("google_monitoring_dashboard") {
		a := r.Body.Attributes["dashboard_json"]
		if a == nil {
			ps = append(ps, Problem{r.Range, r.Address() + ": no dashboard_json"})
			continue
		}
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() || !v.IsWhollyKnown() || v.Type() != cty.String {
			ps = append(ps, Problem{a.SrcRange, fmt.Sprintf("%s: dashboard_json does not evaluate to a string: %v", r.Address(), diags)})
			continue
		}
		var dash map[string]any
		if err := json.Unmarshal([]byte(v.AsString()), &dash); err != nil {
			ps = append(ps, Problem{a.SrcRange, fmt.Sprintf("%s: dashboard_json is not valid JSON: %v", r.Address(), err)})
			continue
		}
		widgets := dashboardWidgets(dash)
		if len(widgets) == 0 {
			ps = append(ps, Problem{a.SrcRange, r.Address() + ": dashboard has no widget"})
		}
		for i, w := range widgets {
			title, _ := w["title"].(string)
			if title == "" {
				title = fmt.Sprintf("widget %d", i)
			}
			found := promQueries(w)
			if len(found) == 0 {
				ps = append(ps, Problem{a.SrcRange, fmt.Sprintf("%s: widget %q has no PromQL query (timeSeriesQuery.prometheusQuery)", r.Address(), title)})
			}
			for _, q := range found {
				qs = append(qs, MetricQuery{Resource: r.Address(), Where: title, PromQL: q, Range: a.SrcRange})
			}
		}
	}
	for _, r := range m.Resources("google_monitoring_alert_policy") {
		nc := r.Body.Attributes["notification_channels"]
		if nc == nil || !isTraversal(nc.Expr, "var.notification_channels") {
			ps = append(ps, Problem{r.Range, r.Address() + ": notification_channels must be var.notification_channels"})
		}
		conds := 0
		for _, c := range r.Body.Blocks {
			if c.Type != "conditions" {
				continue
			}
			conds++
			where := "condition"
			if dn := c.Body.Attributes["display_name"]; dn != nil {
				if v, d := dn.Expr.Value(ctx); !d.HasErrors() && v.IsWhollyKnown() && v.Type() == cty.String {
					where = v.AsString()
				}
			}
			for _, inner := range c.Body.Blocks {
				if inner.Type != "condition_prometheus_query_language" {
					continue
				}
				qa := inner.Body.Attributes["query"]
				if qa == nil {
					ps = append(ps, Problem{inner.DefRange(), r.Address() + ": PromQL condition without query"})
					continue
				}
				v, diags := qa.Expr.Value(ctx)
				if diags.HasErrors() || !v.IsWhollyKnown() || v.Type() != cty.String {
					ps = append(ps, Problem{qa.SrcRange, fmt.Sprintf("%s: query does not evaluate to a string: %v", r.Address(), diags)})
					continue
				}
				qs = append(qs, MetricQuery{Resource: r.Address(), Where: where, PromQL: v.AsString(), Range: qa.SrcRange})
			}
		}
		if conds == 0 {
			ps = append(ps, Problem{r.Range, r.Address() + ": alert policy without conditions"})
		}
	}
	return qs, ps
}

// CheckQueries checks that every metric a query names is one of metrics
// (the OpenTelemetry names, as the Telemetry API stores them) and every
// label it matches or groups by is one of labels.
func CheckQueries(qs []MetricQuery, metrics, labels []string) []Problem {
	var ps []Problem
	for _, q := range qs {
		names, ls, err := PromQLNames(q.PromQL)
		if err != nil {
			ps = append(ps, Problem{q.Range, fmt.Sprintf("%s %q: %v", q.Resource, q.Where, err)})
			continue
		}
		if len(names) == 0 {
			ps = append(ps, Problem{q.Range, fmt.Sprintf("%s %q: query %q names no metric", q.Resource, q.Where, q.PromQL)})
		}
		for _, n := range names {
			if !slices.Contains(metrics, n) {
				ps = append(ps, Problem{q.Range, fmt.Sprintf("%s %q: metric %q is not an instrument of shared/telemetry", q.Resource, q.Where, n)})
			}
		}
		for _, l := range ls {
			if !slices.Contains(labels, l) {
				ps = append(ps, Problem{q.Range, fmt.Sprintf("%s %q: label %q is not an attribute of shared/telemetry's metrics", q.Resource, q.Where, l)})
			}
		}
	}
	return ps
}

// evalContext evaluates expressions as Terraform would with every variable
// at its default (a variable without one is the string "<name>") and
// every local that can be evaluated so.
func (m *Module) evalContext() *hcl.EvalContext {
	vars := map[string]cty.Value{}
	for _, v := range m.Blocks("variable") {
		val := cty.StringVal("<" + v.Name + ">")
		if d := v.Body.Attributes["default"]; d != nil {
			if dv, diags := d.Expr.Value(nil); !diags.HasErrors() {
				val = dv
			}
		}
		vars[v.Name] = val
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)},
		Functions: map[string]function.Function{
			"jsonencode": stdlib.JSONEncodeFunc, "floor": stdlib.FloorFunc, "format": stdlib.FormatFunc,
			"join": stdlib.JoinFunc, "lower": stdlib.LowerFunc, "upper": stdlib.UpperFunc,
			"min": stdlib.MinFunc, "max": stdlib.MaxFunc, "replace": stdlib.ReplaceFunc,
		},
	}
	// Locals may refer to each other: evaluate until nothing more resolves.
	locals := map[string]cty.Value{}
	for changed := true; changed; {
		changed = false
		ctx.Variables["local"] = cty.ObjectVal(locals)
		for _, l := range m.Blocks("local") {
			if _, ok := locals[l.Name]; ok {
				continue
			}
			if v, diags := l.Expr.Value(ctx); !diags.HasErrors() {
				locals[l.Name] = v
				changed = true
			}
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx
}

func isTraversal(e hclsyntax.Expression, addr string) bool {
	st, ok := e.(*hclsyntax.ScopeTraversalExpr)
	if !ok {
		return false
	}
	var parts []string
	for _, t := range st.Traversal {
		switch s := t.(type) {
		case hcl.TraverseRoot:
			parts = append(parts, s.Name)
		case hcl.TraverseAttr:
			parts = append(parts, s.Name)
		default:
			return false
		}
	}
	return strings.Join(parts, ".") == addr
}

// dashboardWidgets returns the widgets of a dashboard's layouts (mosaic and
// grid tiles, rows and columns).
func dashboardWidgets(dash map[string]any) []map[string]any {
	var out []map[string]any
	var walk func(v any, inWidget bool)
	walk = func(v any, inWidget bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "widget" || k == "widgets" {
					if w, ok := c.(map[string]any); ok {
						out = append(out, w)
						continue
					}
					if ws, ok := c.([]any); ok {
						for _, e := range ws {
							if w, ok := e.(map[string]any); ok {
								out = append(out, w)
							}
						}
						continue
					}
				}
				walk(c, inWidget)
			}
		case []any:
			for _, c := range x {
				walk(c, inWidget)
			}
		}
	}
	walk(dash, false)
	return out
}

// promQueries returns every prometheusQuery string under v.
func promQueries(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "prometheusQuery" && strings.TrimSpace(s) != "" {
				out = append(out, s)
				continue
			}
			out = append(out, promQueries(c)...)
		}
	case []any:
		for _, c := range x {
			out = append(out, promQueries(c)...)
		}
	}
	return out
}
