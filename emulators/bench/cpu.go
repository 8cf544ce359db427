package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ). The kernel
// exports 100 ticks per second on every architecture Linux user space sees,
// whatever its internal HZ; Go cannot ask sysconf(_SC_CLK_TCK) without cgo.
const clockTick = 10 * time.Millisecond

// Names of the processes a CPU sample names. The stack's parts use the keys
// of stack.Info.PIDs.
const (
	CPUAPIServer = "kube-apiserver"
	CPUEtcd      = "etcd"
	CPUFirestore = "firestore"
	CPUPubSub    = "pubsub"
	CPUBench     = "bench"   // this process: bench clients and the in-process product
	CPUKubectl   = "kubectl" // kubectl children of row 1, from their rusage
)

// StackGroups picks from a stack's PIDs (stack.Info.PIDs) the parts a
// meter samples: kube-apiserver, etcd and the two emulators. Other
// processes added to the stack count as the rest of the machine.
func StackGroups(pids map[string]int) map[string]int {
	g := map[string]int{}
	for _, name := range []string{CPUAPIServer, CPUEtcd, CPUFirestore, CPUPubSub} {
		if pid, ok := pids[name]; ok {
			g[name] = pid
		}
	}
	return g
}

// Proc reads CPU counters from a /proc tree.
type Proc struct {
	Root string // "/proc", or a fake tree in tests
}

// procStat is what a /proc/<pid>/stat line says about CPU.
type procStat struct {
	pid, pgrp int
	// own is utime+stime; children is cutime+cstime, the CPU of children
	// that exited and were waited for.
	own, children time.Duration
}

// parseProcStat parses one /proc/<pid>/stat line. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseProcStat(line string) (procStat, error) {
	open := strings.IndexByte(line, '(')
	end := strings.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return procStat{}, fmt.Errorf("parse proc stat %q: no (comm)", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("parse proc stat %q: pid: %w", line, err)
	}
	// f[0] is field 3 (state): field n is f[n-3].
	f := strings.Fields(line[end+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("parse proc stat %q: %d fields after comm, want ≥ 15", line, len(f))
	}
	var v [5]int64 // pgrp, utime, stime, cutime, cstime
	for i, n := range []int{5, 14, 15, 16, 17} {
		if v[i], err = strconv.ParseInt(f[n-3], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("parse proc stat %q: field %d: %w", line, n, err)
		}
	}
	return procStat{
		pid:      pid,
		pgrp:     int(v[0]),
		own:      time.Duration(v[1]+v[2]) * clockTick,
		children: time.Duration(v[3]+v[4]) * clockTick,
	}, nil
}

// stat reads /proc/<name>/stat (name is a pid or "self").
func (p Proc) stat(name string) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(p.Root, name, "stat"))
	if err != nil {
		return procStat{}, fmt.Errorf("read CPU of process %s: %w", name, err)
	}
	return parseProcStat(strings.TrimSpace(string(b)))
}

// Self returns this process's own CPU time (user + system). Waited-for
// children are left out: the kubectl runs are counted from their rusage.
func (p Proc) Self() (time.Duration, error) {
	s, err := p.stat("self")
	if err != nil {
		return 0, err
	}
	return s.own, nil
}

// Group returns the CPU time of pid's process group when pid leads one (the
// stack starts every part in its own group, so an emulator's JVM under its
// launcher counts), else of pid alone. Each member counts its own time and
// that of its children that exited and were waited for.
func (p Proc) Group(pid int) (time.Duration, error) {
	lead, err := p.stat(strconv.Itoa(pid))
	if err != nil {
		return 0, err
	}
	if lead.pgrp != pid {
		return lead.own + lead.children, nil
	}
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return 0, fmt.Errorf("read CPU of process group %d: %w", pid, err)
	}
	var sum time.Duration
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || !e.IsDir() {
			continue
		}
		s, err := p.stat(e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue // exited since ReadDir
		}
		if err != nil {
			return 0, err
		}
		if s.pgrp == pid {
			sum += s.own + s.children
		}
	}
	return sum, nil
}

// Busy returns the machine's busy CPU time since boot, all CPUs: the first
// line of /proc/stat without idle and iowait (guest time is already in
// user and nice).
func (p Proc) Busy() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(p.Root, "stat"))
	if err != nil {
		return 0, fmt.Errorf("read machine CPU: %w", err)
	}
	return parseBusy(b)
}

func parseBusy(procStat []byte) (time.Duration, error) {
	sc := bufio.NewScanner(bytes.NewReader(procStat))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return 0, fmt.Errorf("parse /proc/stat cpu line %q: too few fields", sc.Text())
		}
		// user nice system idle iowait irq softirq steal guest guest_nice
		var busy int64
		for i, s := range f[1:] {
			if i == 3 || i == 4 || i >= 8 {
				continue
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/stat cpu line %q: %w", sc.Text(), err)
			}
			busy += n
		}
		return time.Duration(busy) * clockTick, nil
	}
	return 0, errors.New("parse /proc/stat: no cpu line")
}

