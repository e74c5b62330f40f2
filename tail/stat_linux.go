package tail

import (
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
