package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/progress"
)

// changeArgs is what label/taint's arguments mean.
type changeArgs struct {
	Nodes   []string
	Changes []string
}

// splitChangeArgs splits kubectl's positional arguments after the resource
// type: a change has '=' or ':' or ends in '-' (no node name can), anything
// else is a node name. "nodes/NAME" is a name too, as in kubectl.
func splitChangeArgs(cmd string, args []string) (changeArgs, error) {
	var a changeArgs
	if len(args) == 0 {
		return a, usagef("%s needs a resource type: %s nodes ...", cmd, cmd)
	}
	switch args[0] {
	case "nodes", "node", "no":
	default:
		if !strings.HasPrefix(args[0], "nodes/") && !strings.HasPrefix(args[0], "node/") {
			return a, usagef("%s works on nodes only, not %q", cmd, args[0])
		}
		args = append([]string{"nodes"}, args...)
	}
	for _, s := range args[1:] {
		switch {
		case strings.ContainsAny(s, "=:") || strings.HasSuffix(s, "-"):
			a.Changes = append(a.Changes, s)
		case len(a.Changes) > 0:
			return a, usagef("node %q after the changes: give node names first, as kubectl does", s)
		default:
			name := s
			if i := strings.Index(s, "/"); i >= 0 {
				name = s[i+1:]
			}
			a.Nodes = append(a.Nodes, name)
		}
	}
	if len(a.Changes) == 0 {
		return a, usagef("%s needs at least one change (KEY=VAL or KEY-)", cmd)
	}
	return a, nil
}

