//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package cli

import "os"

// tryLock is a no-op where syscall has no flock(2) (Windows, Plan 9,
// illumos, ...): there concurrent processes are not kept apart, and a
// renewal raced by another process can still end the session.
func tryLock(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
