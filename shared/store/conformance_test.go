package store_test

import (
	"testing"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/store/storetest"
)

// TestConformance runs the store conformance suite against the Firestore
// emulator, each case in a project of its own. shared/store/memstore runs
// the same suite, so unit tests on the in-memory store test these
// semantics.
func TestConformance(t *testing.T) {
	env := harness.Start(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return store.New(env.Firestore(t, env.ProjectID(t)))
	})
}
