package imagestore

import (
	"fmt"
	"os"
	"syscall"
)

// flock takes a shared or exclusive flock(2) on path (created if missing)
// through a new open file description, so goroutines of one process exclude
// each other exactly like separate processes do. The returned function
// releases it.
func flock(path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image store lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
