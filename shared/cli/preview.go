package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// previewPageSize is the page size asked of POST /v1/batches:preview, the
// API's largest: --dry-run=server prints every node.
const previewPageSize = 1000

// maxPreviewPages bounds the pages one dry run reads (a million nodes).
const maxPreviewPages = 1000

// preview is the part of a POST /v1/batches:preview answer (docs/api.md)
// the dry run prints.
type preview struct {
	Total           int            `json:"total"`
	WouldChange     int            `json:"would_change"`
	AlreadyInTarget int            `json:"already_in_target"`
	Skipped         int            `json:"skipped"`
	Nodes           []previewNode  `json:"nodes"`
	NextPageToken   string         `json:"next_page_token"`
	ServerDryRun    []dryRunCheck  `json:"server_dry_run"`
	Impact          *previewImpact `json:"impact"`
	ImpactError     string         `json:"impact_error"`
}

type previewNode struct {
	Node       string      `json:"node"`
	Changed    bool        `json:"changed"`
	SkipReason string      `json:"skip_reason"`
	Changes    []keyChange `json:"changes"`
}

// keyChange is one key's before → after; nil is absent.
type keyChange struct {
	Key    string  `json:"key"`
	Before *string `json:"before"`
	After  *string `json:"after"`
}

type dryRunCheck struct {
	Node  string `json:"node"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

type previewImpact struct {
	NoExecute       bool     `json:"no_execute"`
	Summary         string   `json:"summary"`
	Evictions       int      `json:"evictions"`
	BudgetsViolated int      `json:"budgets_violated"`
	Budgets         []budget `json:"budgets"`
	Nodes           []struct {
		Node string `json:"node"`
		Pods []struct {
			Namespace    string   `json:"namespace"`
			Name         string   `json:"name"`
			AfterSeconds int64    `json:"after_seconds"`
			DaemonSet    bool     `json:"daemonset"`
			Static       bool     `json:"static"`
			Budgets      []string `json:"budgets"`
		} `json:"pods"`
	} `json:"nodes"`
	Truncated bool     `json:"truncated"`
	Notes     []string `json:"notes"`
}

type budget struct {
	Namespace          string `json:"namespace"`
	Name               string `json:"name"`
	DisruptionsAllowed int    `json:"disruptions_allowed"`
	Evictions          int    `json:"evictions"`
	Violated           bool   `json:"violated"`
}

// runPreview is --dry-run=server: every page of POST /v1/batches:preview
// for the batch body, printed as a diff of each node. Nothing changes.
func runPreview(ctx context.Context, env Env, cl *client, output string, body submitBody) error {
	token := ""
	for page := 0; ; page++ {
		if page == maxPreviewPages {
			return fmt.Errorf("preview: more than %d pages", maxPreviewPages)
		}
		q := url.Values{"page_size": {fmt.Sprint(previewPageSize)}}
		if token != "" {
			q.Set("page_token", token)
		}
		_, raw, err := cl.do(ctx, http.MethodPost, "/v1/batches:preview?"+q.Encode(), body)
		if err != nil {
			return err
		}
		var p preview
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("decode preview: %w", err)
		}
		if err := printPreviewPage(env.Stdout, output, raw, p, page == 0); err != nil {
			return err
		}
		if p.NextPageToken == "" || p.NextPageToken == token {
			return nil
		}
		token = p.NextPageToken
	}
}

// printPreviewPage prints one page: -o json one answer per line as the API
// sent it (a JSON stream, one document per page), -o yaml the same as YAML
// documents, -o name the nodes that would change, otherwise the diff (the
// totals and the impact with the first page, which carries them).
func printPreviewPage(w io.Writer, format string, raw []byte, p preview, first bool) error {
	switch format {
	case "json":
		return printRaw(w, format, compactJSON(raw))
	case "yaml":
		if !first {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		return printRaw(w, format, raw)
	case "name":
		for _, n := range p.Nodes {
			if n.Changed {
				if _, err := fmt.Fprintf(w, "node/%s\n", n.Node); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var b strings.Builder
	if first {
		writePreviewHead(&b, p)
	}
	for _, n := range p.Nodes {
		writeNodeDiff(&b, n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// compactJSON puts an answer on one line (a stream of pages); an answer
// that is not JSON is returned as it is.
func compactJSON(raw []byte) []byte {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	var v json.RawMessage
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return raw
	}
	return []byte(b.String())
}

// writePreviewHead writes the totals, the impact of a NoExecute taint and
// the server-side dry run's refusals.
func writePreviewHead(b *strings.Builder, p preview) {
	fmt.Fprintf(b, "# dry run (server): %d nodes, %d would change, %d already in target, %d skipped; nothing was changed\n",
		p.Total, p.WouldChange, p.AlreadyInTarget, p.Skipped)
	if im := p.Impact; im != nil && (im.NoExecute || im.Evictions > 0) {
		fmt.Fprintf(b, "# impact: %s\n", im.Summary)
		for _, bu := range im.Budgets {
			if bu.Violated {
				fmt.Fprintf(b, "#   budget %s/%s violated: %d evictions, %d disruptions allowed (taint eviction ignores budgets)\n",
					bu.Namespace, bu.Name, bu.Evictions, bu.DisruptionsAllowed)
			}
		}
		for _, n := range im.Nodes {
			for _, pod := range n.Pods {
				when := "at once"
				if pod.AfterSeconds > 0 {
					when = fmt.Sprintf("after %ds", pod.AfterSeconds)
				}
				var tags []string
				if pod.DaemonSet {
					tags = append(tags, "daemonset")
				}
				if pod.Static {
					tags = append(tags, "static")
				}
				for _, bu := range pod.Budgets {
					tags = append(tags, "budget "+bu)
				}
				extra := ""
				if len(tags) > 0 {
					extra = " (" + strings.Join(tags, ", ") + ")"
				}
				fmt.Fprintf(b, "#   evicts pod %s/%s on node/%s %s%s\n", pod.Namespace, pod.Name, n.Node, when, extra)
			}
		}
		if im.Truncated {
			b.WriteString("#   … more pods: the list is truncated (the counts count all)\n")
		}
	}
	if p.Impact != nil {
		for _, n := range p.Impact.Notes {
			fmt.Fprintf(b, "# note: %s\n", n)
		}
	}
	if p.ImpactError != "" {
		fmt.Fprintf(b, "# impact unknown: %s\n", p.ImpactError)
	}
	for _, c := range p.ServerDryRun {
		if !c.OK {
			fmt.Fprintf(b, "# server dry run refused node/%s: %s\n", c.Node, c.Error)
		}
	}
}

// writeNodeDiff writes one node as kubectl diff marks lines: a header per
// node, then each key with its mark ("+" added, "-" removed, "~" a new
// value, " " as it is) and before → after; nodes already in the target
// state, or skipped, in one line.
func writeNodeDiff(b *strings.Builder, n previewNode) {
	switch {
	case n.SkipReason != "":
		fmt.Fprintf(b, "node/%s skipped: %s\n", n.Node, n.SkipReason)
		return
	case !n.Changed:
		fmt.Fprintf(b, "node/%s unchanged (already in target)\n", n.Node)
		return
	}
	fmt.Fprintf(b, "node/%s\n", n.Node)
	for _, k := range n.Changes {
		mark := "~"
		switch {
		case same(k.Before, k.After):
			mark = " "
		case k.Before == nil:
			mark = "+"
		case k.After == nil:
			mark = "-"
		}
		fmt.Fprintf(b, "%s %s: %s → %s\n", mark, k.Key, value(k.Before), value(k.After))
	}
}

func same(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// value is a value as the diff shows it: quoted, or (absent).
func value(v *string) string {
	if v == nil {
		return "(absent)"
	}
	return fmt.Sprintf("%q", *v)
}
