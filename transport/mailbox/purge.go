package mailbox

import (
	"context"
	"log/slog"
	"time"
)

// PurgeEvery applies the retention of every BAL (Store.Purge, which writes the audit log) now
// and then every interval, until ctx is done; a connector runs it beside its servers. Errors
// are logged and the next round retries. now nil means time.Now; logger nil discards.
func PurgeEvery(ctx context.Context, s Store, interval time.Duration, now func() time.Time, logger *slog.Logger) {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := s.Purge(ctx, now())
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("mailbox: retention purge failed", "err", err)
		case err == nil && res.Messages > 0:
			logger.Info("mailbox: retention purge", "messages", res.Messages, "bytes", res.Bytes)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
