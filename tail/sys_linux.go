package tail

import (
	"io"
	"os"
	"syscall"
	"time"
)

// changeTime is the file's status change time (ctime): a rename, a write or a truncate
// moves it, so a file renamed into a rotation family is as new as its rename.
func changeTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Unix())
	}
	return fi.ModTime()
}

// readOnce is one pread(2): a read shorter than b means the end of the file for now.
// os.File.ReadAt would pread again to confirm it, one more system call on every read
// of every busy file. The descriptor stays valid: only the tailer's own goroutine, which
// calls this, closes the file; Fd leaves a regular file (never in the poller) as it is.
func readOnce(f *os.File, b []byte, off int64) (int, error) {
	for {
		n, err := syscall.Pread(int(f.Fd()), b, off)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, &os.PathError{Op: "pread", Path: f.Name(), Err: err}
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
