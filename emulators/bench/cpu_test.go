package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/wait"
)

// statLine is a /proc/<pid>/stat line with the given fields; times in ticks.
func statLine(pid int, comm string, pgrp, utime, stime, cutime, cstime int) string {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice ...
	return strconv.Itoa(pid) + " (" + comm + ") S 1 " + strconv.Itoa(pgrp) + " 1 0 -1 4194560 100 0 0 0 " +
		strconv.Itoa(utime) + " " + strconv.Itoa(stime) + " " + strconv.Itoa(cutime) + " " + strconv.Itoa(cstime) +
		" 20 0 12 0 3051 1234567 890 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
}

func tick(n int) time.Duration { return time.Duration(n) * clockTick }

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    procStat
		wantErr bool
	}{
		{"plain", statLine(42, "etcd", 42, 250, 50, 3, 1), procStat{pid: 42, pgrp: 42, own: tick(300), children: tick(4)}, false},
		{"comm with spaces and parentheses", statLine(7, "java (x) y", 5, 1, 2, 0, 0), procStat{pid: 7, pgrp: 5, own: tick(3)}, false},
		{"truncated", "7 (sh) S 1 7 7 0 -1 4194560 100 0 0 0 12", procStat{}, true},
		{"no comm", "7 sh S 1 7", procStat{}, true},
		{"bad pid", "x (sh) S 1 7 7 0 -1 4 1 0 0 0 1 1 0 0 20", procStat{}, true},
		{"bad utime", "7 (sh) S 1 7 7 0 -1 4 1 0 0 0 u 1 0 0 20", procStat{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat(strings.TrimSpace(tc.line))
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseProcStat(%q) error = %v, want error %v", tc.line, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(procStat{})); diff != "" {
				t.Errorf("parseProcStat mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseProcStat checks that any command name round-trips and that no
// line makes the parser panic.
func FuzzParseProcStat(f *testing.F) {
	f.Add("etcd", uint16(42), uint16(250), uint16(3), "1 () S")
	f.Add("a) (b", uint16(7), uint16(1), uint16(0), "7 (x) S 1")
	f.Fuzz(func(t *testing.T, comm string, pid, utime, cutime uint16, line string) {
		_, _ = parseProcStat(line)
		if strings.ContainsAny(comm, "\n") {
			return
		}
		in := statLine(int(pid)+1, comm, 9, int(utime), 1, int(cutime), 0)
		got, err := parseProcStat(strings.TrimSpace(in))
		want := procStat{pid: int(pid) + 1, pgrp: 9, own: tick(int(utime) + 1), children: tick(int(cutime))}
		if err != nil || got != want {
			t.Errorf("parseProcStat(%q) = %+v, %v; want %+v, nil", in, got, err, want)
		}
	})
}

func TestParseBusy(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"all fields", "cpu  1000 10 200 5000 30 0 16 4 7 1\ncpu0 500 5 100 2500 15 0 8 2 0 0\n", tick(1000 + 10 + 200 + 16 + 4), false},
		{"old kernel, four fields", "cpu 100 2 30 900\n", tick(132), false},
		{"no cpu line", "intr 1 2 3\n", 0, true},
		{"bad number", "cpu 1 x 3 4 5\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBusy([]byte(tc.stat))
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseBusy(%q) error = %v, want error %v", tc.stat, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("parseBusy(%q) = %v, want %v", tc.stat, got, tc.want)
			}
		})
	}
}

// fakeProc writes a /proc tree holding the given stat files (by folder
// name) and /proc/stat.
func fakeProc(t *testing.T, stats map[string]string, machine string) Proc {
	t.Helper()
	root := t.TempDir()
	for name, line := range stats {
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte(machine), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "sys"), 0o755); err != nil { // a non-process folder
		t.Fatal(err)
	}
	return Proc{Root: root}
}

