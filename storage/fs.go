package storage

import (
	"errors"
	"fmt"
	"io/fs"
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
