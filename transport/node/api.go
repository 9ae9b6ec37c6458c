package node

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/psc"
	"github.com/mssante-go/sdk/transport/queue"
)

// What follows is what the HTTP API of the node's BALs ([api], served beside the node by
// httpapi.NodeAPI) is built on. The node does not serve the API itself: the API builds on
// bal's types, and bal's tests run nodes.

// Submission returns the submission server (STARTTLS listener's), whose Submit the API uses.
func (n *Node) Submission() *connector.Server { return n.mta.servers["submission"] }

// Trust returns the trust store client certificates are verified against.
func (n *Node) Trust() *transport.TrustStore { return n.mta.trust }

// Accounts returns the mapping of client certificates to BALs that submission uses.
func (n *Node) Accounts() connector.Accounts { return n.mta.allAccts }

// OAuth returns the Pro Santé Connect authenticator, nil without [psc].
func (n *Node) OAuth() *psc.Authenticator { return n.oauth }

// GetCertificate returns the server certificate in use (renewed by Reload).
func (n *Node) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return n.mta.cert.Load(), nil
}

// HasBAL reports whether addr is a BAL of the node: in one of its domains, and known to its
// local delivery (the mailbox store, or the [[bal]] table).
func (n *Node) HasBAL(addr string) bool {
	i := strings.LastIndexByte(addr, '@')
	return i > 0 && slices.Contains(n.cfg.Domains, strings.ToLower(addr[i+1:])) &&
		n.mta.local.Lookup(context.Background(), addr) == nil
}

// OnQueueResult makes the queue call fn after each recipient state change is stored
// (queue.RunOptions.OnResult). Call it before Serve.
func (n *Node) OnQueueResult(fn func(env *queue.Envelope, r *queue.Recipient, res queue.Result)) {
	n.mta.onResult = fn
}
