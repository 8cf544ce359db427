package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// contextsLockTimeout bounds the wait for the contexts file's lock when
// the command's context has no earlier deadline. Another process holds
// it only while it renews a token or saves a context (a few requests to
// the issuer), never while a browser sign-in waits.
const contextsLockTimeout = 30 * time.Second

// errLockHeld is what tryLock answers while another holder has the lock.
var errLockHeld = errors.New("held by another process")

// lockContexts takes the exclusive advisory lock on the lock file next to
// the contexts file at path (path + ".lock", mode 0600, in the 0700
// folder), so that renewals and other read-modify-writes of the contexts
// file by concurrent kubectl-nodebatch processes happen one at a time. It
// waits until ctx ends or contextsLockTimeout has passed, then answers an
// error naming the lock file. unlock releases the lock; the lock file
// stays (removing it would let two processes lock different files).
func lockContexts(ctx context.Context, path string) (unlock func(), err error) {
	lockPath := path + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock contexts %s: %w", lockPath, err)
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock contexts %s: %w", lockPath, err)
	}
	if err := f.Chmod(0o600); err != nil { // a file left by an older umask or by hand
		f.Close()
		return nil, fmt.Errorf("lock contexts %s: %w", lockPath, err)
	}
	ctx, cancel := context.WithTimeout(ctx, contextsLockTimeout)
	defer cancel()
	wait := 5 * time.Millisecond
	for {
		err := tryLock(f)
		if err == nil {
			return func() {
				_ = unlockFile(f) // closing the file releases the lock anyway
				f.Close()
			}, nil
		}
		if !errors.Is(err, errLockHeld) {
			f.Close()
			return nil, fmt.Errorf("lock contexts %s: %w", lockPath, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock contexts %s: still held by another kubectl-nodebatch process: %w", lockPath, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// updateContexts runs change on the contexts file at path under its lock:
// the file is read afresh after the lock is taken, and saved when change
// answers save true (even with an error: a refresh token the issuer
// refused is forgotten).
func updateContexts(ctx context.Context, path string, change func(*Contexts) (save bool, err error)) error {
	unlock, err := lockContexts(ctx, path)
	if err != nil {
		return err
	}
	defer unlock()
	cs, err := loadContexts(path)
	if err != nil {
		return err
	}
	save, err := change(cs)
	if save {
		if serr := cs.save(path); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}
