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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
