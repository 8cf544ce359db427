package config

import (
	"fmt"
	"strconv"
)

// DefaultConfirmOver is how many nodes a selector may match before its batch
// needs "confirm" or "max_nodes".
const DefaultConfirmOver = 50

// Guard is the confirmation guard's settings (functions/batch guard.go).
type Guard struct {
	// ConfirmOver: a selector matching more nodes needs confirmation
	// (NODEBATCH_CONFIRM_OVER).
	ConfirmOver int
	// SeedNoExecute: the seed endpoints, which name their nodes, need
	// confirmation for a NoExecute taint (NODEBATCH_GUARD_SEED; false for
	// clients that predate the guard).
	SeedNoExecute bool
}

func loadGuard(getenv func(string) string) (Guard, error) {
	g := Guard{SeedNoExecute: true}
	n, err := intVar(getenv, "NODEBATCH_CONFIRM_OVER", DefaultConfirmOver, 1)
	if err != nil {
		return g, err
	}
	g.ConfirmOver = n
	if v := getenv("NODEBATCH_GUARD_SEED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return g, fmt.Errorf("load config: NODEBATCH_GUARD_SEED=%q: want true or false", v)
		}
		g.SeedNoExecute = b
	}
	return g, nil
}
