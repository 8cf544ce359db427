package main

import (
	"context"
	"log/slog"

	"github.com/nodebatch/nodebatch/emulators/stack"
)

// productProcesses is the hook `make run` grows into: the product's
// processes (batch and patch functions, relay, push deliverer, development
// OIDC issuer) started on top of a ready stack, each with a Ready probe on
// its real endpoint. The stack stops them first, before the emulators.
// Nothing is wired yet: the lead adds the entries as the parts land.
func productProcesses(info stack.Info) []stack.ProcessSpec {
	return nil
}

// startProduct starts productProcesses in order and records their
// endpoints in info.Extra (written to the state file).
func startProduct(ctx context.Context, st *stack.Stack, info *stack.Info) error {
	specs := productProcesses(*info)
	if len(specs) == 0 {
		slog.Warn("-product: no product processes are wired yet (emulators/cmd/stack/product.go); running the stack only")
	}
	for _, spec := range specs {
		if err := st.StartProcess(ctx, spec); err != nil {
			return err
		}
	}
	return nil
}
