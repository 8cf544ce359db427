package memstore_test

import (
	"testing"

	"github.com/nodebatch/nodebatch/shared/store/memstore"
	"github.com/nodebatch/nodebatch/shared/store/storetest"
)

// TestConformance: the in-memory store passes the suite the Firestore
// store passes (shared/store's TestConformance, on the emulator).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return memstore.New() })
}
