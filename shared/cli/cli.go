// Package cli is kubectl-nodebatch, the command-line client of the nodebatch
// API: label and taint many nodes with kubectl's argument shapes, wait on
// the relay's progress stream, and get, list, cancel, retry and revert
// batches. The main (relay/cmd/kubectl-nodebatch) only wires Run to the
// process; everything else, flags included, lives here so tests run it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/nodebatch/nodebatch/shared/apierror"
)

// Exit codes (docs/config.md "kubectl-nodebatch").
const (
	ExitOK           = 0 // the batch succeeded (or the command did what it says)
	ExitFailed       = 1 // the batch failed or partially failed; any other error
	ExitUsage        = 2 // usage or validation error (the API's 400/422 included)
	ExitCancelled    = 3 // the batch ended cancelled
	ExitUnauthorized = 4 // 401 or 403
	ExitConfirm      = 5 // the confirmation guard refused the batch (409 confirmation_required)
)

// Defaults of the settings.
const (
	DefaultURL      = "http://127.0.0.1:8090" // the local relay, which proxies /v1/ to the API
	DefaultInterval = 3 * time.Second
)

// Env is what Run takes from the process.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	HTTP           *http.Client // default http.DefaultClient
	Now            func() time.Time
	// Terminal says stderr is a terminal: while waiting, a live bar
	// instead of plain lines (--progress auto).
	Terminal bool
	// Interrupt delivers Ctrl-C while waiting: the first cancels the batch,
	// the second detaches. Nil: never.
	Interrupt <-chan os.Signal

	interrupts *interrupts // set by Run
}

// exitError carries an exit code and the message printed for it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

// idPattern is the API's batch id syntax; checked here so an id never
// changes the path it is put in.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

const usage = `kubectl-nodebatch changes labels and taints on many nodes through the nodebatch API.

Usage:
  kubectl nodebatch label nodes (NAME... | -l SELECTOR | --all) KEY=VAL... KEY- [--dry-run=server] [flags]
  kubectl nodebatch taint nodes (NAME... | -l SELECTOR | --all) KEY=VAL:EFFECT KEY:EFFECT- KEY- [flags]
  kubectl nodebatch get BATCH [-o json|yaml|name|wide]
  kubectl nodebatch watch BATCH [-o ...]   (waits; exits as label does)
  kubectl nodebatch list [--state STATE] [--limit N] [--all-users] [-o ...]
  kubectl nodebatch cancel BATCH [--reason TEXT]
  kubectl nodebatch retry BATCH [--include-cancelled] [--wait]
  kubectl nodebatch revert BATCH [--wait]

Connection (never kubectl's --server/--token/--context/--kubeconfig):
  --nodebatch-url URL    the relay or API (env NODEBATCH_URL; default ` + DefaultURL + `)
  --token-command CMD    run CMD (sh -c) and use what it prints as the bearer token
  NODEBATCH_TOKEN        the bearer token, when --token-command is not given

label and taint also take --dry-run=server: print what each node would
become (and, for a NoExecute taint, what it would evict); nothing changes.

While waiting, a live bar on a terminal, else a plain line every few
seconds (--progress auto|bar|plain). Ctrl-C cancels the batch (and waits
for it to end); a second Ctrl-C detaches, leaving it running.

Exit codes: 0 succeeded, 1 failed or partially failed, 2 usage or validation
error, 3 cancelled, 4 not authorized, 5 confirmation required.
`

// Run runs one command line (args without the program name) and returns
// the exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.HTTP == nil {
		env.HTTP = http.DefaultClient
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	env.interrupts = routeInterrupts(ctx, cancel, env.Interrupt)
	err := run(ctx, args, env)
	if err != nil && ctx.Err() != nil {
		err = &exitError{code: ExitFailed, err: errors.New("interrupted")}
	}
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(env.Stderr, "error: %v\n", ee.err)
		}
		return ee.code
	}
	var ae *apiError
	if errors.As(err, &ae) {
		fmt.Fprintf(env.Stderr, "error: %v\n", ae)
		return exitForAPI(ae)
	}
	fmt.Fprintf(env.Stderr, "error: %v\n", err)
	return ExitFailed
}

// interrupts routes Ctrl-C: to a wait while one is active (waitFinal,
// which cancels the batch), otherwise it stops the command.
type interrupts struct {
	waiting atomic.Bool
	ch      chan os.Signal // buffered; read by the active wait
}

func routeInterrupts(ctx context.Context, stop context.CancelFunc, in <-chan os.Signal) *interrupts {
	r := &interrupts{ch: make(chan os.Signal, 4)}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-in:
				if !r.waiting.Load() {
					stop()
					return
				}
				select {
				case r.ch <- sig:
				default: // the wait has more than it needs
				}
			}
		}
	}()
	return r
}

