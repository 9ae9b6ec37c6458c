package mailbox

import "github.com/mssante-go/sdk/internal/pgschema"

// PostgresMigrations returns the schema migrations of the component "mailbox" (for commands
// such as "mssante store migrate" and "store check" that apply or compare them apart from
// opening it).
func PostgresMigrations() ([]pgschema.Migration, error) {
	return pgschema.Load(pgMigrations, "pgschema")
}
