package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/shared/progress"
)

// relayProcess is the relay binary (relay/cmd/relay) running as its own
// process, so its CPU and memory can be measured apart from the clients.
type relayProcess struct {
	cmd   *exec.Cmd
	wsURL string
	exit  chan error
}

func startRelayProcess(t *testing.T, project string, iss *issuer) *relayProcess {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	build := exec.Command("go", "build", "-o", bin, "github.com/nodebatch/nodebatch/relay/cmd/relay")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build relay: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"NODEBATCH_RELAY_ADDR=127.0.0.1:0",
		"NODEBATCH_PROJECT="+project,
		"NODEBATCH_OIDC_ISSUER="+iss.URL,
		"NODEBATCH_OIDC_AUDIENCE="+audience,
		"NODEBATCH_API_URL=off",
		"NODEBATCH_RELAY_MAX_CONNS_PER_USER=1000", // 200 clients of one user
		"KUBECONFIG=",
		"PORT=",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start relay: %v", err)
	}
	p := &relayProcess{cmd: cmd, exit: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "relay listening" {
				addr <- line.Addr
			} else if !strings.Contains(sc.Text(), `"severity":"INFO"`) || strings.Contains(sc.Text(), "closing") {
				// Warnings and errors, and why a connection was closed.
				t.Logf("relay: %s", sc.Text())
			}
		}
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	select {
	case a := <-addr:
		p.wsURL = "ws://" + a
	case err := <-p.exit:
		t.Fatalf("relay exited before listening: %v", err)
	case <-time.After(readGuard):
		t.Fatal("relay did not report its address")
	}
	return p
}

// usage reads the process's CPU time and resident memory from /proc.
func (p *relayProcess) usage(t *testing.T) (cpu time.Duration, rssKB, peakKB int) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read relay stat: %v", err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	cpu = time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ = 100
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read relay status: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			peakKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return cpu, rssKB, peakKB
}

// TestManyClients: 200 clients watch one 500-node batch whose 10 lanes are
// each written 50 times in sequence, as a real batch writes them. Every
// client must see the complete message with the right counts and a
// monotonic current; the test reports the delay from a lane write to
// clients seeing it, and the relay's CPU and memory (figures, no
// assertions on them). Ends with SIGTERM: every client is told 1012.
func TestManyClients(t *testing.T) {
	const clients, lanes, perLane = 200, 10, 50
	env := harness.Start(t)
	project := env.ProjectID(t)
	fs := env.Firestore(t, project)
	iss := newIssuer(t)
	rp := startRelayProcess(t, project, iss)
	ctx := context.Background()

	s := newSim(fs, "load", owner("alice"), lanes, perLane)
	s.failIf = func(lane, i int) bool { return i == 7 }
	if err := s.create(ctx); err != nil {
		t.Fatal(err)
	}
	tok := iss.token(t, "alice", false)
	conns := make([]*websocket.Conn, clients)
	d := websocket.Dialer{HandshakeTimeout: readGuard, Subprotocols: []string{relay.Subprotocol, "bearer." + tok}}
	for i := range conns {
		c, resp, err := d.Dial(rp.wsURL+"/v1/progress/ws", nil)
		if err != nil {
			t.Fatalf("client %d: dial: %v (%d)", i, err, status(resp))
		}
		t.Cleanup(func() { c.Close() })
		send(t, c, map[string]string{"type": "subscribe", "task_id": s.doc.ID})
		if m := read(t, c); m.TaskID != s.doc.ID || m.Current != 0 {
			t.Fatalf("client %d: first message = %+v, want the initial state", i, m)
		}
		conns[i] = c
	}
	cpu0, _, _ := rp.usage(t)

	type result struct {
		final    progress.Message
		messages int
		delays   []time.Duration
		err      error
	}
	results := make([]result, clients)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			seen := map[string]bool{}
			note := func(node string, at time.Time) {
				if node == "" || seen[node] {
					return
				}
				seen[node] = true
				if w, ok := s.wroteAt(node); ok {
					r.delays = append(r.delays, at.Sub(w))
				}
			}
			r.final, r.err = readUntilFinal(c, s.doc.ID, func(m progress.Message) {
				at := time.Now()
				r.messages++
				note(m.CurrentNode, at)
				for _, n := range m.InFlight {
					note(n, at)
				}
			})
		}()
	}
	start := time.Now()
	if err := s.runLanes(ctx, 0, perLane); err != nil {
		t.Fatal(err)
	}
	want, err := s.finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeTime := time.Since(start)
	wg.Wait()
	cpu1, rss, peak := rp.usage(t)

	var all []time.Duration
	msgs := 0
	for i, r := range results {
		if r.err != nil {
			t.Errorf("client %d: %v", i, r.err)
			continue
		}
		if r.final.Type != progress.TypeComplete || r.final.Current != lanes*perLane || r.final.Counts != want {
			t.Errorf("client %d: final = type %s current %d counts %+v, want complete %d %+v", i, r.final.Type, r.final.Current, r.final.Counts, lanes*perLane, want)
		}
		msgs += r.messages
		all = append(all, r.delays...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	t.Logf("FIGURES %d clients, %d lane writes in %v: %d messages received (%.0f per client; progress coalesced), "+
		"lane write → client delay over %d first sightings: p50 %v, p99 %v, max %v; "+
		"relay CPU %v during the batch (%.0f%% of one core), RSS %d KiB (peak %d KiB)",
		clients, lanes*perLane, writeTime.Round(time.Millisecond), msgs, float64(msgs)/clients,
		len(all), pct(0.50).Round(100*time.Microsecond), pct(0.99).Round(100*time.Microsecond), pct(1).Round(100*time.Microsecond),
		cpu1-cpu0, 100*(cpu1-cpu0).Seconds()/writeTime.Seconds(), rss, peak)

	// Graceful shutdown: SIGTERM → every client gets 1012 and may reconnect.
	if err := rp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		// Messages already queued (a repeated final state) may come first;
		// the close frame must follow them.
		var err error
		for n := 0; err == nil && n < 100; n++ {
			_, err = readMsg(c)
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
			t.Errorf("client %d after SIGTERM: %v, want close %d", i, err, websocket.CloseServiceRestart)
		}
	}
	select {
	case err := <-rp.exit:
		if err != nil {
			t.Errorf("relay exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(readGuard):
		t.Error("relay did not exit after SIGTERM")
	}
}
