package stack

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFreePortsDistinct(t *testing.T) {
	p, err := FreePorts()
	if err != nil {
		t.Fatalf("FreePorts: %v", err)
	}
	seen := map[int]bool{}
	for _, port := range []int{p.APIServer, p.EtcdClient, p.EtcdPeer, p.Firestore, p.PubSub} {
		if port == 0 || seen[port] {
			t.Errorf("FreePorts() = %+v: port %d zero or repeated", p, port)
		}
		seen[port] = true
	}
}

// A restart must keep tokens and CA, or kubeconfigs written before it break.
func TestCredentialsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	var first, second Info
	pki1, err := ensurePKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatalf("ensurePKI: %v", err)
	}
	if err := ensureTokens(filepath.Join(dir, "tokens.csv"), &first); err != nil {
		t.Fatalf("ensureTokens: %v", err)
	}
	pki2, err := ensurePKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatalf("ensurePKI again: %v", err)
	}
	if err := ensureTokens(filepath.Join(dir, "tokens.csv"), &second); err != nil {
		t.Fatalf("ensureTokens again: %v", err)
	}
	if first.AdminToken == "" || first.PatcherToken == "" || first.AdminToken == first.PatcherToken {
		t.Fatalf("tokens = %q, %q: want two distinct non-empty tokens", first.AdminToken, first.PatcherToken)
	}
	if diff := cmp.Diff([]string{first.AdminToken, first.PatcherToken}, []string{second.AdminToken, second.PatcherToken}); diff != "" {
		t.Errorf("tokens changed across restart (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(pki1.caPEM), string(pki2.caPEM)); diff != "" {
		t.Errorf("CA changed across restart (-want +got):\n%s", diff)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tokens.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want := first.AdminToken + "," + AdminUser + "," + AdminUser + ",\"system:masters\"\n" +
		first.PatcherToken + "," + PatcherUser + "," + PatcherUser + "\n"
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("token file (-want +got):\n%s", diff)
	}
}
