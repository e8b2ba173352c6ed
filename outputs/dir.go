package outputs

// This file owns where outputs go: the Destination interface and Dir, the
// directory that implements it.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// A Destination keeps saved outputs under names (see the package
// documentation for how a name is made). A [Saver] calls Stat, then, if
// found is false, Create; on the [Pending] it writes the whole body, then
// calls Commit or Abort, once.
type Destination interface {
	// Stat returns what Commit recorded for name, found false and a nil
	// error when name was never committed completely; err is for failures
	// only.
	Stat(ctx context.Context, name string) (saved Saved, found bool, err error)
	// Create starts a new write of name, which Stat does not see before
	// its Commit.
	Create(ctx context.Context, name string) (Pending, error)
}

// Pending is a file being written to a [Destination].
type Pending interface {
	io.Writer
	// Commit makes what was written visible under the name, with saved
	// (all but its Location) recorded for Stat, and returns where it is.
	// When it fails, Stat does not find the name.
	Commit(saved Saved) (location string, err error)
	// Abort discards what was written.
	Abort() error
}

// Dir is a [Destination]: the directory it names (which must exist) holds
// each output as a file under its name, beside it the record of its URL,
// size, SHA-256 and content type (name + ".saved.json"), and a
// subdirectory ".partial" for files being written.
//
// A file is written in ".partial", synced and renamed to its name, then
// its record is written the same way: a file without its record (a crash
// between the two) is downloaded again. Create removes what an earlier
// write of the name left in ".partial", so a write that crashed leaves
// nothing once its name is saved. Two processes saving one name in one
// directory at once can make one of them fail (its callback is retried),
// never leave a mixed file.
type Dir string

const (
	partialDir   = ".partial"
	recordSuffix = ".saved.json"
)

// checkDest refuses a Dir that is not an existing directory.
func checkDest(dest Destination) error {
	d, ok := dest.(Dir)
	if !ok {
		return nil
	}
	if fi, err := os.Stat(string(d)); err != nil || !fi.IsDir() {
		return fmt.Errorf("outputs: Dir %q is not a directory: %v", string(d), err)
	}
	return nil
}

// Stat implements [Destination]: a name is saved when its record is there
// and its file has the recorded size.
func (d Dir) Stat(_ context.Context, name string) (Saved, bool, error) {
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return Saved{}, false, err
	}
	defer root.Close()
	b, err := root.ReadFile(name + recordSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return Saved{}, false, nil
	} else if err != nil {
		return Saved{}, false, err
	}
	var saved Saved
	if json.Unmarshal(b, &saved) != nil {
		return Saved{}, false, nil
	}
	fi, err := root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() != saved.Size {
		return Saved{}, false, nil
	} else if err != nil {
		return Saved{}, false, err
	}
	saved.Location = filepath.Join(string(d), name)
	return saved, true, nil
}

// Create implements [Destination].
func (d Dir) Create(_ context.Context, name string) (Pending, error) {
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, err
	}
	p, err := d.create(root, name)
	if err != nil {
		root.Close()
		return nil, err
	}
	return p, nil
}

func (d Dir) create(root *os.Root, name string) (*dirFile, error) {
	if err := root.Mkdir(partialDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	entries, err := fs.ReadDir(root.FS(), partialDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"~") {
			if err := root.Remove(path.Join(partialDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	f, tmp, err := createTemp(root, name)
	if err != nil {
		return nil, err
	}
	return &dirFile{dir: d, root: root, f: f, tmp: tmp, name: name}, nil
}

// createTemp creates a new file in ".partial" for name: "~" never occurs
// in a name.
func createTemp(root *os.Root, name string) (*os.File, string, error) {
	tmp := path.Join(partialDir, name+"~"+rand.Text())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	return f, tmp, err
}

// dirFile is a Dir's Pending.
type dirFile struct {
	dir  Dir
	root *os.Root
	f    *os.File
	tmp  string
	name string
}

func (p *dirFile) Write(b []byte) (int, error) { return p.f.Write(b) }

func (p *dirFile) Abort() error {
	err := errors.Join(p.f.Close(), p.root.Remove(p.tmp))
	return errors.Join(err, p.root.Close())
}

func (p *dirFile) Commit(saved Saved) (string, error) {
	defer p.root.Close()
	if err := errors.Join(p.f.Sync(), p.f.Close()); err != nil {
		return "", errors.Join(err, p.root.Remove(p.tmp))
	}
	// The old record goes first: it must never describe the new file.
	if err := p.root.Remove(p.name + recordSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", errors.Join(err, p.root.Remove(p.tmp))
	}
	if err := p.root.Rename(p.tmp, p.name); err != nil {
		return "", errors.Join(err, p.root.Remove(p.tmp))
	}
	record, err := json.Marshal(saved)
	if err != nil {
		return "", err
	}
	if err := p.writeRecord(record); err != nil {
		return "", err
	}
	return filepath.Join(string(p.dir), p.name), nil
}

// writeRecord writes the record as the file was written, then syncs the
// directory so that both renames last.
func (p *dirFile) writeRecord(record []byte) error {
	f, tmp, err := createTemp(p.root, p.name)
	if err != nil {
		return err
	}
	_, err = f.Write(record)
	if err = errors.Join(err, f.Sync(), f.Close()); err == nil {
		err = p.root.Rename(tmp, p.name+recordSuffix)
	}
	if err != nil {
		return errors.Join(err, p.root.Remove(tmp))
	}
	dir, err := p.root.Open(".")
	if err != nil {
		return err
	}
	return errors.Join(dir.Sync(), dir.Close())
}
