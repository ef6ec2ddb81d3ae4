//go:build !linux

package boltstore

import "os"

// datasync flushes f to the disk.
func datasync(f *os.File) error { return f.Sync() }

// preallocate does nothing here: appends extend the file.
func preallocate(*os.File, int64) error { return nil }

// syncDir flushes directory dir's entries where the system allows it.
func syncDir(dir string) error {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // not every system syncs a directory
		d.Close()
	}
	return nil
}
