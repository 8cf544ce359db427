package hclcheck

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPromQLNames(t *testing.T) {
	tests := []struct {
		q               string
		metrics, labels []string
		err             bool
	}{
		{q: `sum by ("nodebatch.outcome") (rate({"nodebatch.node.patches"}[5m]))`, metrics: []string{"nodebatch.node.patches"}, labels: []string{"nodebatch.outcome"}},
		{q: `histogram_quantile(0.95, sum by (le) (rate({"a.b"}[5m])))`, metrics: []string{"a.b"}, labels: []string{"le"}},
		{q: `sum(rate({"a", "x.y"="failed"}[15m])) / clamp_min(sum(rate({'a'}[15m])), 1e-9) > 0.05`, metrics: []string{"a"}, labels: []string{"x.y"}},
		{q: `rate(nodebatch_node_patches_total{outcome=~"f.*"}[5m]) offset 1h`, metrics: []string{"nodebatch_node_patches_total"}, labels: []string{"outcome"}},
		{q: `sum({"a"}) and on (job) up`, metrics: []string{"a", "up"}, labels: []string{"job"}},
		{q: `{"a", "b"=}`, err: true},
		{q: `{"a"`, err: true},
		{q: `rate({"a"}[5m]`, metrics: []string{"a"}},
		{q: `"unterminated`, err: true},
	}
	for _, tc := range tests {
		m, l, err := PromQLNames(tc.q)
		if (err != nil) != tc.err {
			t.Errorf("PromQLNames(%q) error = %v, want error %v", tc.q, err, tc.err)
			continue
		}
		if tc.err {
			continue
		}
		if diff := cmp.Diff([2][]string{tc.metrics, tc.labels}, [2][]string{m, l}); diff != "" {
			t.Errorf("PromQLNames(%q) (-want +got):\n%s", tc.q, diff)
		}
	}
}

// FuzzPromQLNames: no query crashes the parser.
func FuzzPromQLNames(f *testing.F) {
	for _, s := range []string{`sum by ("a.b") (rate({"c", "d"="e"}[5m]))`, `x{y="z"}`, `{"a`, `'\'`, `by (`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) { _, _, _ = PromQLNames(q) })
}

const monitoringTF = `
variable "notification_channels" {
  description = "channels"
  type        = list(string)
  default     = []
}
variable "name_prefix" {
  description = "prefix"
  type        = string
}
locals {
  promql = {
    good = "sum(rate({\"nodebatch.node.patches\"}[5m]))"
    QUERY
  }
}
resource "google_monitoring_dashboard" "d" {
  dashboard_json = jsonencode({
    displayName = "${var.name_prefix}: x"
    mosaicLayout = { tiles = [for i, q in [local.promql.good, local.promql.other] : {
      xPos = i * 6
      widget = { title = "t${i}", xyChart = { dataSets = [{ timeSeriesQuery = { prometheusQuery = q } }] } }
    }] }
  })
}
resource "google_monitoring_alert_policy" "a" {
  display_name          = "a"
  combiner              = "OR"
  notification_channels = CHANNELS
  conditions {
    display_name = "c"
    condition_prometheus_query_language {
      query = "${local.promql.other} > 0"
    }
  }
}
`

func TestMonitoringQueries(t *testing.T) {
	metrics := []string{"nodebatch.node.patches", "nodebatch.events.dead_lettered"}
	labels := []string{"nodebatch.outcome"}
	tests := []struct {
		name, query, channels string
		want                  []string // problem substrings, in order
	}{
		{"consistent", `other = "sum({\"nodebatch.events.dead_lettered\"})"`, "var.notification_channels", nil},
		{"unknown metric", `other = "sum({\"nodebatch.node.patchez\"})"`, "var.notification_channels",
			[]string{`"t1": metric "nodebatch.node.patchez" is not an instrument`, `"c": metric "nodebatch.node.patchez" is not an instrument`}},
		{"Prometheus-normalized name", `other = "sum(rate(nodebatch_node_patches_total[5m]))"`, "var.notification_channels",
			[]string{`metric "nodebatch_node_patches_total" is not an instrument`, `metric "nodebatch_node_patches_total" is not an instrument`}},
		{"unknown label", `other = "sum by (\"node\") ({\"nodebatch.node.patches\"})"`, "var.notification_channels",
			[]string{`label "node" is not an attribute`, `label "node" is not an attribute`}},
		{"channels not the variable", `other = "sum({\"nodebatch.events.dead_lettered\"})"`, `["projects/p/notificationChannels/1"]`,
			[]string{"notification_channels must be var.notification_channels"}},
		{"widget without query", `other = ""`, "var.notification_channels",
			[]string{`widget "t1" has no PromQL query`, `"c": query " > 0" names no metric`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.NewReplacer("QUERY", tc.query, "CHANNELS", tc.channels).Replace(monitoringTF)
			m, err := Parse(map[string][]byte{"monitoring.tf": []byte(src)})
			if err != nil {
				t.Fatal(err)
			}
			qs, ps := m.MonitoringQueries()
			ps = append(ps, CheckQueries(qs, metrics, labels)...)
			if len(ps) != len(tc.want) {
				t.Fatalf("problems = %v, want %d: %q", ps, len(tc.want), tc.want)
			}
			for i, p := range ps {
				if !strings.Contains(p.String(), tc.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, p, tc.want[i])
				}
			}
		})
	}
}
