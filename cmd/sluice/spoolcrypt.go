package main

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/spool"
)

// openSpool opens the spool, with encryption at rest when [spool]
// encryption-key-file is set. Key problems stop the start with an error
// that names the file (never the key).
func openSpool(cfg *config.Config, log *zap.Logger) (*spool.Store, error) {
	sc := cfg.Spool
	opts := spool.Options{MinFreeBytes: sc.MinFreeSpace.Bytes()} // 0: spool.DefaultMinFree
	if sc.EncryptionKeyFile != "" {
		cur, err := spool.ReadKeyFile(sc.EncryptionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("spool.encryption-key-file: %w", err)
		}
		var old [][]byte
		for i, f := range sc.OldKeyFiles {
			k, err := spool.ReadKeyFile(f)
			if err != nil {
				return nil, fmt.Errorf("spool.old-key-files[%d]: %w", i, err)
			}
			old = append(old, k)
		}
		c, err := spool.NewCipher(cur, old...)
		if err != nil {
			return nil, fmt.Errorf("spool.encryption-key-file %s: %w", sc.EncryptionKeyFile, err)
		}
		opts.Cipher = c
		log.Info("spool encryption at rest", zap.String("key_id", c.KeyID()), zap.Int("old_keys", len(old)))
	}
	sp, err := spool.OpenWith(cfg.SpoolDir, log, opts)
	switch {
	case errors.Is(err, spool.ErrWrongKey):
		return nil, fmt.Errorf("spool-dir %s: spool.encryption-key-file %s (and old-key-files) cannot open it: %w",
			cfg.SpoolDir, sc.EncryptionKeyFile, err)
	case errors.Is(err, spool.ErrEncrypted):
		return nil, fmt.Errorf("spool-dir %s: %w: set [spool] encryption-key-file", cfg.SpoolDir, err)
	case err != nil:
		return nil, fmt.Errorf("spool-dir %s: %w", cfg.SpoolDir, err)
	}
	return sp, nil
}
