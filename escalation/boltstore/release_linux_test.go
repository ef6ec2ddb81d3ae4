package boltstore

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// mappedKiB is the resident size of this process's mappings of path.
func mappedKiB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in, total := false, 0
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasSuffix(line, " "+path)
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			total += n
		}
	}
	return total
}

// TestReleaseMapDropsResidentPagesKeepsData: after reading a whole 8 MiB
// store through the memory map most of it is resident; ReleaseMap gives
// those pages back, and every value still reads back intact.
func TestReleaseMapDropsResidentPagesKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true, ReleaseMapEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 4000) }
	const n = 2000
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bState)
		for i := range n {
			if err := b.Put([]byte(fmt.Sprintf("k%05d", i)), val(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readAll := func() {
		t.Helper()
		err := s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bState)
			for i := range n {
				if v := b.Get([]byte(fmt.Sprintf("k%05d", i))); !bytes.Equal(v, val(i)) {
					return fmt.Errorf("key %d reads back wrong (%d bytes)", i, len(v))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	path := s.db.Path()
	readAll()
	before := mappedKiB(t, path)
	if before < 4<<10 {
		t.Fatalf("only %d KiB of the store resident after reading 8 MiB: the measurement is broken", before)
	}
	if err := s.ReleaseMap(); err != nil {
		t.Fatal(err)
	}
	after := mappedKiB(t, path)
	if after > before/4 {
		t.Fatalf("ReleaseMap left %d of %d KiB resident", after, before)
	}
	readAll() // the data is all there: the pages come back from the page cache
	t.Logf("resident map: %d KiB after reading, %d KiB after ReleaseMap", before, after)
}

// TestOpenLeavesLittleOfTheFileResident: opening for writing after a crash
// walks every page of the file to find the free ones (commits do not write
// the free list), which maps the whole file; Open gives those pages back at
// once, so a restart with a large store does not start with all of it in
// RSS. After a clean Close, which writes the list, Open does not walk.
func TestOpenLeavesLittleOfTheFileResident(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true, ReleaseMapEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bState)
		for i := range 2000 { // 8 MiB
			if err := b.Put([]byte(fmt.Sprintf("k%05d", i)), bytes.Repeat([]byte{byte(i)}, 4000)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// crashed copies the file as a crash would leave it (its last commit's:
	// free list unwritten) into a directory of its own: opening and closing
	// a copy writes its free list.
	var image []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		var buf bytes.Buffer
		_, err := tx.WriteTo(&buf)
		image = buf.Bytes()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	crashed := func() string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), image, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	resident := func(dir string, o Options) int {
		t.Helper()
		s, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return mappedKiB(t, filepath.Join(dir, FileName))
	}
	walked := resident(crashed(), Options{NoSync: true, ReleaseMapEvery: -1})
	if walked < 4<<10 {
		t.Fatalf("only %d KiB of an 8 MiB store resident after opening it after a crash, releasing nothing: the measurement is broken, or opening no longer walks the file", walked)
	}
	if got := resident(crashed(), Options{NoSync: true}); got > walked/4 {
		t.Errorf("%d KiB of the store resident after Open, %d KiB when it releases nothing: Open keeps the pages its walk mapped", got, walked)
	}
	if got := resident(dir, Options{NoSync: true, ReleaseMapEvery: -1}); got > walked/4 {
		t.Errorf("%d KiB of the store resident after opening it after a clean Close, releasing nothing (%d KiB after a crash): Close did not write the free list, and Open walked the file", got, walked)
	}
}
