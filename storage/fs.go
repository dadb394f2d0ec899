package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// mkdirSynced creates dir and any missing parents with mode 0700 on fsys
// (the operating system's if nil), fsyncing each new directory's parent so
// that the new entry survives a crash (etcd-io/etcd#6368). An existing
// directory is left as it is.
func mkdirSynced(fsys vfs.FS, dir string) error {
	if fsys == nil {
		fsys = vfs.Default
	}
	info, err := fsys.Stat(dir)
	if err == nil {
		if !info.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if parent != dir {
		if err := mkdirSynced(fsys, parent); err != nil {
			return err
		}
	}
	// The parent exists now, so this creates dir alone.
	if err := fsys.MkdirAll(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(fsys, parent)
}

// syncDir fsyncs a directory, making its entries durable.
func syncDir(fsys vfs.FS, dir string) error {
	d, err := fsys.OpenDir(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return d.Close()
}

// privateFS is the operating system's file system with every file pebble
// creates made readable and writable by its owner alone (0600), whatever
// the process umask: the raft log is nobody else's business.
type privateFS struct{ vfs.FS }

func (p privateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.Create(name, category)
	return private(name, f, err)
}

func (p privateFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, category, opts...)
	return private(name, f, err)
}

func (p privateFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname, category)
	return private(newname, f, err)
}

func private(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	if err := os.Chmod(name, 0o600); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("chmod %s: %w", name, err)
	}
	return f, nil
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	c, err := p.FS.Lock(name)
	if err != nil {
		return c, err
	}
	if err := os.Chmod(name, 0o600); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("chmod %s: %w", name, err)
	}
	return c, nil
}
