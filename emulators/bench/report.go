package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodebatch/nodebatch/shared/model"
)

// Tool is what changed the nodes in a row.
type Tool string

// Tools compared.
const (
	ToolKubectl   Tool = "kubectl"
	ToolClientGo  Tool = "client-go"
	ToolNodebatch Tool = "nodebatch"
)

// Op is the kind of change a row makes to every node.
type Op string

// Ops measured. Every run sets a value no earlier run set, so every node
// really changes every time.
const (
	OpLabel Op = "label" // set label bench=<value>
	OpTaint Op = "taint" // set taint bench=<value>:NoSchedule
)

// Telemetry settings of a nodebatch row (row 7, the tracing cost).
const (
	// TelemetryOff is the product as deployed with no exporter: the
	// no-op tracer, the metrics counted and served on /metrics.
	TelemetryOff = "off"
	// TelemetryTraced adds tracing: OTLP/gRPC to an in-process receiver
	// (SpanSink), sampler always_on, every request flushed.
	TelemetryTraced = "traced"
)

// Row is one line of the throughput table: one tool, one op, one
// concurrency, repeated. Walls holds the raw wall times; Finish fills the
// derived figures.
type Row struct {
	ID          string          `json:"id"` // row number of issue 8 ("1".."5")
	Name        string          `json:"name"`
	Tool        Tool            `json:"tool"`
	Op          Op              `json:"op"`
	Concurrency int             `json:"concurrency"` // 1 for sequential tools
	Nodes       int             `json:"nodes"`
	Latency     time.Duration   `json:"-"` // added to every API call by the proxy
	Ideal       time.Duration   `json:"-"` // Nodes × Latency / Concurrency, when Latency > 0
	Walls       []time.Duration `json:"-"`
	Err         string          `json:"error,omitempty"` // why the row has fewer runs than asked
	// Timings are nodebatch's own per-batch figures (final message), one
	// per run: where a nodebatch row's time goes, seen from inside.
	Timings []model.Timing `json:"batch_timing,omitempty"`
	// Breakdowns split each nodebatch run's wall time into stages.
	Breakdowns []Breakdown `json:"breakdown,omitempty"`
	// CPU is where the machine's CPU went during each run; CPUMedian is
	// each of its figures' median over the runs.
	CPU       []CPURun `json:"cpu_runs,omitempty"`
	CPUMedian *CPURun  `json:"cpu_median,omitempty"`
	// Telemetry is the product's telemetry in row 7 (TelemetryOff or
	// TelemetryTraced); "" for the other rows (no telemetry at all).
	Telemetry string `json:"telemetry,omitempty"`
	// Spans are the spans the OTLP receiver got during each run (traced
	// rows).
	Spans []int64 `json:"spans,omitempty"`
	// VsTelemetryOff is this median ÷ the TelemetryOff row's median at
	// the same op, c and nodes (traced rows): the cost of tracing, > 1
	// slower.
	VsTelemetryOff float64 `json:"vs_telemetry_off,omitempty"`

	LatencyMS   int       `json:"proxy_latency_ms"`
	WallsS      []float64 `json:"walls_s"`
	MedianS     float64   `json:"median_s"`
	MinS        float64   `json:"min_s"`
	MaxS        float64   `json:"max_s"`
	NodesPerS   float64   `json:"nodes_per_s"`
	IdealS      float64   `json:"ideal_s,omitempty"`
	VsClientGo  float64   `json:"vs_client_go,omitempty"`  // client-go median at the same c ÷ this median (>1: faster)
	VsKubectl   float64   `json:"vs_kubectl,omitempty"`    // kubectl median (same op) ÷ this median (>1: faster)
	WallVsIdeal float64   `json:"wall_vs_ideal,omitempty"` // this median ÷ ideal (1.0 = ideal; ≤1.1 is the goal)
}

