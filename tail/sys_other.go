//go:build !linux

package tail

import (
	"io"
	"os"
	"time"
)

// changeTime falls back to the modification time where ctime is not at hand; a file
// renamed without being written then looks older than it is.
func changeTime(fi os.FileInfo) time.Time { return fi.ModTime() }

// readOnce reads at off; a read shorter than b means the end of the file for now.
func readOnce(f *os.File, b []byte, off int64) (int, error) {
	n, err := f.ReadAt(b, off)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}
