package e2e

import (
	"os"
	"testing"

	"github.com/nodebatch/nodebatch/emulators/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }
