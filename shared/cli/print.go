package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

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

// printBatch prints one batch in the chosen format.
func printBatch(w io.Writer, format string, raw []byte, s status) error {
	switch format {
	case "json", "yaml":
		return printRaw(w, format, raw)
	case "name":
		_, err := fmt.Fprintf(w, "batch/%s\n", s.BatchID)
		return err
	}
	return printTable(w, format == "wide", []status{s})
}

// printList prints GET /v1/batches.
func printList(w io.Writer, format string, raw []byte) error {
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
		for _, s := range l.Batches {
			if _, err := fmt.Fprintf(w, "batch/%s\n", s.BatchID); err != nil {
				return err
			}
		}
		return nil
	}
	return printTable(w, format == "wide", l.Batches)
}

// printTable prints batches as kubectl prints resources.
func printTable(w io.Writer, wide bool, batches []status) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	head := "BATCH\tACTION\tSTATE\tDONE\tFAILED\tAGE"
	if wide {
		head += "\tOWNER\tATTEMPT\tCONCURRENCY\tREVERTS"
	}
	fmt.Fprintln(tw, head)
	for _, s := range batches {
		row := fmt.Sprintf("%s\t%s\t%s\t%d/%d\t%d\t%s", s.BatchID, orDash(s.Action), orDash(string(s.State)), s.Counts.Done(), s.Total, s.Counts.Failed, age(s.CreatedAt))
		if wide {
			row += fmt.Sprintf("\t%s\t%d\t%d\t%s", orDash(s.Owner), s.Attempt, s.Concurrency, orDash(s.Reverts))
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

// age is kubectl's short duration (5s, 3m, 2h, 4d).
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
