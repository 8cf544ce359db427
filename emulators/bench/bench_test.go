package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func ms_(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	samples := []time.Duration{ms_(5), ms_(1), ms_(4), ms_(2), ms_(3), ms_(10), ms_(9), ms_(8), ms_(7), ms_(6)}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{0, ms_(1)}, {10, ms_(1)}, {11, ms_(2)}, {50, ms_(5)}, {51, ms_(6)}, {99, ms_(10)}, {100, ms_(10)},
	}
	for _, tc := range tests {
		if got := Percentile(samples, tc.p); got != tc.want {
			t.Errorf("Percentile(1..10 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil, 50) = %v, want 0", got)
	}
	if samples[0] != ms_(5) {
		t.Errorf("Percentile sorted its input: samples[0] = %v, want 5ms", samples[0])
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{ms_(7)}, ms_(7)},
		{[]time.Duration{ms_(9), ms_(1), ms_(5)}, ms_(5)},
		{[]time.Duration{ms_(4), ms_(1), ms_(2), ms_(10)}, ms_(3)},
	}
	for _, tc := range tests {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestDelays(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	at := func(n int) time.Time { return t0.Add(ms_(n)) }
	// Five nodes finish at 10, 20, 30, 40, 50 ms (given unsorted).
	finished := []time.Time{at(30), at(10), at(50), at(20), at(40)}
	tests := []struct {
		name string
		seen []Seen
		want []time.Duration
	}{
		{
			name: "subscribed before the start, one message per node",
			seen: []Seen{{at(0), 0}, {at(15), 1}, {at(27), 2}, {at(31), 3}, {at(45), 4}, {at(60), 5}},
			want: []time.Duration{ms_(5), ms_(7), ms_(1), ms_(5), ms_(10)},
		},
		{
			name: "coalesced messages: one count covers several nodes",
			seen: []Seen{{at(0), 0}, {at(35), 3}, {at(70), 5}},
			want: []time.Duration{ms_(25), ms_(15), ms_(5), ms_(30), ms_(20)},
		},
		{
			name: "subscribed late: earlier nodes left out",
			seen: []Seen{{at(25), 2}, {at(33), 3}, {at(52), 5}},
			want: []time.Duration{ms_(3), ms_(12), ms_(2)},
		},
		{
			name: "client never saw the end",
			seen: []Seen{{at(0), 0}, {at(22), 2}},
			want: []time.Duration{ms_(12), ms_(2)},
		},
		{name: "no messages", seen: nil, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Delays(finished, tc.seen)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Delays mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReportFinish(t *testing.T) {
	r := Report{Rows: []Row{
		{ID: "1", Tool: ToolKubectl, Op: OpLabel, Concurrency: 1, Nodes: 100, Walls: []time.Duration{ms_(4000), ms_(3000), ms_(5000)}},
		{ID: "2", Tool: ToolClientGo, Op: OpLabel, Concurrency: 1, Nodes: 100, Walls: []time.Duration{ms_(2000)}},
		{ID: "3", Tool: ToolClientGo, Op: OpLabel, Concurrency: 5, Nodes: 100, Walls: []time.Duration{ms_(500), ms_(600)}},
		{ID: "4", Tool: ToolNodebatch, Op: OpLabel, Concurrency: 5, Nodes: 100, Walls: []time.Duration{ms_(1000)}},
		{ID: "4", Tool: ToolNodebatch, Op: OpTaint, Concurrency: 5, Nodes: 100, Walls: []time.Duration{ms_(1000)}},
		{ID: "5", Tool: ToolClientGo, Op: OpLabel, Concurrency: 5, Nodes: 100, Latency: ms_(50), Ideal: ms_(1000), Walls: []time.Duration{ms_(1100)}},
		{ID: "5", Tool: ToolNodebatch, Op: OpLabel, Concurrency: 5, Nodes: 100, Latency: ms_(50), Ideal: ms_(1000), Walls: []time.Duration{ms_(2200)}},
	}, Delays: []DelayRow{{Clients: 2, Samples: []time.Duration{ms_(30), ms_(10), ms_(20)}}}}
	r.Finish()
	type fig struct {
		Median, Min, Max, PerS, VsCG, VsK, VsIdeal float64
	}
	var got []fig
	for _, row := range r.Rows {
		got = append(got, fig{row.MedianS, row.MinS, row.MaxS, row.NodesPerS, row.VsClientGo, row.VsKubectl, row.WallVsIdeal})
	}
	want := []fig{
		{4, 3, 5, 25, 0.5, 0, 0},
		{2, 2, 2, 50, 0, 2, 0},
		{0.55, 0.5, 0.6, 181.8, 0, 7.27, 0},
		{1, 1, 1, 100, 0.55, 4, 0},
		{1, 1, 1, 100, 0, 0, 0}, // no taint baselines in this report
		{1.1, 1.1, 1.1, 90.9, 0, 0, 1.1},
		{2.2, 2.2, 2.2, 45.4, 0.5, 0, 2.2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Finish figures mismatch (-want +got):\n%s", diff)
	}
	d := r.Delays[0]
	if d.Count != 3 || d.P50MS != 20 || d.P99MS != 30 || d.MaxMS != 30 {
		t.Errorf("Finish delay row = count %d p50 %v p99 %v max %v, want 3, 20, 30, 30", d.Count, d.P50MS, d.P99MS, d.MaxMS)
	}
}

func TestWriteTable(t *testing.T) {
	r := Report{
		Machine: Machine{CPUs: 2, CPUModel: "Test CPU", MemoryGiB: 4, GoVersion: "go1.26", OS: "linux", Arch: "amd64", LoadAvg: "1.00 2.00 3.00"},
		Started: time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC),
		Repeat:  3,
		Rows: []Row{
			{ID: "3", Name: "client-go", Tool: ToolClientGo, Op: OpLabel, Concurrency: 5, Nodes: 100, Walls: []time.Duration{ms_(500)}},
			{ID: "5", Name: "nodebatch via proxy", Tool: ToolNodebatch, Op: OpLabel, Concurrency: 5, Nodes: 100, Latency: ms_(50), Ideal: ms_(1000), Walls: []time.Duration{ms_(1100)}},
			{ID: "4", Name: "broken", Tool: ToolNodebatch, Op: OpTaint, Concurrency: 5, Nodes: 100, Err: "submit batch: 500 | boom\nagain"},
		},
		Delays: []DelayRow{{Clients: 1, Nodes: 100, Concurrency: 50, Samples: []time.Duration{ms_(12)}, Messages: 9}},
		Notes:  []string{"a note"},
	}
	r.Finish()
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatalf("WriteTable: %v", err)
	}
	want := `Machine: 2 CPUs (Test CPU), 4.0 GiB memory, go1.26 linux/amd64, load average at start 1.00 2.00 3.00. Run 2026-11-27 05:00 UTC, 3 repeats per row.

| # | what | op | c | nodes | proxy latency | wall median (s) | spread min-max (s) | nodes/s | × client-go same c | × kubectl | wall ÷ ideal |
|---|---|---|---|---|---|---|---|---|---|---|---|
| 3 | client-go | label | 5 | 100 | - | 0.50 | 0.50-0.50 | 200.0 | - | - | - |
| 5 | nodebatch via proxy | label | 5 | 100 | 50ms | 1.10 | 1.10-1.10 | 90.9 | - | - | 1.10 (ideal 1.00 s) |
| 4 | broken | taint | 5 | 100 | - | FAILED: submit batch: 500 / boom again | | | | | |

Progress delay (row 6): node result recorded → a WebSocket client sees a count that includes it.

| clients | nodes | c | samples | messages received | p50 (ms) | p99 (ms) | max (ms) |
|---|---|---|---|---|---|---|---|
| 1 | 100 | 50 | 1 | 9 | 12.0 | 12.0 | 12.0 |

- a note
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("WriteTable mismatch (-want +got):\n%s", diff)
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "bench.json")
	r := Report{Rows: []Row{{ID: "2", Tool: ToolClientGo, Op: OpTaint, Concurrency: 1, Nodes: 10, Walls: []time.Duration{ms_(1234)}}}}
	r.Finish()
	if err := r.WriteJSON(path); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	for _, want := range []string{`"walls_s": [`, `1.234`, `"median_s": 1.234`, `"nodes_per_s": 8.1`, `"op": "taint"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("WriteJSON output lacks %s:\n%s", want, b)
		}
	}
}

func TestMachineParsing(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got, want := cpuModel([]byte(cpuinfo)), "Intel(R) Xeon(R) CPU @ 2.20GHz"; got != want {
		t.Errorf("cpuModel = %q, want %q", got, want)
	}
	meminfo := "MemTotal:       24576000 kB\nMemFree:         1000 kB\n"
	if got, want := memTotalGiB([]byte(meminfo)), 23.4; got != want {
		t.Errorf("memTotalGiB = %v, want %v", got, want)
	}
	if got := memTotalGiB([]byte("nothing\n")); got != 0 {
		t.Errorf("memTotalGiB(no MemTotal) = %v, want 0", got)
	}
}

func TestKubectlArgs(t *testing.T) {
	k := Kubectl{Kubeconfig: "/k", Selector: "nodebatch.dev/bench=b1"}
	tests := []struct {
		op   Op
		want []string
	}{
		{OpLabel, []string{"--kubeconfig", "/k", "label", "nodes", "-l", "nodebatch.dev/bench=b1", "bench=v1", "--overwrite"}},
		{OpTaint, []string{"--kubeconfig", "/k", "taint", "nodes", "-l", "nodebatch.dev/bench=b1", "bench=v1:NoSchedule", "--overwrite"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, k.Args(tc.op, "v1")); diff != "" {
			t.Errorf("Args(%s) mismatch (-want +got):\n%s", tc.op, diff)
		}
	}
	out := "node/a labeled\nnode/b modified\nnode/c not labeled\nwarning: x\n"
	if got := changedLines(out); got != 2 {
		t.Errorf("changedLines(%q) = %d, want 2", out, got)
	}
}

func TestWithTaint(t *testing.T) {
	gpu := corev1.Taint{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	old := corev1.Taint{Key: "bench", Value: "v1", Effect: corev1.TaintEffectNoSchedule}
	other := corev1.Taint{Key: "bench", Value: "x", Effect: corev1.TaintEffectNoExecute}
	v2 := corev1.Taint{Key: "bench", Value: "v2", Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name string
		in   []corev1.Taint
		want []corev1.Taint
	}{
		{"add", []corev1.Taint{gpu}, []corev1.Taint{gpu, v2}},
		{"replace same key and effect", []corev1.Taint{old, gpu}, []corev1.Taint{v2, gpu}},
		{"other effect kept", []corev1.Taint{other}, []corev1.Taint{other, v2}},
		{"empty", nil, []corev1.Taint{v2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, withTaint(tc.in, v2)); diff != "" {
				t.Errorf("withTaint mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBreakdown(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	at := func(n int) time.Time { return t0.Add(ms_(n)) }
	tr := Trace{Begin: at(0), Submitted: at(40), Completed: at(200)}
	// Two lanes of two nodes, given out of order; lane 1 finishes last.
	nodes := []nodeTimes{
		{lane: 1, position: 1, started: at(110), finished: at(130)},
		{lane: 0, position: 0, started: at(50), finished: at(60)},
		{lane: 1, position: 0, started: at(55), finished: at(80)},
		{lane: 0, position: 1, started: at(90), finished: at(100)},
	}
	got := breakdown(tr, at(150), nodes)
	want := Breakdown{
		SubmitMS:    40,
		LaneStartMS: 15, // lane 1 starts at 55, answer at 40
		LaneAPIMS:   45, // 25 + 20
		LaneGapsMS:  30, // 110 - 80
		LaneNodes:   2,
		FinishMS:    20, // final commit 150 - last finish 130
		RelayMS:     50, // completed 200 - commit 150
		APIP50MS:    15, // API times 10, 10, 20, 25
		GapP50MS:    30, // gaps: lane 0 90-60=30, lane 1 110-80=30
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("breakdown mismatch (-want +got):\n%s", diff)
	}
	sum := got.SubmitMS + got.LaneStartMS + got.LaneAPIMS + got.LaneGapsMS + got.FinishMS + got.RelayMS
	if wall := ms(tr.Wall()); sum != wall {
		t.Errorf("breakdown stages sum to %v ms, want the wall time %v ms", sum, wall)
	}
	var b strings.Builder
	writeBreakdowns(&b, []Row{{ID: "4", Op: OpLabel, Concurrency: 2, Nodes: 4, Breakdowns: []Breakdown{got, {SubmitMS: 60, LaneStartMS: 5, LaneAPIMS: 1000, LaneGapsMS: 10, FinishMS: 30, RelayMS: 70, APIP50MS: 5, GapP50MS: 10}}}})
	if row := "| 4 | label | 2 | 4 | - | 0.05 s | 0.01 s | 0.52 s | 0.02 s | 0.03 s | 0.06 s | 10 / 20 ms |"; !strings.Contains(b.String(), row) {
		t.Errorf("writeBreakdowns lacks the row of medians %s:\n%s", row, b.String())
	}
}
