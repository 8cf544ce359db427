package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

// printRaw prints the API's answer as json (its bytes, unchanged) or yaml.
func printRaw(w io.Writer, format string, raw []byte) error {
	if format == "yaml" {
		y, err := yaml.JSONToYAML(raw)
		if err != nil {
			return fmt.Errorf("convert the answer to yaml: %w", err)
		}
		_, err = w.Write(y)
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if len(raw) == 0 || raw[len(raw)-1] != '\n' {
		_, err := io.WriteString(w, "\n")
		return err
	}
	return nil
}

// printBatch prints one batch in the chosen format; now is for its age.
func printBatch(w io.Writer, format string, raw []byte, s status, now time.Time) error {
	switch format {
	case "json", "yaml":
		return printRaw(w, format, raw)
	case "name":
		return printNames(w, []status{s})
	}
	if err := printTable(w, format == "wide", []status{s}, now); err != nil {
		return err
	}
	if line := impactLine(s); line != "" {
		_, err := fmt.Fprintln(w, line)
		return err
	}
	return nil
}

// impactLine is one line under a NoExecute batch's table saying what it
// recorded at submit that it would evict; "" for any other batch.
func impactLine(s status) string {
	if s.ImpactError != "" {
		return "Impact: unknown: " + printable(s.ImpactError)
	}
	im := s.Impact
	if im == nil {
		return ""
	}
	line := fmt.Sprintf("Impact: would evict %s on %s", plural(im.Evictions, "pod"), plural(im.NodesWithEvictions, "node"))
	if later := im.Evictions - im.EvictNow; later > 0 {
		line += fmt.Sprintf(" (%d at once, %d after their tolerationSeconds)", im.EvictNow, later)
	}
	line += fmt.Sprintf(", %s violated", plural(im.BudgetsViolated, "budget"))
	if im.BudgetsViolated > 0 {
		line += " (taint eviction ignores budgets)"
	}
	return line
}

func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// printable replaces what a terminal would act on (control characters,
// escape sequences) so text from the server is only ever shown.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

// printList prints GET /v1/batches; an empty table is said on errw, as
// kubectl says "No resources found".
func printList(w, errw io.Writer, format string, raw []byte, now time.Time) error {
	if format == "json" || format == "yaml" {
		return printRaw(w, format, raw)
	}
	var l struct {
		Batches []status `json:"batches"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("decode batch list: %w", err)
	}
	if format == "name" {
		return printNames(w, l.Batches)
	}
	if len(l.Batches) == 0 {
		_, err := fmt.Fprintln(errw, "No batches found.")
		return err
	}
	return printTable(w, format == "wide", l.Batches, now)
}

// printNames prints batch/ID per batch with cli-runtime's name printer.
// The nodebatch API is version v1 of no group (its paths are /v1/...), so
// a batch names itself "batch/ID", as kubectl names a core resource.
func printNames(w io.Writer, batches []status) error {
	p := &printers.NamePrinter{}
	for _, s := range batches {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("Batch")
		u.SetName(s.BatchID)
		if err := p.PrintObj(u, w); err != nil {
			return fmt.Errorf("print batch/%s: %w", s.BatchID, err)
		}
	}
	return nil
}

// batchColumns are the table's columns; Priority 1 shows only with -o wide,
// as kubectl's server-side tables mark theirs.
var batchColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "the batch id"},
	{Name: "Action", Type: "string", Description: "batch_label or batch_taint"},
	{Name: "State", Type: "string", Description: "pending, running, or a final state"},
	{Name: "Done", Type: "string", Description: "nodes done of the batch's nodes"},
	{Name: "Failed", Type: "integer", Description: "nodes failed"},
	{Name: "Age", Type: "string", Description: "since the batch was created"},
	{Name: "Owner", Type: "string", Priority: 1, Description: "who submitted it"},
	{Name: "Attempt", Type: "integer", Priority: 1, Description: "1, then one more per retry"},
	{Name: "Concurrency", Type: "integer", Priority: 1, Description: "nodes patched at once"},
	{Name: "Reverts", Type: "string", Priority: 1, Description: "the batch this one reverts"},
}

// batchTable is batches as a metav1.Table, what kubectl prints from.
func batchTable(batches []status, now time.Time) *metav1.Table {
	t := &metav1.Table{ColumnDefinitions: batchColumns}
	for _, s := range batches {
		t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{
			s.BatchID, orDash(s.Action), orDash(string(s.State)),
			fmt.Sprintf("%d/%d", s.Counts.Done(), s.Total), s.Counts.Failed, age(now, s.CreatedAt),
			orDash(s.Owner), s.Attempt, s.Concurrency, orDash(s.Reverts),
		}})
	}
	return t
}

// printTable prints batches with cli-runtime's table printer, as kubectl
// prints resources (upper-case headers, aligned columns, control
// characters in a cell escaped).
func printTable(w io.Writer, wide bool, batches []status, now time.Time) error {
	p := printers.NewTablePrinter(printers.PrintOptions{Wide: wide})
	if err := p.PrintObj(batchTable(batches, now), w); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	return nil
}

// age is kubectl's AGE column (duration.HumanDuration: 45s, 3m10s, 5h, 4d).
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}
