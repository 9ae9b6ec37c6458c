// Package docs holds the repository's documentation that is not Go doc: the operator guide
// and references.md, the list of the external documents the code cites. It has no API; its
// test checks that every citation in a comment of the module is on references.md.
package docs