// exitForAPI maps an API refusal to an exit code.
func exitForAPI(e *apiError) int {
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return ExitUnauthorized
	case e.Code == apierror.ConfirmationRequired.Code():
		return ExitConfirm
	case e.Status == http.StatusBadRequest || e.Status == http.StatusUnprocessableEntity:
		return ExitUsage
	default:
		return ExitFailed
	}
}

// common holds the flags every command has.
type common struct {
	url, tokenCommand, output string
	progress                  string
	wait                      bool
	interval                  time.Duration
}

func (c *common) register(fs *pflag.FlagSet, env Env, waits bool) {
	def := env.Getenv("NODEBATCH_URL")
	if def == "" {
		def = contextURL(env) // login.go: the selected context's URL
	}
	if def == "" {
		def = DefaultURL
	}
	fs.StringVar(&c.url, "nodebatch-url", def, "nodebatch relay or API URL (env NODEBATCH_URL)")
	fs.StringVar(&c.tokenCommand, "token-command", "", "command (run with sh -c) that prints a bearer token; else env NODEBATCH_TOKEN")
	fs.StringVarP(&c.output, "output", "o", "", "output format: json|yaml|name|wide")
	if waits {
		fs.BoolVar(&c.wait, "wait", true, "wait until the batch is final, printing progress")
		fs.DurationVar(&c.interval, "progress-interval", DefaultInterval, "at most one plain progress line per interval while waiting")
		fs.StringVar(&c.progress, "progress", ProgressAuto, "while waiting: auto (a live bar on a terminal, else plain lines), bar or plain")
	}
}

func (c *common) check() error {
	switch c.progress {
	case "", ProgressAuto, ProgressBar, ProgressPlain:
	default:
		return usagef("unknown --progress %q: want auto, bar or plain", c.progress)
	}
	switch c.output {
	case "", "json", "yaml", "name", "wide":
		return nil
	}
	return usagef("unknown output format %q: want json, yaml, name or wide", c.output)
}

// token returns the bearer token: --token-command's output, else
// NODEBATCH_TOKEN. It is never printed.
func (c *common) token(env Env) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if c.tokenCommand != "" {
			cmd := exec.CommandContext(ctx, "sh", "-c", c.tokenCommand)
			cmd.Stderr = env.Stderr
			out, err := cmd.Output()
			if err != nil {
				return "", &exitError{code: ExitUnauthorized, err: fmt.Errorf("--token-command: %w", err)}
			}
			tok := strings.TrimSpace(string(out))
			if tok == "" {
				return "", &exitError{code: ExitUnauthorized, err: errors.New("--token-command printed no token")}
			}
			return tok, nil
		}
		if tok := strings.TrimSpace(env.Getenv("NODEBATCH_TOKEN")); tok != "" {
			return tok, nil
		}
		if tok, ok, err := contextToken(ctx, env, c.url); ok { // login.go: a signed-in context
			return tok, err
		}
		return "", &exitError{code: ExitUnauthorized, err: errors.New("no token: set NODEBATCH_TOKEN or pass --token-command")}
	}
}

func (c *common) client(ctx context.Context, env Env) (*client, error) {
	if _, err := wsURL(c.url); err != nil {
		return nil, usagef("%v", err)
	}
	tok, err := c.token(env)(ctx)
	if err != nil {
		return nil, err
	}
	return &client{base: strings.TrimSuffix(c.url, "/"), token: tok, http: env.HTTP}, nil
}

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(env.Stdout, usage)
		if len(args) == 0 {
			return &exitError{code: ExitUsage}
		}
		return nil
	}
	switch args[0] {
	case "label", "taint":
		return runChange(ctx, args[0], args[1:], env)
	case "get", "watch":
		return runGet(ctx, args[0], args[1:], env)
	case "list":
		return runList(ctx, args[1:], env)
	case "cancel", "retry", "revert":
		return runControl(ctx, args[0], args[1:], env)
	case "login":
		return runLogin(ctx, args[1:], env)
	}
	return usagef("unknown command %q; see 'kubectl nodebatch help'", args[0])
}

func newFlags(name string, env Env) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	return fs
}

func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// batchID checks the one positional argument of get/cancel/retry/revert.
func batchID(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", usagef("%s takes exactly one BATCH, got %d arguments", cmd, len(args))
	}
	id := strings.TrimPrefix(args[0], "batch/")
	if !idPattern.MatchString(id) || strings.HasPrefix(id, "__") {
		return "", usagef("invalid batch id %q: want [A-Za-z0-9_-]{1,128}", args[0])
	}
	return id, nil
}
