package model

import (
	"errors"
	"fmt"
	"strings"
)

// MaxIDLen bounds a batch id; ids nodebatch makes are 26 bytes.
const MaxIDLen = 128

// ErrInvalidID is wrapped by ValidateID's errors.
var ErrInvalidID = errors.New("invalid batch id")

// ValidateID is the one check every batch id passes before it reaches a
// Firestore path, a log line or a message: 1-MaxIDLen bytes of
// [A-Za-z0-9_-]. A '/' would turn a document path into a collection path
// (odd segment count), which the Firestore client answers with a nil ref.
// Ids Firestore reserves (matching __.*__) are refused too: Firestore
// refuses every read and write of such a document, so a watcher on one
// would retry forever.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidID, MaxIDLen)
	}
	if reservedID(id) {
		return fmt.Errorf("%w: ids of the form __name__ are reserved by Firestore", ErrInvalidID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: may hold only letters, digits, '-' and '_'", ErrInvalidID)
		}
	}
	return nil
}

// reservedID reports whether Firestore reserves id as a document id: it
// matches __.*__ (at least four bytes, so "___" is not reserved).
func reservedID(id string) bool {
	return len(id) >= 4 && strings.HasPrefix(id, "__") && strings.HasSuffix(id, "__")
}
