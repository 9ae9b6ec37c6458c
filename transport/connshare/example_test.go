package connshare_test

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connshare"
)

// Each node of a cluster opens its Share under its own name and gives each server's
// ConnLimiter a scope of it: MaxConnsPerAddr then bounds an address on all the nodes.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "host=/run/postgresql dbname=mssante")
	if err != nil {
		return
	}
	defer pool.Close()
	share, err := connshare.Open(ctx, pool, &connshare.Options{Node: "node-a"})
	if err != nil {
		return
	}
	defer share.Close()
	lim := transport.NewConnLimiter(transport.ConnLimits{MaxConns: 1000, MaxConnsPerAddr: 100, Share: share.Scope("imap")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	ln = lim.Listener(ln, nil)
	defer ln.Close()
	// serve ln
}
