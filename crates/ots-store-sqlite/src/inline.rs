//! The writer's own connection: the group commit's batches of shares and reveals without a
//! passphrase run here, on the writer's thread, through rusqlite (see
//! `ots_store_sql::InlineWriter`). Every other statement still goes through sqlx.
//!
//! It runs with the settings of every other connection of the store (`connect`): WAL,
//! `synchronous = FULL`, foreign keys, `secure_delete`, the same busy timeout; `open` reads
//! them back and refuses a connection that does not hold them.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Row};

use ots_domain::StoreError;
use ots_store_sql::{Arg, InlineWriter, RowSource};

/// Statement texts kept prepared: a batch's statements depend on its padded sizes (a few
/// dozen texts, several statements each).
const PREPARED: usize = 512;

/// The connection, `None` once closed. Only the writer's thread runs batches on it; the lock
/// is taken by the store's close.
pub(crate) struct Inline {
    conn: Mutex<Option<Connection>>,
    batches: AtomicU64,
}

impl Inline {
    /// Opens the database file at `path`, which must exist and be migrated (no file is
    /// created here), with the store's settings.
    pub(crate) fn open(path: &Path, busy: Duration) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store_err)?;
        conn.busy_timeout(busy).map_err(store_err)?;
        for (pragma, value) in SETTINGS {
            conn.pragma_update(None, pragma, value).map_err(store_err)?;
        }
        for (pragma, value) in settings(&conn)? {
            let wanted = SETTINGS.iter().find(|(p, _)| *p == pragma).map(|(_, v)| v);
            let holds = match pragma {
                "journal_mode" => value == "wal",
                _ => wanted.is_some_and(|w| value == *w),
            };
            if !holds {
                return Err(StoreError::Other(format!(
                    "the writer's connection has {pragma} = {value}"
                )));
            }
        }
        conn.set_prepared_statement_cache_capacity(PREPARED);
        Ok(Self {
            conn: Mutex::new(Some(conn)),
            batches: AtomicU64::new(0),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What `conn` runs with, as SQLite reports it: `journal_mode` and [`SETTINGS`].
fn settings(conn: &Connection) -> Result<Vec<(&'static str, String)>, StoreError> {
    let mut out = Vec::new();
    for pragma in [
        "journal_mode",
        "synchronous",
        "foreign_keys",
        "secure_delete",
    ] {
        let value: rusqlite::types::Value = conn
            .pragma_query_value(None, pragma, |row| row.get(0))
            .map_err(store_err)?;
        let value = match value {
            rusqlite::types::Value::Integer(n) => n.to_string(),
            rusqlite::types::Value::Text(t) => t.to_lowercase(),
            other => format!("{other:?}"),
        };
        out.push((pragma, value));
    }
    Ok(out)
}

/// Runs the statements of `sql` on `conn` (see [`InlineWriter::run`]), leaving a failure's
/// transaction to the caller to roll back.
fn statements(
    conn: &Connection,
    sql: &str,
    args: &[Arg<'_>],
    each: &mut dyn FnMut(&dyn RowSource) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut args = args.iter();
    let mut texts = sql.split("; ").peekable();
    while let Some(text) = texts.next() {
        let mut statement = conn.prepare_cached(text).map_err(store_err)?;
        for n in 1..=statement.parameter_count() {
            let arg = args.next().ok_or_else(|| mismatch(sql))?;
            bind(&mut statement, n, arg).map_err(store_err)?;
        }
        // Arguments left over are refused before the last statement (the `COMMIT`) runs.
        if texts.peek().is_none() && args.len() > 0 {
            return Err(mismatch(sql));
        }
        if statement.column_count() == 0 {
            statement.raw_execute().map_err(store_err)?;
            continue;
        }
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next().map_err(store_err)? {
            each(&Columns(row))?;
        }
    }
    Ok(())
}

/// What `open` sets, as SQLite reads each back (`synchronous` FULL is 2).
const SETTINGS: [(&str, &str); 3] = [
    ("synchronous", "2"),
    ("foreign_keys", "1"),
    // What is deleted (a revealed ciphertext) is zeroed in the file.
    ("secure_delete", "1"),
];

impl InlineWriter for Inline {
    fn run(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        row: &mut dyn FnMut(&dyn RowSource) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let Some(conn) = conn.as_ref() else {
            return Err(StoreError::Unavailable(
                "the writer's connection is closed".into(),
            ));
        };
        let done = statements(conn, sql, args, row);
        match &done {
            Ok(()) => {
                self.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) if !conn.is_autocommit() => {
                if let Err(err) = conn.execute_batch("ROLLBACK") {
                    tracing::error!(error = %err, "a failed batch did not roll back");
                }
            }
            Err(_) => {}
        }
        done
    }

    fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    fn close(&self) {
        if let Some(conn) = self.conn().take() {
            if let Err((_, err)) = conn.close() {
                tracing::warn!(error = %err, "the writer's connection did not close cleanly");
            }
        }
    }
}

fn bind(statement: &mut rusqlite::Statement<'_>, n: usize, arg: &Arg<'_>) -> rusqlite::Result<()> {
    match *arg {
        Arg::Text(v) => statement.raw_bind_parameter(n, v),
        Arg::MaybeText(v) => statement.raw_bind_parameter(n, v),
        Arg::Int(v) => statement.raw_bind_parameter(n, v),
        Arg::MaybeInt(v) => statement.raw_bind_parameter(n, v),
        Arg::Bytes(v) => statement.raw_bind_parameter(n, v),
        Arg::MaybeBytes(v) => statement.raw_bind_parameter(n, v),
        Arg::Bool(v) => statement.raw_bind_parameter(n, v),
    }
}

fn mismatch(sql: &str) -> StoreError {
    StoreError::Other(format!("arguments do not match the placeholders of: {sql}"))
}

/// A rusqlite error in the domain's words, as `ots_store_sql::store_err` has sqlx's:
/// duplicates are conflicts, a database another process holds is unavailable.
fn store_err(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error() {
        Some(e) if matches!(e.extended_code, 1555 | 2067) => StoreError::Conflict(err.to_string()),
        Some(e) if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Other(err.to_string()),
    }
}

/// A row of a statement run here, read by column name.
struct Columns<'r, 's>(&'r Row<'s>);

impl Columns<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, col: &str) -> Result<T, StoreError> {
        self.0
            .get(col)
            .map_err(|err| StoreError::Other(format!("column {col}: {err}")))
    }
}

impl RowSource for Columns<'_, '_> {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.get(col)
    }

    fn maybe_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.get(col)
    }

    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.get(col)
    }

    fn maybe_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.get(col)
    }

    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.get(col)
    }

    fn maybe_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(col)
    }

    fn boolean(&self, col: &str) -> Result<bool, StoreError> {
        self.get(col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database file in WAL mode with one table, as `connect` leaves one, and its directory.
    fn database(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("ots-inline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ots.db");
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB, n INTEGER)")
            .expect("table");
        (path, dir)
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path)
            .expect("open")
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn the_writers_connection_holds_the_stores_settings() {
        let (path, dir) = database("settings");
        let inline = Inline::open(&path, Duration::from_secs(1)).expect("open");
        let settings = settings(inline.conn().as_ref().expect("open")).expect("settings");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            settings,
            [
                ("journal_mode", "wal".to_owned()),
                ("synchronous", "2".to_owned()),
                ("foreign_keys", "1".to_owned()),
                ("secure_delete", "1".to_owned()),
            ]
        );
    }

    #[test]
    fn closed_it_refuses_batches() {
        let (path, dir) = database("closed");
        let inline = Inline::open(&path, Duration::from_secs(1)).expect("open");
        inline.close();
        let sql = "BEGIN IMMEDIATE; INSERT INTO t (k) VALUES (?); COMMIT";
        let err = inline
            .run(sql, &[Arg::Text("a")], &mut |_| Ok(()))
            .expect_err("closed");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert_eq!(count(&path), 0);
        inline.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_file_no_connection() {
        let dir = std::env::temp_dir().join(format!("ots-inline-none-{}", std::process::id()));
        assert!(Inline::open(&dir.join("missing.db"), Duration::from_secs(1)).is_err());
        assert!(!dir.join("missing.db").exists(), "nothing is created");
    }

    #[test]
    fn a_batch_commits_its_statements_and_hands_over_the_rows_they_return() {
        let (path, dir) = database("batch");
        let inline = Inline::open(&path, Duration::from_secs(1)).expect("open");
        let args = [
            Arg::Text("a"),
            Arg::Bytes(b"x"),
            Arg::Int(1),
            Arg::Text("b"),
            Arg::MaybeBytes(None),
            Arg::MaybeInt(Some(2)),
            Arg::Text("a"),
        ];
        let mut taken = Vec::new();
        inline
            .run(
                "BEGIN IMMEDIATE; INSERT INTO t VALUES (?, ?, ?), (?, ?, ?); \
                 DELETE FROM t WHERE k = ? RETURNING k, v, n; COMMIT",
                &args,
                &mut |row| {
                    taken.push((row.text("k")?, row.maybe_bytes("v")?, row.int("n")?));
                    Ok(())
                },
            )
            .expect("batch");
        assert_eq!(taken, [("a".to_owned(), Some(b"x".to_vec()), 1)]);
        assert_eq!(inline.batches(), 1);
        assert_eq!(count(&path), 1, "b stays, a was taken");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_batch_leaves_nothing_and_says_why() {
        let (path, dir) = database("failed");
        let inline = Inline::open(&path, Duration::from_secs(1)).expect("open");
        let mut none = |_: &dyn RowSource| Ok(());
        // The second insert repeats the key: the first must not stay.
        let twice = [Arg::Text("a"), Arg::Text("a")];
        let sql =
            "BEGIN IMMEDIATE; INSERT INTO t (k) VALUES (?); INSERT INTO t (k) VALUES (?); COMMIT";
        let err = inline
            .run(sql, &twice, &mut none)
            .expect_err("a duplicate key");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(
            inline.conn().as_ref().expect("open").is_autocommit(),
            "rolled back"
        );
        assert_eq!(count(&path), 0);
        // Arguments that do not fit the placeholders are refused, and roll back too.
        let short = [Arg::Text("b")];
        let err = inline.run(sql, &short, &mut none).expect_err("too few");
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
        assert!(inline.conn().as_ref().expect("open").is_autocommit());
        let long = [Arg::Text("c"), Arg::Text("d"), Arg::Text("e")];
        assert!(inline.run(sql, &long, &mut none).is_err(), "too many");
        assert_eq!(count(&path), 0);
        assert_eq!(inline.batches(), 0, "a failed batch is not counted");
        // The connection serves the next batch.
        inline
            .run(sql, &[Arg::Text("f"), Arg::Text("g")], &mut none)
            .expect("next");
        assert_eq!(count(&path), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