// CPUMeter samples, just before and just after a run, the CPU time of the
// stack's parts, of this process, and of the whole machine.
type CPUMeter struct {
	Proc Proc
	// Groups are the stack's parts by name (stack.Info.PIDs), each
	// sampled as the process group it leads.
	Groups map[string]int
	CPUs   int // capacity is the window × CPUs
}

// CPUCounters are the cumulative counters at one instant.
type CPUCounters struct {
	At     time.Time
	ByName map[string]time.Duration
	Busy   time.Duration // the whole machine
}

// Read samples every counter now.
func (m CPUMeter) Read() (CPUCounters, error) {
	c := CPUCounters{ByName: map[string]time.Duration{}}
	for _, name := range slices.Sorted(maps.Keys(m.Groups)) {
		d, err := m.Proc.Group(m.Groups[name])
		if err != nil {
			return c, fmt.Errorf("sample CPU of %s: %w", name, err)
		}
		c.ByName[name] = d
	}
	self, err := m.Proc.Self()
	if err != nil {
		return c, err
	}
	c.ByName[CPUBench] = self
	if c.Busy, err = m.Proc.Busy(); err != nil {
		return c, err
	}
	c.At = time.Now()
	return c, nil
}

// Run returns the CPU used between before and after. extra adds CPU of
// processes that came and went in between (kubectl, from its rusage).
func (m CPUMeter) Run(before, after CPUCounters, extra map[string]time.Duration) CPURun {
	by := map[string]time.Duration{}
	for name, a := range after.ByName {
		if b, ok := before.ByName[name]; ok {
			by[name] = max(a-b, 0)
		}
	}
	maps.Copy(by, extra)
	return NewCPURun(after.At.Sub(before.At), m.CPUs, max(after.Busy-before.Busy, 0), by)
}

// CPURun is where the machine's CPU went during one run, in CPU seconds.
type CPURun struct {
	WindowS float64 `json:"window_s"` // between the two samples: the run's wall time
	// ByProcess holds CPU seconds per named process (group): the stack's
	// parts, "bench" (this process) and "kubectl".
	ByProcess map[string]float64 `json:"by_process_s"`
	NamedS    float64            `json:"named_s"`    // sum of ByProcess
	OtherS    float64            `json:"other_s"`    // machine busy − named: the rest of the machine
	TotalS    float64            `json:"total_s"`    // machine busy, all CPUs
	CapacityS float64            `json:"capacity_s"` // window × CPUs
	BusyPct   float64            `json:"busy_pct"`   // total ÷ capacity, in %
}

// NewCPURun derives a run's figures from its window, CPU count, machine
// busy time and named processes' CPU. "other" is never negative: the named
// counters and the machine's are read at slightly different instants.
func NewCPURun(window time.Duration, cpus int, busy time.Duration, by map[string]time.Duration) CPURun {
	r := CPURun{WindowS: seconds(window), ByProcess: map[string]float64{}, TotalS: seconds(busy)}
	var named time.Duration
	for name, d := range by {
		r.ByProcess[name] = seconds(d)
		named += d
	}
	r.NamedS = seconds(named)
	r.OtherS = seconds(max(busy-named, 0))
	r.CapacityS = seconds(window * time.Duration(cpus))
	if r.CapacityS > 0 {
		r.BusyPct = math.Round(r.TotalS/r.CapacityS*1000) / 10
	}
	return r
}

// MedianCPU returns, field by field, the median over runs (so the medians
// need not add up exactly); nil for no runs.
func MedianCPU(runs []CPURun) *CPURun {
	if len(runs) == 0 {
		return nil
	}
	med := func(f func(CPURun) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		n := len(v)
		if n%2 == 1 {
			return v[n/2]
		}
		return math.Round((v[n/2-1]+v[n/2])/2*1000) / 1000
	}
	m := CPURun{ByProcess: map[string]float64{}}
	names := map[string]bool{}
	for _, r := range runs {
		for name := range r.ByProcess {
			names[name] = true
		}
	}
	for name := range names {
		m.ByProcess[name] = med(func(r CPURun) float64 { return r.ByProcess[name] })
	}
	m.WindowS = med(func(r CPURun) float64 { return r.WindowS })
	m.NamedS = med(func(r CPURun) float64 { return r.NamedS })
	m.OtherS = med(func(r CPURun) float64 { return r.OtherS })
	m.TotalS = med(func(r CPURun) float64 { return r.TotalS })
	m.CapacityS = med(func(r CPURun) float64 { return r.CapacityS })
	m.BusyPct = med(func(r CPURun) float64 { return r.BusyPct })
	return &m
}
