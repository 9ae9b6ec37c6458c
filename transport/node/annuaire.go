package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/transport/metrics"
	"github.com/mssante-go/sdk/transport/publication"
)

// AnnuaireConfig is the table "annuaire": the daily extraction of the Annuaire Santé that the
// node downloads into Dir to reconcile the BALs of its mailbox store with what the national
// directory publishes (the metric mssante_annuaire_reconcile_bals). "" turns it off.
type AnnuaireConfig struct {
	Dir             string        `toml:"dir"`
	URL             string        `toml:"url"`              // "" = the ANS address
	RefreshInterval time.Duration `toml:"refresh_interval"` // how often the file is looked for
}

// reconciler keeps the last reconciliation of the store's BALs with the extraction in use.
type reconciler struct {
	st     Registry
	ref    *annuaire.Refresher
	every  time.Duration
	logger *slog.Logger
	last   atomic.Pointer[annuaire.Reconciliation]
}

// newReconciler returns the reconciler of cfg, its metrics registered on m; nil when the
// table "annuaire" is off. The last good extraction of Dir is loaded now.
func newReconciler(cfg *Config, st Registry, m *metrics.Metrics, logger *slog.Logger) (*reconciler, error) {
	if cfg.Annuaire.Dir == "" || st == nil {
		return nil, nil
	}
	if err := os.MkdirAll(cfg.Annuaire.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: annuaire.dir: %w", err)
	}
	logger = logger.With("component", "annuaire")
	ref, err := annuaire.NewRefresher(cfg.Annuaire.Dir, &annuaire.FetchOptions{URL: cfg.Annuaire.URL, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	r := &reconciler{st: st, ref: ref, every: cfg.Annuaire.RefreshInterval, logger: logger}
	err = publication.RegisterMetrics(m, r.last.Load, func() *annuaire.Extraction {
		x, _ := ref.Current()
		return x
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return r, nil
}

// run reconciles with the extraction in use, then looks for a newer file every interval and
// reconciles again, until ctx ends. A failed download keeps the file in use (and says so).
func (r *reconciler) run(ctx context.Context) {
	r.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.every):
		}
		if _, err := r.ref.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("annuaire: refreshing the extraction: the one in use is kept", "err", err)
		}
		r.reconcile(ctx)
	}
}

func (r *reconciler) reconcile(ctx context.Context) {
	if x, _ := r.ref.Current(); x == nil {
		r.logger.Warn("annuaire: no extraction yet: BALs not reconciled")
		return
	}
	rec, _, err := publication.Reconcile(ctx, r.st, r.ref, nil)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Warn("annuaire: reconciliation failed", "err", err)
		}
		return
	}
	r.last.Store(rec)
	args := []any{}
	for _, s := range annuaire.Statuses() {
		args = append(args, string(s), rec.Counts[s])
	}
	r.logger.Info("annuaire: BALs reconciled with the Annuaire Santé", args...)
}
