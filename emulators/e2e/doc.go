// Package e2e holds whole-product integration tests of nodebatch on the real
// local stack (kube-apiserver, Firestore and Pub/Sub emulators): injected
// faults (API server errors and timeouts, a killed patch function, duplicate
// and reordered delivery, a relay restart, nodes changed or deleted by
// others mid-batch), the limits on hostile input, the security matrix of
// every endpoint against every kind of caller, and a check that no token
// ever reaches the logs. docs/reliability.md reports what they measured.
//
// The package has no code of its own; everything is in its tests.
package e2e
