package audit

// The lifecycle of a BAL in the registry (mssante bal: BAL holds the address, Actor the OS
// account, Reason the change) and its publication in the Annuaire Santé (Reason: done, or why
// not).
const (
	EventBALCreated        Event = "bal_created"
	EventBALSuspended      Event = "bal_suspended"
	EventBALResumed        Event = "bal_resumed"
	EventBALDeleted        Event = "bal_deleted"
	EventBALListingChanged Event = "bal_listing_changed"
	EventAnnuairePublished Event = "annuaire_published" // inserted or replaced in the Annuaire Santé
	EventAnnuaireWithdrawn Event = "annuaire_withdrawn" // deleted from the Annuaire Santé
)
