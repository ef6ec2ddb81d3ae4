//go:build !linux

package boltstore

// releaseMapped does nothing where MADV_DONTNEED is not used.
func releaseMapped(addr, size uintptr) error { return nil }