func TestProc(t *testing.T) {
	p := fakeProc(t, map[string]string{
		"100":  statLine(100, "firestore launcher", 100, 10, 5, 2, 1), // group leader
		"101":  statLine(101, "java", 100, 300, 100, 0, 0),            // its JVM
		"102":  statLine(102, "sh", 100, 1, 1, 0, 0),                  // another member
		"200":  statLine(200, "etcd", 200, 40, 10, 0, 0),              // another group
		"300":  statLine(300, "relay", 1, 7, 3, 1, 0),                 // not a group leader
		"301":  statLine(301, "child", 1, 50, 50, 0, 0),               // in group 1, not counted for 300
		"self": statLine(555, "bench", 555, 80, 20, 900, 100),
	}, "cpu  1000 10 200 5000 30 0 16 4 0 0\n")
	tests := []struct {
		name    string
		read    func() (time.Duration, error)
		want    time.Duration
		wantErr bool
	}{
		{"group of the leader: every member, waited-for children included", func() (time.Duration, error) { return p.Group(100) }, tick(15 + 3 + 400 + 2), false},
		{"one-process group", func() (time.Duration, error) { return p.Group(200) }, tick(50), false},
		{"not a leader: the process alone", func() (time.Duration, error) { return p.Group(300) }, tick(11), false},
		{"no such process", func() (time.Duration, error) { return p.Group(999) }, 0, true},
		{"self without waited-for children", p.Self, tick(100), false},
		{"machine busy", p.Busy, tick(1230), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.read()
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCPUMeter(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	m := CPUMeter{Groups: map[string]int{CPUAPIServer: 10, CPUFirestore: 20}, CPUs: 2}
	tests := []struct {
		name          string
		before, after CPUCounters
		extra         map[string]time.Duration
		want          CPURun
	}{
		{
			name:   "named and other",
			before: CPUCounters{At: t0, Busy: 100 * time.Second, ByName: map[string]time.Duration{CPUAPIServer: 10 * time.Second, CPUFirestore: 20 * time.Second, CPUBench: 5 * time.Second}},
			after:  CPUCounters{At: t0.Add(4 * time.Second), Busy: 107 * time.Second, ByName: map[string]time.Duration{CPUAPIServer: 12400 * time.Millisecond, CPUFirestore: 23100 * time.Millisecond, CPUBench: 6300 * time.Millisecond}},
			extra:  map[string]time.Duration{CPUKubectl: 200 * time.Millisecond},
			want: CPURun{
				WindowS:   4,
				ByProcess: map[string]float64{CPUAPIServer: 2.4, CPUFirestore: 3.1, CPUBench: 1.3, CPUKubectl: 0.2},
				NamedS:    2.4 + 3.1 + 1.3 + 0.2,
				OtherS:    0,
				TotalS:    7,
				CapacityS: 8,
				BusyPct:   87.5,
			},
		},
		{
			name:   "named read after the machine: other not negative; a restarted part counts 0, one missing before is left out",
			before: CPUCounters{At: t0, Busy: 10 * time.Second, ByName: map[string]time.Duration{CPUAPIServer: 9 * time.Second, CPUBench: time.Second}},
			after:  CPUCounters{At: t0.Add(time.Second), Busy: 11 * time.Second, ByName: map[string]time.Duration{CPUAPIServer: 1100 * time.Millisecond, CPUBench: 2500 * time.Millisecond, CPUEtcd: time.Second}},
			want:   CPURun{WindowS: 1, ByProcess: map[string]float64{CPUAPIServer: 0, CPUBench: 1.5}, NamedS: 1.5, TotalS: 1, CapacityS: 2, BusyPct: 50},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := m.Run(tc.before, tc.after, tc.extra)
			if diff := cmp.Diff(tc.want, got, cmpFloat); diff != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// cmpFloat compares CPU seconds to the millisecond they are rounded to.
var cmpFloat = cmp.Comparer(func(a, b float64) bool { return a-b < 0.0005 && b-a < 0.0005 })

func TestMedianCPU(t *testing.T) {
	run := func(api, other, total float64) CPURun {
		return CPURun{WindowS: total / 2, ByProcess: map[string]float64{CPUAPIServer: api}, NamedS: api, OtherS: other, TotalS: total, CapacityS: total, BusyPct: 100}
	}
	tests := []struct {
		name string
		runs []CPURun
		want *CPURun
	}{
		{"none", nil, nil},
		{"odd: each figure its own median", []CPURun{run(3, 0.1, 4), run(1, 0.5, 6), run(2, 0.3, 5)},
			&CPURun{WindowS: 2.5, ByProcess: map[string]float64{CPUAPIServer: 2}, NamedS: 2, OtherS: 0.3, TotalS: 5, CapacityS: 5, BusyPct: 100}},
		{"even: mean of the middle two", []CPURun{run(1, 0.2, 4), run(2, 0.4, 6)},
			&CPURun{WindowS: 2.5, ByProcess: map[string]float64{CPUAPIServer: 1.5}, NamedS: 1.5, OtherS: 0.3, TotalS: 5, CapacityS: 5, BusyPct: 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, MedianCPU(tc.runs), cmpFloat); diff != "" {
				t.Errorf("MedianCPU mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStackGroups(t *testing.T) {
	got := StackGroups(map[string]int{"etcd": 1, "kube-apiserver": 2, "firestore": 3, "pubsub": 4, "relay": 5})
	want := map[string]int{CPUEtcd: 1, CPUAPIServer: 2, CPUFirestore: 3, CPUPubSub: 4}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("StackGroups mismatch (-want +got):\n%s", diff)
	}
}

func TestWriteCPU(t *testing.T) {
	r := &Report{Machine: Machine{CPUs: 2}, Rows: []Row{
		{ID: "1", Name: "kubectl label nodes -l", Op: OpLabel, Concurrency: 1, Nodes: 1000, CPU: []CPURun{
			NewCPURun(4*time.Second, 2, 3*time.Second, map[string]time.Duration{CPUAPIServer: 2 * time.Second, CPUKubectl: 500 * time.Millisecond}),
		}},
		{ID: "4", Name: "nodebatch", Op: OpTaint, Concurrency: 50, Nodes: 1000, Walls: []time.Duration{time.Second}}, // no CPU sampled
	}, Delays: []DelayRow{{Clients: 1000, Nodes: 1000, Concurrency: 50, CPU: &CPURun{ByProcess: map[string]float64{CPUBench: 1.5}, TotalS: 2, CapacityS: 4, BusyPct: 50}}}}
	r.Finish()
	var b strings.Builder
	writeCPU(&b, r)
	for _, want := range []string{
		"| 1 | kubectl label nodes -l | label | 1 | 1000 | - | 2.00 | - | - | - | - | 0.50 | 0.50 | 3.00 | 8.00 | 38 % |",
		"| 6 | progress delay, 1000 clients | label | 50 | 1000 | - | - | - | - | - | 1.50 | - | 0.00 | 2.00 | 4.00 | 50 % |",
		"capacity = run wall × 2 CPUs",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("writeCPU lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "| 4 |") {
		t.Errorf("writeCPU shows a row without CPU samples:\n%s", b.String())
	}
}

// TestProcRealGroup counts a real process group on this machine's /proc: a
// launcher that only waits and a child that burns CPU, as an emulator's
// wrapper and its JVM.
func TestProcRealGroup(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sh -c 'while :; do :; done' & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sh: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	p := Proc{Root: "/proc"}
	const want = 200 * time.Millisecond
	var group time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wait.For(ctx, t, fmt.Sprintf("process group %d to use %v of CPU", pid, want), func() error {
		var err error
		if group, err = p.Group(pid); err != nil {
			t.Fatalf("Group(%d): %v", pid, err)
		}
		return wait.True(group >= want, "%v used", group)
	})
	lead, err := p.stat(strconv.Itoa(pid))
	if err != nil {
		t.Fatalf("stat(%d): %v", pid, err)
	}
	if group-lead.own < want {
		t.Errorf("Group(%d) = %v with the launcher's own %v: the child's CPU is not counted (want ≥ %v)", pid, group, lead.own, want)
	}
	for name, read := range map[string]func() (time.Duration, error){"Self": p.Self, "Busy": p.Busy} {
		if d, err := read(); err != nil || d <= 0 {
			t.Errorf("%s() = %v, %v; want > 0, nil", name, d, err)
		}
	}
}
