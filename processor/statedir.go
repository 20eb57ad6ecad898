package processor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// maxStoreSlots bounds how many processes may keep stores side by side in one state directory.
const maxStoreSlots = 64

// claimStoreDir picks the store directory of this process under base: base itself, or base.1,
// base.2, … when processes share the state directory (a volume of several containers, two
// instances on one host). Each directory is locked (flock on <dir>.lock) while a process uses it,
// so no two open one store. Any free one will do: a store is a cache of the whole changelog,
// with its own checkpoint per partition, whichever partitions its last user held.
func claimStoreDir(base string) (dir string, release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return "", nil, err
	}
	for slot := range maxStoreSlots {
		dir = base
		if slot > 0 {
			dir = fmt.Sprintf("%s.%d", base, slot)
		}
		f, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return "", nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // another process's store
			}
			return "", nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		return dir, func() { _ = f.Close() }, nil // closing the file releases the lock
	}
	return "", nil, fmt.Errorf("state directory %s: all %d store slots are in use by other processes", filepath.Dir(base), maxStoreSlots)
}