// DelayRow is one line of the progress-delay table (row 6): how long after
// a node's result was recorded a WebSocket client saw a count including it.
type DelayRow struct {
	Clients     int             `json:"clients"`
	Nodes       int             `json:"nodes"`
	Concurrency int             `json:"concurrency"`
	Samples     []time.Duration `json:"-"`
	Messages    int             `json:"messages"` // progress messages received, all clients
	Err         string          `json:"error,omitempty"`
	// CPU is where the machine's CPU went from submit to the last client
	// seeing the final message (the clients' dialing left out).
	CPU *CPURun `json:"cpu,omitempty"`

	Count int     `json:"samples"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

// Report is one bench run: the machine, every row, and footnotes.
type Report struct {
	Machine  Machine    `json:"machine"`
	Started  time.Time  `json:"started"`
	Command  string     `json:"command"`
	Nodes    int        `json:"nodes"`
	Repeat   int        `json:"repeat"`
	Selector string     `json:"selector"` // what kubectl -l and nodebatch's selector matched: exactly the bench nodes
	Rows     []Row      `json:"rows"`
	Delays   []DelayRow `json:"progress_delay"`
	Notes    []string   `json:"notes,omitempty"`
}

// Finish computes every row's derived figures. Call it once all rows are in.
func (r *Report) Finish() {
	for i := range r.Rows {
		finishRow(&r.Rows[i])
	}
	for i := range r.Rows {
		row := &r.Rows[i]
		if base := r.find(ToolClientGo, row.Op, row.Concurrency, row.Nodes, row.Latency); base != nil && base != row {
			row.VsClientGo = ratio(base.MedianS, row.MedianS)
		}
		if row.Telemetry == TelemetryTraced {
			if off := r.findTelemetry(TelemetryOff, row.Op, row.Concurrency, row.Nodes); off != nil {
				row.VsTelemetryOff = ratio(row.MedianS, off.MedianS)
			}
		}
		if row.Tool != ToolKubectl && row.Latency == 0 {
			if k := r.find(ToolKubectl, row.Op, 1, row.Nodes, 0); k != nil {
				row.VsKubectl = ratio(k.MedianS, row.MedianS)
			}
		}
	}
	for i := range r.Delays {
		d := &r.Delays[i]
		d.Count = len(d.Samples)
		d.P50MS = ms(Percentile(d.Samples, 50))
		d.P99MS = ms(Percentile(d.Samples, 99))
		d.MaxMS = ms(Percentile(d.Samples, 100))
	}
}

func ms(d time.Duration) float64 { return seconds(d) * 1000 }

func finishRow(row *Row) {
	row.LatencyMS = int(row.Latency / time.Millisecond)
	row.CPUMedian = MedianCPU(row.CPU)
	row.WallsS = row.WallsS[:0]
	for _, w := range row.Walls {
		row.WallsS = append(row.WallsS, seconds(w))
	}
	if len(row.Walls) == 0 {
		return
	}
	med := Median(row.Walls)
	row.MedianS = seconds(med)
	row.MinS = seconds(Percentile(row.Walls, 0))
	row.MaxS = seconds(Percentile(row.Walls, 100))
	row.NodesPerS = float64(int(float64(row.Nodes)/med.Seconds()*10)) / 10
	if row.Ideal > 0 {
		row.IdealS = seconds(row.Ideal)
		row.WallVsIdeal = ratio(row.MedianS, row.IdealS)
	}
}

// find returns the first finished row matching, or nil.
func (r *Report) find(tool Tool, op Op, c, nodes int, latency time.Duration) *Row {
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Tool == tool && row.Op == op && row.Concurrency == c && row.Nodes == nodes && row.Latency == latency && row.MedianS > 0 {
			return row
		}
	}
	return nil
}

// findTelemetry returns the first finished row 7 row with telemetry tel
// at op, c and nodes, or nil.
func (r *Report) findTelemetry(tel string, op Op, c, nodes int) *Row {
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Telemetry == tel && row.Op == op && row.Concurrency == c && row.Nodes == nodes && row.MedianS > 0 {
			return row
		}
	}
	return nil
}

// WriteTable renders the report as Markdown: the machine, the throughput
// table, the progress-delay table and the footnotes.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %.1f GiB memory, %s %s/%s, load average at start %s. Run %s, %d repeats per row.\n\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.GoVersion, m.OS, m.Arch, orUnknown(m.LoadAvg), r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Repeat)
	b.WriteString("| # | what | op | c | nodes | proxy latency | wall median (s) | spread min-max (s) | nodes/s | × client-go same c | × kubectl | wall ÷ ideal |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		lat := "-"
		if row.Latency > 0 {
			lat = row.Latency.String()
		}
		if row.Err != "" && len(row.Walls) == 0 {
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %s | FAILED: %s | | | | | |\n",
				row.ID, row.Name, row.Op, row.Concurrency, row.Nodes, lat, oneLine(row.Err))
			continue
		}
		spread := fmt.Sprintf("%.2f-%.2f", row.MinS, row.MaxS)
		if row.Err != "" {
			spread += fmt.Sprintf(" (%d runs; error: %s)", len(row.Walls), oneLine(row.Err))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %s | %.2f | %s | %.1f | %s | %s | %s |\n",
			row.ID, row.Name, row.Op, row.Concurrency, row.Nodes, lat, row.MedianS, spread, row.NodesPerS,
			orDash(row.VsClientGo, "×"), orDash(row.VsKubectl, "×"), idealCell(row))
	}
	writeTracingCost(&b, r)
	writeBreakdowns(&b, r.Rows)
	writeCPU(&b, r)
	if len(r.Delays) > 0 {
		b.WriteString("\nProgress delay (row 6): node result recorded → a WebSocket client sees a count that includes it.\n\n")
		b.WriteString("| clients | nodes | c | samples | messages received | p50 (ms) | p99 (ms) | max (ms) |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|\n")
		for _, d := range r.Delays {
			if d.Err != "" && d.Count == 0 {
				fmt.Fprintf(&b, "| %d | %d | %d | FAILED: %s | | | | |\n", d.Clients, d.Nodes, d.Concurrency, oneLine(d.Err))
				continue
			}
			fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %.1f | %.1f | %.1f |\n",
				d.Clients, d.Nodes, d.Concurrency, d.Count, d.Messages, d.P50MS, d.P99MS, d.MaxMS)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write bench table: %w", err)
	}
	return nil
}

// writeTracingCost adds the table of row 7: the same batch with telemetry
// off and with tracing on, side by side.
func writeTracingCost(b *strings.Builder, r *Report) {
	header := false
	for _, on := range r.Rows {
		if on.Telemetry != TelemetryTraced || on.MedianS == 0 {
			continue
		}
		off := r.findTelemetry(TelemetryOff, on.Op, on.Concurrency, on.Nodes)
		if off == nil {
			continue
		}
		if !header {
			b.WriteString("\nTracing cost (row 7): the same batch on two products in this process, telemetry off (no exporter) and tracing on (OTLP/gRPC to an in-process receiver, sampler always_on), run round-robin:\n\n")
			b.WriteString("| op | c | nodes | off: wall median (s) | on: wall median (s) | on ÷ off | bench process CPU off / on (s) | spans per run |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|\n")
			header = true
		}
		cpu := func(row *Row) string {
			if row.CPUMedian == nil {
				return "-"
			}
			return fmt.Sprintf("%.2f", row.CPUMedian.ByProcess[CPUBench])
		}
		var spans []time.Duration // Median works on durations
		for _, n := range on.Spans {
			spans = append(spans, time.Duration(n))
		}
		fmt.Fprintf(b, "| %s | %d | %d | %.2f | %.2f | %.2f× | %s / %s | %d |\n",
			on.Op, on.Concurrency, on.Nodes, off.MedianS, on.MedianS, on.VsTelemetryOff, cpu(off), cpu(&on), int64(Median(spans)))
	}
}

// writeBreakdowns adds the table of where nodebatch rows spend their time:
// per stage, the median over the repeats.
func writeBreakdowns(b *strings.Builder, rows []Row) {
	header := false
	for _, row := range rows {
		if len(row.Breakdowns) == 0 {
			continue
		}
		if !header {
			b.WriteString("\nWhere nodebatch's time goes, along the lane that finished last (in each run the stages add up to its wall time; shown: each stage's median over the repeats, all runs in the JSON):\n\n")
			b.WriteString("| # | op | c | nodes | proxy latency | submit → 202 | 202 → lane's 1st patch | lane: API calls | lane: gaps between nodes | last patch → final commit | commit → `complete` | per node: API p50 / gap p50 |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			header = true
		}
		lat := "-"
		if row.Latency > 0 {
			lat = row.Latency.String()
		}
		stage := func(f func(Breakdown) float64) string {
			var v []time.Duration
			for _, bd := range row.Breakdowns {
				v = append(v, time.Duration(f(bd)*float64(time.Millisecond)))
			}
			return fmt.Sprintf("%.2f s", Median(v).Seconds())
		}
		perNode := func(f func(Breakdown) float64) float64 {
			var v []time.Duration
			for _, bd := range row.Breakdowns {
				v = append(v, time.Duration(f(bd)*float64(time.Millisecond)))
			}
			return ms(Median(v))
		}
		id := row.ID
		if row.Telemetry != "" {
			id += " (" + row.Telemetry + ")"
		}
		fmt.Fprintf(b, "| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f ms |\n", id, row.Op, row.Concurrency, row.Nodes, lat,
			stage(func(x Breakdown) float64 { return x.SubmitMS }),
			stage(func(x Breakdown) float64 { return x.LaneStartMS }),
			stage(func(x Breakdown) float64 { return x.LaneAPIMS }),
			stage(func(x Breakdown) float64 { return x.LaneGapsMS }),
			stage(func(x Breakdown) float64 { return x.FinishMS }),
			stage(func(x Breakdown) float64 { return x.RelayMS }),
			perNode(func(x Breakdown) float64 { return x.APIP50MS }),
			perNode(func(x Breakdown) float64 { return x.GapP50MS }))
	}
}

// writeCPU adds the table of CPU seconds by process: per row, each figure's
// median over the repeats; row 6 has one run per client count.
func writeCPU(b *strings.Builder, r *Report) {
	type line struct {
		id, what, op string
		c, nodes     int
		lat          time.Duration
		cpu          *CPURun
	}
	var lines []line
	for _, row := range r.Rows {
		if row.CPUMedian != nil {
			lines = append(lines, line{row.ID, row.Name, string(row.Op), row.Concurrency, row.Nodes, row.Latency, row.CPUMedian})
		}
	}
	for _, d := range r.Delays {
		if d.CPU != nil {
			what := fmt.Sprintf("progress delay, %d clients", d.Clients)
			if d.Clients == 1 {
				what = "progress delay, 1 client"
			}
			lines = append(lines, line{"6", what, string(OpLabel), d.Concurrency, d.Nodes, 0, d.CPU})
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "\nWhere the machine's CPU goes (CPU seconds per run, median over the repeats; capacity = run wall × %d CPUs):\n\n", r.Machine.CPUs)
	b.WriteString("| # | what | op | c | nodes | proxy latency | kube-apiserver | etcd | Firestore emulator | Pub/Sub emulator | bench process | kubectl | other | total | capacity | CPU busy |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range lines {
		lat := "-"
		if l.lat > 0 {
			lat = l.lat.String()
		}
		cell := func(name string) string {
			v, ok := l.cpu.ByProcess[name]
			if !ok {
				return "-"
			}
			return fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %.0f %% |\n",
			l.id, l.what, l.op, l.c, l.nodes, lat,
			cell(CPUAPIServer), cell(CPUEtcd), cell(CPUFirestore), cell(CPUPubSub), cell(CPUBench), cell(CPUKubectl),
			l.cpu.OtherS, l.cpu.TotalS, l.cpu.CapacityS, l.cpu.BusyPct)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func idealCell(row Row) string {
	if row.IdealS == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f (ideal %.2f s)", row.WallVsIdeal, row.IdealS)
}

func orDash(v float64, suffix string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%s", v, suffix)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// WriteJSON writes the report as indented JSON to path, creating its folder.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode bench report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write bench report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write bench report: %w", err)
	}
	return nil
}
