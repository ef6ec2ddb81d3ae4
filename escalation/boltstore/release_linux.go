package boltstore

import "syscall"

// releaseMapped tells the kernel the process no longer needs the pages of
// the file mapping at [addr, addr+size) resident (MADV_DONTNEED). On a shared,
// read-only file mapping this unmaps the pages from the process only: the
// file's data and the page cache are untouched.
func releaseMapped(addr, size uintptr) error {
	if size == 0 {
		return nil
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, addr, size, syscall.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}
