// Command kubectl-nodebatch is the nodebatch CLI, found by kubectl on PATH
// as `kubectl nodebatch`; also runnable directly. All of it is shared/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodebatch/nodebatch/shared/cli"
)

func main() {
	// SIGTERM stops the client (the batch goes on); Ctrl-C while waiting
	// cancels the batch, a second Ctrl-C detaches (cli.Env.Interrupt).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	interrupt := make(chan os.Signal, 2)
	signal.Notify(interrupt, os.Interrupt)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Interrupt: interrupt})
	stop()
	os.Exit(code)
}
