package images

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var fileNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// allocated returns the bytes a file occupies on disk.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// lockFile is an exclusive flock held while an image is built, imported or
// removed, so two of those never race on the same <release>/<arch>.
type lockFile struct{ f *os.File }

// lockImage takes the lock of one image without waiting.
func lockImage(relDir, arch string) (*lockFile, error) {
	if err := os.MkdirAll(relDir, 0o755); err != nil {
		return nil, fmt.Errorf("create image directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(relDir, "."+arch+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another build, import or removal of this image (%s) is running", arch)
		}
		return nil, fmt.Errorf("lock image: %w", err)
	}
	return &lockFile{f: f}, nil
}

// unlock releases the lock (closing the descriptor drops the flock).
func (l *lockFile) unlock() { l.f.Close() }

// newStagingDir creates <relDir>/.<arch>.<stamp>, on the same filesystem as
// the final image so installing it is a rename.
func newStagingDir(relDir, arch string) (string, error) {
	if err := os.MkdirAll(relDir, 0o755); err != nil {
		return "", fmt.Errorf("create image directory: %w", err)
	}
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	dir := filepath.Join(relDir, "."+arch+"."+stamp)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("create staging directory: %w", err)
	}
	return dir, nil
}

// install makes staged (a sibling ".<arch>.<stamp>" directory) the image
// <relDir>/<arch> by renaming a symlink over the old entry: readers see the
// old image or the new one, never none or half of one. The previous version
// is deleted afterwards (running VMs keep their open files).
func install(relDir, arch, staged string) error {
	final := filepath.Join(relDir, arch)
	target := filepath.Base(staged)
	link := filepath.Join(relDir, "."+arch+".link."+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Symlink(target, link); err != nil {
		return fmt.Errorf("install image: %w", err)
	}
	old, _ := os.Readlink(final) // "" when final is missing or a plain directory
	err := os.Rename(link, final)
	if err != nil {
		// final is a plain directory (an operator's image): move it aside.
		fi, serr := os.Lstat(final)
		if serr != nil || !fi.IsDir() {
			os.Remove(link)
			return fmt.Errorf("install image: %w", err)
		}
		aside := filepath.Join(relDir, "."+arch+".old."+strconv.FormatInt(time.Now().UnixNano(), 36))
		if err := os.Rename(final, aside); err != nil {
			os.Remove(link)
			return fmt.Errorf("install image: move old image aside: %w", err)
		}
		if err := os.Rename(link, final); err != nil {
			os.Rename(aside, final)
			os.Remove(link)
			return fmt.Errorf("install image: %w", err)
		}
		old = filepath.Base(aside)
	}
	if old != "" && old != target && !strings.Contains(old, "/") {
		if err := removeAllSafe(filepath.Join(relDir, old)); err != nil {
			return fmt.Errorf("remove previous image: %w", err)
		}
	}
	return nil
}

// removeImage deletes <relDir>/<arch> and the directory its symlink points to.
func removeImage(relDir, arch string) error {
	final := filepath.Join(relDir, arch)
	fi, err := os.Lstat(final)
	if err != nil {
		return fmt.Errorf("remove image: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(final)
		if err != nil {
			return fmt.Errorf("remove image: %w", err)
		}
		if err := os.Remove(final); err != nil {
			return fmt.Errorf("remove image: %w", err)
		}
		if strings.Contains(target, "/") {
			return nil // not one of ours: leave the target alone
		}
		return removeAllSafe(filepath.Join(relDir, target))
	}
	return removeAllSafe(final)
}

// cleanStale removes leftovers of interrupted builds or imports of one arch:
// ".<arch>.*" directories and links that the live entry does not point to.
// Callers hold the image lock.
func cleanStale(relDir, arch string) error {
	live, _ := os.Readlink(filepath.Join(relDir, arch))
	ents, err := os.ReadDir(relDir)
	if err != nil {
		return fmt.Errorf("clean stale builds: %w", err)
	}
	prefix := "." + arch + "."
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) || n == live || n == "."+arch+".lock" {
			continue
		}
		if err := removeAllSafe(filepath.Join(relDir, n)); err != nil {
			return err
		}
	}
	return nil
}

// removeAllSafe is os.RemoveAll that refuses to descend into a tree with
// something mounted below it (an interrupted bootstrap could leave /proc or
// /dev bind mounts in a root tree; deleting through them would hit the host).
func removeAllSafe(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	mounts, err := mountsBelow(abs)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("remove %s: refusing, %s is still mounted", dir, mounts[0])
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// mountsBelow lists mount points at or below dir (from /proc/self/mountinfo).
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		real = dir
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == real || strings.HasPrefix(mp, real+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount decodes the octal escapes (\040 etc.) of mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
