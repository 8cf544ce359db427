// Command kubectl-nodebatch is the nodebatch CLI, found by kubectl on PATH
// as `kubectl nodebatch`; also runnable directly. All of it is shared/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/nodebatch/nodebatch/shared/cli"
)

func main() {
	// SIGTERM stops the client (the batch goes on); Ctrl-C while waiting
	// cancels the batch, a second Ctrl-C detaches (cli.Env.Interrupt).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	interrupt := make(chan os.Signal, 2)
	signal.Notify(interrupt, os.Interrupt)
	env := cli.Env{
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		Getenv:    os.Getenv,
		Terminal:  term.IsTerminal(int(os.Stderr.Fd())),
		Interrupt: interrupt,
	}
	code := cli.Run(ctx, os.Args[1:], env)
	stop()
	os.Exit(code)
}
