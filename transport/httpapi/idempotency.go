package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// idemRecord is what is kept of a request sent under an Idempotency-Key.
type idemRecord struct {
	Fingerprint string    `json:"fingerprint"`
	MessageID   string    `json:"message_id,omitempty"`
	Created     time.Time `json:"created"`
	// Status and Body are the answer, once given.
	Status int             `json:"status,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	Type   string          `json:"content_type,omitempty"`
}

type idemStore struct {
	dir string
	now func() time.Time
}

func (s *idemStore) path(addr, key string) string {
	sum := sha256.Sum256([]byte(addr + "\n" + key))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:])+".json")
}

// get returns the record of key, nil when there is none.
func (s *idemStore) get(addr, key string) (*idemRecord, error) {
	b, err := os.ReadFile(s.path(addr, key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	var r idemRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("httpapi: idempotency record: %w", err)
	}
	return &r, nil
}

// put writes the record: atomically (temporary file, rename), and durably (fsyncs of the file
// and the folder) when durable is set. The record that names the Message-ID before submission
// must survive a crash; the answer after it need not: lost, the request sent again submits the
// same Message-ID, which bal's outbox recognises (already_sent), and so never sends twice.
func (s *idemStore) put(addr, key string, r *idemRecord, durable bool) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFile(s.dir, s.path(addr, key), b, durable)
}

// purge removes the records older than age.
func (s *idemStore) purge(age time.Duration) {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && s.now().Sub(info.ModTime()) > age {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
}

func writeDurable(dir, path string, b []byte) error { return writeFile(dir, path, b, true) }

func writeFile(dir, path string, b []byte, durable bool) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil && durable {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("httpapi: %w", err)
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	return nil
}
