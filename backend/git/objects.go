package git

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/memory"
)

// commit is an orphan commit holding one file, with the pack that carries
// its three objects (commit, tree, blob) to the server.
type commit struct {
	hash plumbing.Hash
	pack []byte
}

// newCommit builds the commit in a throw-away in-memory store and packs it.
func newCommit(file string, content []byte, identity, msg string, when time.Time) (*commit, error) {
	st := memory.NewStorage()
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	if err := writeAll(blob, content); err != nil {
		return nil, err
	}
	blobHash, err := st.SetEncodedObject(blob)
	if err != nil {
		return nil, err
	}
	tree := &object.Tree{Entries: []object.TreeEntry{{Name: file, Mode: filemode.Regular, Hash: blobHash}}}
	treeHash, err := store(st, tree)
	if err != nil {
		return nil, err
	}
	// The identity is the author's name; characters that would break the
	// commit header are replaced.
	name := strings.Map(func(r rune) rune {
		if r == '<' || r == '>' || r == '\n' || r == 0 {
			return '_'
		}
		return r
	}, identity)
	sig := object.Signature{Name: name, Email: "leaderelection@localhost", When: when}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: treeHash}
	hash, err := store(st, c)
	if err != nil {
		return nil, err
	}
	var pack bytes.Buffer
	if _, err := packfile.NewEncoder(&pack, st, false).Encode([]plumbing.Hash{hash, treeHash, blobHash}, 0); err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	return &commit{hash: hash, pack: pack.Bytes()}, nil
}

func store(st storer.EncodedObjectStorer, o interface {
	Encode(plumbing.EncodedObject) error
}) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

func writeAll(o plumbing.EncodedObject, b []byte) error {
	w, err := o.Writer()
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// recordFile reads file from the commit head in st. Anything that is not a
// commit holding that regular file is errCorruptCommit.
func recordFile(st storer.EncodedObjectStorer, head plumbing.Hash, file string) ([]byte, error) {
	c, err := object.GetCommit(st, head)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorruptCommit, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorruptCommit, err)
	}
	f, err := tree.File(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errCorruptCommit, file, err)
	}
	if f.Size > maxRecordSize {
		return nil, fmt.Errorf("%w: %s is %d bytes", errCorruptCommit, file, f.Size)
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorruptCommit, err)
	}
	defer rd.Close()
	return io.ReadAll(rd)
}
