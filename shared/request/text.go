package request

import "unicode/utf8"

// Truncate cuts user text s to at most n bytes without splitting a UTF-8
// character: a cut through one would store bytes that are not UTF-8, which
// Firestore (like protobuf) refuses, so every write of it would fail.
// Invalid bytes already in s are kept as they are; n < 0 is taken as 0.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	// A character is at most utf8.UTFMax bytes: look back no further
	// (further back, s is not UTF-8 anyway).
	for i := 1; i < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}
