package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// fileMode is the mode of the database and its -wal and -shm files. The
// database holds no secret, but it does hold private repository and job
// names, costs and SSH endpoints: nobody but the service's user reads it.
const fileMode = 0o600

// restrictFiles creates the database file 0600 when it does not exist, so
// that SQLite does not create it with the umask's mode (0644 by default).
// SQLite's unix VFS gives the -wal, -journal and -shm files it creates the
// mode of the database file (findCreateFileMode and unixOpenSharedMemory in
// os_unix.c), so those follow. Existing files wider than 0600 (made by an
// earlier version) are narrowed to it; where that is not allowed (another
// owner, a read-only file system) they are left as they are and the open
// goes on, as it did before.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	switch {
	case err == nil:
		return f.Close()
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("sqlite: creating %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&^fileMode != 0 {
			_ = os.Chmod(p, st.Mode().Perm()&fileMode)
		}
	}
	return nil
}
