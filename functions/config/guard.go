package config

import "github.com/nodebatch/nodebatch/shared/setting"

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
	var g Guard
	var err error
	if g.ConfirmOver, err = setting.Int(getenv, "NODEBATCH_CONFIRM_OVER", DefaultConfirmOver, 1); err != nil {
		return g, err
	}
	g.SeedNoExecute, err = setting.Bool(getenv, "NODEBATCH_GUARD_SEED", true)
	return g, err
}
