//! The repository ports over SQLite: the embedded default, one file in the data directory.
//!
//! WAL mode, `synchronous = FULL` (an acknowledged share survives a crash), `secure_delete`
//! (what is deleted is zeroed in the file), and exactly one
//! writer: every change goes through a pool of one connection, so write transactions are
//! serialized by construction and reveal-once needs no row locks. Share, reveal, burn and
//! passphrase tries are committed in groups: one transaction and one fsync for every write
//! queued meanwhile, each answered only once its group is durable; a group's shares and its
//! reveals without a passphrase are merged into a few multi-row statements, sent with the
//! group's `BEGIN` and `COMMIT` as one query, which the writer runs on a connection of its
//! own through rusqlite, on its own thread (`inline`), not as a round trip to sqlx's worker
//! thread for that connection. Reads use their own
//! read-only pool and never block the writer. The statements are the shared SQL core's
//! (`ots-store-sql`); this crate holds only what SQLite does differently.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

mod inline;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use ots_domain::StoreError;
use ots_store_sql::{store_err, Checkpoints, Dialect, SqlStore};

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// SQLite's dialect: no row locks (the single writer serializes every change), insertion
/// order by rowid.
pub struct Sqlite;

impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;
    const FOR_UPDATE: &'static str = "";
    const FOR_UPDATE_BOTH: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const WRITES_IN_WITH: bool = false;
    const INSERTION_ORDER: &'static str = "rowid";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// SQLITE_BUSY (5) and SQLITE_LOCKED (6): another process holds the database.
    fn unavailable_code(code: &str) -> bool {
        matches!(code, "5" | "6")
    }

    ots_store_sql::plumbing!(sqlx::Sqlite);
}

/// Secrets, metadata, customers and tokens in one SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

/// Opens (creating if missing) the database at `url` (`sqlite://PATH`) and, when `migrate`,
/// applies the migrations.
/// How long a statement waits for a lock another process holds.
const BUSY: Duration = Duration::from_secs(5);

pub async fn connect(url: &str, migrate: bool) -> Result<SqliteStore, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(store_err::<Sqlite>)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Deleted rows (revealed ciphertexts, rows rewritten by an upgrade) are zeroed in
        // the file, not left in free pages for a copy to find.
        .pragma("secure_delete", "ON")
        .busy_timeout(BUSY);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        // A merged statement's text varies with its row count, whether it carries its
        // batch's BEGIN and COMMIT, and how many mails a share run holds: room for them all.
        .connect_with(options.clone().statement_cache_capacity(512))
        .await
        .map_err(store_err::<Sqlite>)?;
    if migrate {
        SqliteStore::new(writer.clone(), None).migrate().await?;
    }
    // Copies the log into the database file after commits, beside the writer: a passive
    // checkpoint takes no lock a writer or reader waits for.
    let checkpointer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await
        .map_err(store_err::<Sqlite>)?;
    let reader = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone().read_only(true))
        .await
        .map_err(store_err::<Sqlite>)?;
    let checkpoints = Checkpoints {
        pool: checkpointer,
        statement: "PRAGMA wal_checkpoint(PASSIVE)",
    };
    // The writer's batches on a connection of its own (see `inline`); a database only in
    // memory has no file that a second connection could open.
    let inline = match url.contains("memory") {
        true => None,
        false => match inline::Inline::open(options.get_filename(), BUSY) {
            Ok(inline) => Some(Arc::new(inline) as Arc<dyn ots_store_sql::InlineWriter>),
            Err(err) => {
                tracing::warn!(error = %err, "the store's writer runs its batches through sqlx");
                None
            }
        },
    };
    Ok(SqlStore::new(writer, Some(reader)).with_group_commit(Some(checkpoints), inline))
}
