//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// renewChildEnv makes the test binary, re-executed by
// TestContextTokenConcurrentRenewal, act as one kubectl-nodebatch process.
const renewChildEnv = "NODEBATCH_TEST_RENEW_CHILD"

// renewResult is what one renewing process ended with.
type renewResult struct {
	Code  int
	Owner string
}

// TestContextTokenConcurrentRenewal: processes (or goroutines) that all
// find the same ID token expiring renew it once between them: one
// refresh-token redemption, and every one gets a token the API takes.
func TestContextTokenConcurrentRenewal(t *testing.T) {
	if os.Getenv(renewChildEnv) != "" {
		renewChild()
	}
	const n = 5
	for _, tt := range []struct {
		name string
		run  func(t *testing.T, f *loginFixture, n int) ([]renewResult, []string)
	}{
		{"processes", renewInProcesses},
		{"goroutines", renewInGoroutines},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newLoginFixture(t)
			f.login(t, "alice")
			before := expireStoredToken(t, f)
			f.refreshes.Store(0)
			f.refreshDelay.Store(int64(50 * time.Millisecond))

			got, stderrs := tt.run(t, f, n)
			want := make([]renewResult, n)
			for i := range want {
				want[i] = renewResult{Code: ExitOK, Owner: "alice@example.com"}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("concurrent renewals (-want +got):\n%s\nstderr:\n%s", diff, strings.Join(stderrs, "\n---\n"))
			}
			if r := f.refreshes.Load(); r != 1 {
				t.Errorf("refresh-token redemptions = %d, want 1", r)
			}
			after := f.contexts(t).Contexts["default"].Token
			if after.RefreshToken == "" || after.RefreshToken == before.RefreshToken || !time.Now().Add(refreshLeeway).Before(after.Expiry) {
				t.Errorf("stored tokens after the renewals: refresh token rotated %v (empty %v), ID token expires %v; want a rotated refresh token and a fresh ID token",
					after.RefreshToken != before.RefreshToken, after.RefreshToken == "", after.Expiry)
			}
		})
	}
}

// expireStoredToken makes the stored ID token of context default look
// expiring (the token itself stays valid for the API) and answers the
// tokens as they were.
func expireStoredToken(t *testing.T, f *loginFixture) Tokens {
	t.Helper()
	path := filepath.Join(f.home, contextsFile)
	cs := f.contexts(t)
	x := cs.Contexts["default"]
	if x == nil || x.Token == nil || x.Token.RefreshToken == "" {
		t.Fatalf("context default after login = %+v, want tokens", x)
	}
	before := *x.Token
	x.Token.Expiry = time.Now().Add(-time.Minute)
	if err := cs.save(path); err != nil {
		t.Fatal(err)
	}
	return before
}

// renewChild is one re-executed process: it waits until its stdin closes
// (all start together), runs `get b1 -o json` and exits with its code.
func renewChild() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(Run(context.Background(), []string{"get", "b1", "-o", "json"}, Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}

func renewInProcesses(t *testing.T, f *loginFixture, n int) ([]renewResult, []string) {
	t.Helper()
	env := []string{renewChildEnv + "=1", "XDG_CONFIG_HOME=" + f.home, "NODEBATCH_URL=" + f.relay.URL}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NODEBATCH_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	cmds := make([]*exec.Cmd, n)
	starts := make([]io.Closer, n)
	outs, errs := make([]bytes.Buffer, n), make([]bytes.Buffer, n)
	for i := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestContextTokenConcurrentRenewal$", "-test.count=1")
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = &outs[i], &errs[i]
		start, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i], starts[i] = cmd, start
	}
	for _, s := range starts {
		s.Close()
	}
	got, stderrs := make([]renewResult, n), make([]string, n)
	for i, cmd := range cmds {
		err := cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("child %d: %v", i, err)
		}
		got[i] = renewResult{Code: cmd.ProcessState.ExitCode(), Owner: owner(outs[i].Bytes())}
		stderrs[i] = fmt.Sprintf("child %d: %s", i, errs[i].String())
	}
	return got, stderrs
}

