package filestore

import (
	"database/sql"
	"fmt"
	"net/url"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// BusyTimeout is how long a statement waits for another connection (or
// another process) to release the database's write lock before it fails.
const BusyTimeout = 10_000 // milliseconds

// OpenSQLite opens (creating) the SQLite database at path in WAL mode, the
// one way this module opens SQLite (the store and the local queues). With
// durable set, a commit returns once it is on disk (synchronous=FULL: the
// WAL is fsynced at every commit); without, it may be lost to a machine
// crash, never to a process crash. Transactions begin IMMEDIATE, so a
// writer takes the write lock up front and waits up to BusyTimeout for it
// instead of failing half-way; several processes may open the same file.
func OpenSQLite(path string, durable bool) (*sql.DB, error) {
	sync := "FULL"
	if !durable {
		sync = "OFF"
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "journal_size_limit(67108864)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// Open is lazy: reach the file now, so a bad path fails here.
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
