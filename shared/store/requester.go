package store

import "time"

// Requester is who asked for one attempt of a batch (the submit, a retry;
// a revert is a batch of its own), as the Kubernetes API server sees them.
// The batch function records it after verifying the caller's token; the
// per-node path impersonates exactly this user and these groups for the
// attempt's patches, never anything an event says.
type Requester struct {
	Attempt int       `firestore:"attempt" json:"attempt"`
	Subject string    `firestore:"subject" json:"subject"` // the caller's owner id (auth.Principal.Subject)
	User    string    `firestore:"user" json:"user"`       // Kubernetes user name
	Groups  []string  `firestore:"groups" json:"groups,omitempty"`
	At      time.Time `firestore:"at" json:"at"`
}

// RequesterOf returns who asked for attempt of b.
func (b *BatchDoc) RequesterOf(attempt int) (Requester, bool) {
	for _, r := range b.Requesters {
		if r.Attempt == attempt {
			return r, true
		}
	}
	return Requester{}, false
}