// submitBody is the POST /v1/batches body (docs/api.md).
type submitBody struct {
	Labels         []string `json:"labels,omitempty"`
	Taints         []string `json:"taints,omitempty"`
	Nodes          []string `json:"nodes,omitempty"`
	Selector       string   `json:"selector,omitempty"`
	All            bool     `json:"all,omitempty"`
	Concurrency    int      `json:"concurrency,omitempty"`
	MaxFailures    any      `json:"max_failures,omitempty"`
	MaxNodes       int      `json:"max_nodes,omitempty"`
	Confirm        int      `json:"confirm,omitempty"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
}

func runChange(ctx context.Context, cmd string, args []string, env Env) error {
	fs := newFlags(cmd, env)
	var c common
	c.register(fs, env, true)
	var b submitBody
	var maxFailures, dryRun string
	fs.StringVarP(&b.Selector, "selector", "l", "", "label selector of the nodes")
	fs.BoolVar(&b.All, "all", false, "every node (needs --confirm=N or --max-nodes)")
	fs.IntVar(&b.Concurrency, "concurrency", 0, "nodes patched at once (default: one per 20 nodes, at most the server's maximum)")
	fs.StringVar(&maxFailures, "max-failures", "", "stop the batch after this many failures (10) or this share (5%)")
	fs.IntVar(&b.MaxNodes, "max-nodes", 0, "refuse the batch if it resolves to more nodes than this")
	fs.IntVar(&b.Confirm, "confirm", 0, "the node count the batch resolves to (the confirmation guard)")
	fs.StringVar(&b.IdempotencyKey, "idempotency-key", "", "the same key and request return the same batch")
	fs.StringVar(&dryRun, "dry-run", "none", "server: print what each node would become (POST /v1/batches:preview); nothing changes")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch dryRun {
	case "none", "server":
	case "client":
		return usagef("--dry-run=client is not supported: the preview needs the nodes, use --dry-run=server")
	default:
		return usagef(`invalid --dry-run %q: want "none" or "server"`, dryRun)
	}
	if err := c.check(); err != nil {
		return err
	}
	a, err := splitChangeArgs(cmd, fs.Args())
	if err != nil {
		return err
	}
	b.Nodes = a.Nodes
	targets := 0
	for _, set := range []bool{len(b.Nodes) > 0, b.Selector != "", b.All} {
		if set {
			targets++
		}
	}
	if targets != 1 {
		return usagef("give exactly one of node names, -l/--selector or --all")
	}
	if cmd == "label" {
		b.Labels = a.Changes
	} else {
		b.Taints = a.Changes
	}
	if maxFailures != "" {
		if n, err := strconv.Atoi(maxFailures); err == nil {
			b.MaxFailures = n
		} else {
			b.MaxFailures = maxFailures
		}
	}
	cl, err := c.client(ctx, env)
	if err != nil {
		return err
	}
	if dryRun == "server" {
		return confirmHint(runPreview(ctx, env, cl, c.output, b))
	}
	_, raw, err := cl.do(ctx, http.MethodPost, "/v1/batches", b)
	if err != nil {
		return confirmHint(err)
	}
	return c.follow(ctx, env, cl, raw)
}

// confirmHint adds the flag to pass to a confirmation refusal.
func confirmHint(err error) error {
	var ae *apiError
	if !errors.As(err, &ae) || ae.Code != apierror.ConfirmationRequired.Code() {
		return err
	}
	return &exitError{code: ExitConfirm, err: fmt.Errorf("%w\nerror: the batch resolves to %d nodes: pass --confirm=%d (or --max-nodes=%d) to go ahead", ae, ae.Nodes, ae.Nodes, ae.Nodes)}
}

// follow waits for the batch of a submit/retry/revert answer (if asked and
// not final yet), prints it and returns the error for its final state.
func (c *common) follow(ctx context.Context, env Env, cl *client, raw []byte) error {
	s, err := decodeStatus(raw)
	if err != nil {
		return err
	}
	if !c.wait {
		return printBatch(env.Stdout, c.output, raw, s, env.Now())
	}
	if !s.State.Final() {
		u, err := wsURL(cl.base)
		if err != nil {
			return err
		}
		if err := c.waitFinal(ctx, env, cl, u, s.BatchID); err != nil {
			return err
		}
	}
	_, raw, err = cl.do(ctx, http.MethodGet, "/v1/batches/"+url.PathEscape(s.BatchID), nil)
	if err != nil {
		return err
	}
	if s, err = decodeStatus(raw); err != nil {
		return err
	}
	fmt.Fprintln(env.Stderr, summaryLine(s))
	if err := printBatch(env.Stdout, c.output, raw, s, env.Now()); err != nil {
		return err
	}
	if code := exitFor(s.State); code != ExitOK {
		return &exitError{code: code}
	}
	return nil
}

// runGet is get (print the batch) and watch (wait for it like label does).
func runGet(ctx context.Context, cmd string, args []string, env Env) error {
	fs := newFlags(cmd, env)
	var c common
	c.register(fs, env, cmd == "watch")
	id, cl, err := c.batchCommand(ctx, fs, cmd, args, env)
	if err != nil {
		return err
	}
	_, raw, err := cl.do(ctx, http.MethodGet, "/v1/batches/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	if cmd == "watch" {
		c.wait = true
		return c.follow(ctx, env, cl, raw)
	}
	s, err := decodeStatus(raw)
	if err != nil {
		return err
	}
	return printBatch(env.Stdout, c.output, raw, s, env.Now())
}

func runList(ctx context.Context, args []string, env Env) error {
	fs := newFlags("list", env)
	var c common
	c.register(fs, env, false)
	var state string
	var limit int
	var allUsers bool
	fs.StringVar(&state, "state", "", "only batches in this state")
	fs.IntVar(&limit, "limit", 0, "at most this many batches (server default 20, at most 100)")
	fs.BoolVar(&allUsers, "all-users", false, "everyone's batches (admins only)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("list takes no arguments, got %q", fs.Args())
	}
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if allUsers {
		q.Set("all", "true")
	}
	path := "/v1/batches"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	cl, err := c.client(ctx, env)
	if err != nil {
		return err
	}
	_, raw, err := cl.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return printList(env.Stdout, env.Stderr, c.output, raw, env.Now())
}

func runControl(ctx context.Context, cmd string, args []string, env Env) error {
	fs := newFlags(cmd, env)
	var c common
	c.register(fs, env, cmd != "cancel")
	var reason string
	var includeCancelled bool
	switch cmd {
	case "cancel":
		fs.StringVar(&reason, "reason", "", "why (kept on the batch)")
	case "retry":
		fs.BoolVar(&includeCancelled, "include-cancelled", false, "re-run cancelled nodes too")
	}
	id, cl, err := c.batchCommand(ctx, fs, cmd, args, env)
	if err != nil {
		return err
	}
	var body any
	switch {
	case cmd == "cancel" && reason != "":
		body = map[string]string{"reason": reason}
	case cmd == "retry" && includeCancelled:
		body = map[string]bool{"include_cancelled": true}
	}
	_, raw, err := cl.do(ctx, http.MethodPost, "/v1/batches/"+url.PathEscape(id)+":"+cmd, body)
	if err != nil {
		return err
	}
	if cmd != "cancel" {
		return c.follow(ctx, env, cl, raw)
	}
	s, err := decodeStatus(raw)
	if err != nil {
		return err
	}
	if c.output != "" {
		return printBatch(env.Stdout, c.output, raw, s, env.Now())
	}
	var settled struct {
		Settled bool `json:"settled"`
	}
	_ = jsonUnmarshal(raw, &settled)
	if settled.Settled {
		fmt.Fprintf(env.Stdout, "batch/%s cancel settled: no patch of it starts or is in flight\n", s.BatchID)
	} else {
		fmt.Fprintf(env.Stdout, "batch/%s cancel recorded; a patch in flight has not finished yet (at most one per lane may still land)\n", s.BatchID)
	}
	return nil
}

// summaryLine is the final line after waiting.
func summaryLine(s status) string {
	c := s.Counts
	line := fmt.Sprintf("batch/%s %s: %d/%d nodes (%d succeeded, %d unchanged, %d failed, %d skipped, %d cancelled)",
		s.BatchID, s.State, c.Done(), s.Total, c.Succeeded, c.Unchanged, c.Failed, c.Skipped, c.Cancelled)
	if s.Reason != "" {
		line += ": " + s.Reason
	}
	for i, f := range s.Failures {
		if i == 10 {
			line += fmt.Sprintf("\n  … %d more failures: kubectl nodebatch get %s -o yaml", len(s.Failures)-10, s.BatchID)
			break
		}
		line += fmt.Sprintf("\n  node/%s: %s", f.Node, f.Reason)
	}
	return line
}

// cancelAnswerWait is how long a wait that has ended still waits for the
// answer of the cancel it sent, to print it.
const cancelAnswerWait = 10 * time.Second

// waitFinal waits for the batch's final message. The first interrupt
// (Ctrl-C) cancels the batch and goes on waiting for it to end; the second
// detaches, leaving the batch as it is, and says how to watch it.
func (c *common) waitFinal(ctx context.Context, env Env, cl *client, wsu, id string) error {
	rep := newReporter(c.progress, env.Terminal, env.Stderr, c.interval, env.Now)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w := &watcher{url: wsu, token: c.token(env), rep: rep}
	done := make(chan error, 1)
	go func() {
		_, err := w.wait(wctx, id)
		rep.final(progress.Message{}) // ends the bar's line if the wait failed
		done <- err
	}()
	env.interrupts.waiting.Store(true)
	defer env.interrupts.waiting.Store(false)
	interrupts := 0
	var cancelled chan struct{} // closed when the cancel sent has its answer
	for {
		select {
		case err := <-done:
			if cancelled != nil {
				// The final message may come before the cancel's answer:
				// print the answer too, unless it is slow to come.
				select {
				case <-cancelled:
				case <-time.After(cancelAnswerWait):
				}
			}
			return err
		case <-env.interrupts.ch:
			interrupts++
			if interrupts > 1 {
				stop()
				<-done
				return &exitError{code: ExitFailed, err: fmt.Errorf("detached: batch/%s is left as it is (the cancel sent may or may not have been recorded); follow it with: kubectl nodebatch watch %s", id, id)}
			}
			rep.println(fmt.Sprintf("interrupted: cancelling batch/%s (press Ctrl-C again to detach and leave it running)", id))
			cancelled = make(chan struct{})
			go func() {
				defer close(cancelled)
				_, raw, err := cl.do(wctx, http.MethodPost, "/v1/batches/"+url.PathEscape(id)+":cancel", map[string]string{"reason": "interrupted (Ctrl-C) in kubectl-nodebatch"})
				var settled struct {
					Settled bool `json:"settled"`
				}
				switch {
				case wctx.Err() != nil:
				case err != nil:
					rep.println(fmt.Sprintf("cancel batch/%s: %v", id, err))
				case jsonUnmarshal(raw, &settled) == nil && settled.Settled:
					rep.println(fmt.Sprintf("batch/%s cancel settled: no patch of it starts or is in flight; waiting for it to end", id))
				default:
					rep.println(fmt.Sprintf("batch/%s cancel recorded; a patch in flight has not finished yet; waiting for it to end", id))
				}
			}()
		}
	}
}

// batchCommand is the start every command on one batch shares: parse the
// flags, check them, take the batch id argument, and build the client.
func (c *common) batchCommand(ctx context.Context, fs *pflag.FlagSet, cmd string, args []string, env Env) (string, *client, error) {
	if err := parse(fs, args); err != nil {
		return "", nil, err
	}
	if err := c.check(); err != nil {
		return "", nil, err
	}
	id, err := batchID(cmd, fs.Args())
	if err != nil {
		return "", nil, err
	}
	cl, err := c.client(ctx, env)
	if err != nil {
		return "", nil, err
	}
	return id, cl, nil
}