func renewInGoroutines(t *testing.T, f *loginFixture, n int) ([]renewResult, []string) {
	t.Helper()
	got, stderrs := make([]renewResult, n), make([]string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		env, out, errb := f.env(nil, nil)
		wg.Go(func() {
			<-start
			code := Run(context.Background(), []string{"get", "b1", "-o", "json"}, env)
			got[i] = renewResult{Code: code, Owner: owner([]byte(out.String()))}
			stderrs[i] = fmt.Sprintf("goroutine %d: %s", i, errb)
		})
	}
	close(start)
	wg.Wait()
	return got, stderrs
}

func owner(out []byte) string {
	var b struct{ Owner string }
	_ = json.Unmarshal(out, &b)
	return b.Owner
}

// TestContextTokenRenewsUnderLock: while another process holds the lock,
// an expiring token is not renewed; when the command's deadline passes
// it fails naming the lock file.
func TestContextTokenRenewsUnderLock(t *testing.T) {
	f := newLoginFixture(t)
	f.login(t, "alice")
	expireStoredToken(t, f)
	f.refreshes.Store(0)
	path := filepath.Join(f.home, contextsFile)
	unlock, err := lockContexts(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()

	// (Run would report a deadline of its own context as "interrupted";
	// without one the wait ends after contextsLockTimeout with this error.)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	env, _, _ := f.env(nil, time.Now)
	env.HTTP = http.DefaultClient
	tok, ok, err := contextToken(ctx, env, f.relay.URL)
	if tok != "" || !ok || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), path+".lock") {
		t.Errorf("contextToken while the lock is held = %q, %v, %v; want the deadline, naming %s.lock", tok, ok, err, path)
	}
	if r := f.refreshes.Load(); r != 0 {
		t.Errorf("refresh-token redemptions while the lock is held = %d, want 0", r)
	}
}

// TestLockContextsWaitIsBounded: a lock held by another open file is not
// had before ctx ends, and the error names the lock file and why.
func TestLockContextsWaitIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodebatch", "contexts.json")
	held, err := lockContexts(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline passes", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 30*time.Millisecond)
		}, context.DeadlineExceeded},
		{"already cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			unlock, err := lockContexts(ctx, path)
			if err == nil {
				unlock()
				t.Fatalf("lockContexts while held = nil error")
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), path+".lock") {
				t.Errorf("lockContexts while held = %v; want %v naming %s.lock", err, tt.want, path)
			}
		})
	}
	held()
	unlock, err := lockContexts(t.Context(), path)
	if err != nil {
		t.Fatalf("lockContexts after the holder unlocked = %v", err)
	}
	unlock()
}

// TestLockFileMode: the lock file is 0600 (also one left with a wider
// mode) and a folder made for it 0700.
func TestLockFileMode(t *testing.T) {
	for _, tt := range []struct {
		name     string
		existing os.FileMode // 0: no lock file yet
	}{
		{"new", 0},
		{"left world-readable", 0o644},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "nodebatch")
			path := filepath.Join(dir, "contexts.json")
			if tt.existing != 0 {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".lock", nil, tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path+".lock", tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			unlock, err := lockContexts(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			got := map[string]os.FileMode{}
			for _, p := range []string{dir, path + ".lock"} {
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				got[filepath.Base(p)] = st.Mode().Perm()
			}
			want := map[string]os.FileMode{"nodebatch": 0o700, "contexts.json.lock": 0o600}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpdateContextsKeepsConcurrentChanges: read-modify-writes of the
// contexts file from many writers at once all land (no last writer wins).
func TestUpdateContextsKeepsConcurrentChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodebatch", "contexts.json")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = updateContexts(t.Context(), path, func(cs *Contexts) (bool, error) {
				cs.Contexts[fmt.Sprintf("c%d", i)] = &Context{URL: "http://127.0.0.1:8090", Issuer: "http://127.0.0.1:8093", ClientID: "nodebatch"}
				return true, nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	cs, err := loadContexts(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("c%d", i))
	}
	if diff := cmp.Diff(want, cs.names()); diff != "" {
		t.Errorf("contexts after %d concurrent updates (-want +got):\n%s", n, diff)
	}
}
