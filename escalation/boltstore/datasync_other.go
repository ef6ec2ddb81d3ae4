//go:build !linux

package boltstore

import "os"

// datasync flushes f to the disk.
func datasync(f *os.File) error { return f.Sync() }

// preallocate does nothing here: appends extend the file.
func preallocate(*os.File, int64) error { return nil }
