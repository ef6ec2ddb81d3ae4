package boltstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync flushes f's data, and only the metadata needed to read it back
// (fdatasync, as bbolt does on Linux): not its modification time.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// preallocate allocates the first size bytes of f.
func preallocate(f *os.File, size int64) error { return unix.Fallocate(int(f.Fd()), 0, 0, size) }

// syncDir flushes directory dir's entries to the disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
