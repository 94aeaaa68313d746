//! The SQL core of the SQLite and Postgres stores: every statement that is the same in both
//! dialects, the row mapping, and the repository ports over them, written once.
//!
//! An adapter supplies a [`Dialect`]: what really differs (row locks, which column orders by
//! insertion, which error codes mean "unavailable", its migrations) and the plumbing to run a
//! statement on its sqlx backend, which [`plumbing!`] writes for it. Statements use `$N`
//! placeholders, which both Postgres and sqlx's SQLite driver accept.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::{Database, Pool};

use ots_domain::{StoreError, WriteBatches};

pub use commit::{Checkpoints, GroupCommit, InlineWriter, Pinned};
pub use rows::RowSource;

mod batch;
mod commit;
mod customers;
mod held;
mod merged;
mod outbox;
mod rows;
mod secrets;
mod upgrade;

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    MaybeInt(Option<i64>),
    Bytes(&'a [u8]),
    MaybeBytes(Option<&'a [u8]>),
    Bool(bool),
}

/// A column of values bound as one array parameter, for `unnest($N)` and `= ANY($N)`: only
/// a dialect whose `WITH` holds writes (Postgres) is given these (see
/// [`Dialect::fetch_all_params`]).
#[derive(Debug, Clone)]
pub enum Column<'a> {
    Texts(Vec<&'a str>),
    MaybeTexts(Vec<Option<&'a str>>),
    Ints(Vec<i64>),
    MaybeInts(Vec<Option<i64>>),
    Blobs(Vec<&'a [u8]>),
    MaybeBlobs(Vec<Option<&'a [u8]>>),
    Bools(Vec<bool>),
}

/// A parameter that is one value or a column of them.
#[derive(Debug, Clone)]
pub enum Param<'a> {
    One(Arg<'a>),
    Column(Column<'a>),
}

pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;
pub type RowOf<D> = <<D as Dialect>::Db as Database>::Row;

/// What one SQL database needs beyond the shared core.
pub trait Dialect: Send + Sync + 'static {
    type Db: Database;

    /// Appended to a `SELECT` of one row that the transaction goes on to change: a row lock
    /// where several writers run at once (Postgres), nothing where one writer serializes
    /// every change (SQLite).
    const FOR_UPDATE: &'static str;
    /// Appended to burn's join of metadata and secret: both rows locked.
    const FOR_UPDATE_BOTH: &'static str;
    /// Appended to a batch `SELECT` so that concurrent workers take disjoint rows.
    const SKIP_LOCKED: &'static str;
    /// The metadata column that orders rows by insertion.
    const INSERTION_ORDER: &'static str;
    /// Whether a `WITH` may hold `INSERT`, `UPDATE` and `DELETE` (Postgres): then a share and
    /// a reveal are one statement, one round trip each, atomic without a transaction.
    const WRITES_IN_WITH: bool;

    fn migrator() -> &'static Migrator;
    /// Whether a database error code means "cannot serve now" rather than a bug.
    fn unavailable_code(code: &str) -> bool;
    /// Told each time an error says the database cannot be reached (a pool can then check
    /// connections that were idle meanwhile before handing them out).
    fn saw_unavailable() {}
    /// Whether a connection idle for `idle_for` may have been cut off meanwhile, so that a
    /// task keeping it should take a tested one from the pool instead (see `held`).
    fn may_be_stale(_idle_for: Duration) -> bool {
        false
    }

    // The plumbing: the same body for every backend, written once by [`plumbing!`].
    fn fetch_optional<'c>(
        conn: &'c mut Conn<Self>,
        sql: &'c str,
        args: Vec<Arg<'c>>,
    ) -> impl Future<Output = Result<Option<RowOf<Self>>, sqlx::Error>> + Send + 'c;
    fn fetch_all<'c>(
        conn: &'c mut Conn<Self>,
        sql: &'c str,
        args: Vec<Arg<'c>>,
    ) -> impl Future<Output = Result<Vec<RowOf<Self>>, sqlx::Error>> + Send + 'c;
    /// Rows of `sql` whose parameters may be arrays: only a dialect whose `WITH` holds writes
    /// is asked (Postgres, which binds [`Column`]s as arrays); the others refuse.
    fn fetch_all_params<'c>(
        conn: &'c mut Conn<Self>,
        sql: &'c str,
        params: Vec<Param<'c>>,
    ) -> impl Future<Output = Result<Vec<RowOf<Self>>, sqlx::Error>> + Send + 'c {
        let _ = (conn, sql, params);
        std::future::ready(Err(sqlx::Error::Protocol(
            "this database binds no arrays".into(),
        )))
    }
    /// Rows affected.
    fn execute<'c>(
        conn: &'c mut Conn<Self>,
        sql: &'c str,
        args: Vec<Arg<'c>>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
    fn run_migrations(
        pool: &Pool<Self::Db>,
    ) -> impl Future<Output = Result<(), sqlx::migrate::MigrateError>> + Send + '_;
    fn text(row: &RowOf<Self>, col: &str) -> Result<String, sqlx::Error>;
    fn maybe_text(row: &RowOf<Self>, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(row: &RowOf<Self>, col: &str) -> Result<i64, sqlx::Error>;
    fn maybe_int(row: &RowOf<Self>, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn bytes(row: &RowOf<Self>, col: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn maybe_bytes(row: &RowOf<Self>, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn boolean(row: &RowOf<Self>, col: &str) -> Result<bool, sqlx::Error>;
}

/// Writes the plumbing methods of a [`Dialect`] for a sqlx backend, inside its `impl`.
#[macro_export]
macro_rules! plumbing {
    ($db:ty) => {
        fn fetch_optional<'c>(
            conn: &'c mut <$db as ::sqlx::Database>::Connection,
            sql: &'c str,
            args: Vec<$crate::Arg<'c>>,
        ) -> impl ::std::future::Future<
            Output = Result<Option<<$db as ::sqlx::Database>::Row>, ::sqlx::Error>,
        > + Send
               + 'c {
            $crate::plumbing!(@bind $db, sql, args).fetch_optional(conn)
        }
        fn fetch_all<'c>(
            conn: &'c mut <$db as ::sqlx::Database>::Connection,
            sql: &'c str,
            args: Vec<$crate::Arg<'c>>,
        ) -> impl ::std::future::Future<
            Output = Result<Vec<<$db as ::sqlx::Database>::Row>, ::sqlx::Error>,
        > + Send
               + 'c {
            $crate::plumbing!(@bind $db, sql, args).fetch_all(conn)
        }
        fn execute<'c>(
            conn: &'c mut <$db as ::sqlx::Database>::Connection,
            sql: &'c str,
            args: Vec<$crate::Arg<'c>>,
        ) -> impl ::std::future::Future<Output = Result<u64, ::sqlx::Error>> + Send + 'c {
            let query = $crate::plumbing!(@bind $db, sql, args);
            async move { Ok(query.execute(conn).await?.rows_affected()) }
        }
        fn run_migrations(
            pool: &::sqlx::Pool<$db>,
        ) -> impl ::std::future::Future<Output = Result<(), ::sqlx::migrate::MigrateError>>
               + Send
               + '_ {
            <Self as $crate::Dialect>::migrator().run(pool)
        }
        fn text(row: &<$db as ::sqlx::Database>::Row, col: &str) -> Result<String, ::sqlx::Error> {
            ::sqlx::Row::try_get(row, col)
        }
        fn maybe_text(
            row: &<$db as ::sqlx::Database>::Row,
            col: &str,
        ) -> Result<Option<String>, ::sqlx::Error> {
            ::sqlx::Row::try_get(row, col)
        }
        fn int(row: &<$db as ::sqlx::Database>::Row, col: &str) -> Result<i64, ::sqlx::Error> {
            ::sqlx::Row::try_get(row, col)
        }
        fn maybe_int(
            row: &<$db as ::sqlx::Database>::Row,
            col: &str,
        ) -> Result<Option<i64>, ::sqlx::Error> {
            ::sqlx::Row::try_get(row, col)
        }
        fn bytes(row: &<$db as ::sqlx::Database>::Row, col: &str) -> Result<Vec<u8>, ::sqlx::Error> {
            ::sqlx::Row::try_get(row, col)
        }
        fn maybe_bytes(
            row: &<$db as ::sqlx::Database>::Row,
            col: &str,
        ) -> Result<Option<Vec<u8>>, ::sqlx::Error> {
            ::sqlx::Row::try_get(row, col)
        }
        fn boolean(row: &<$db as ::sqlx::Database>::Row, col: &str) -> Result<bool, ::sqlx::Error> {
            ::sqlx::Row::try_get(row, col)
        }
    };
    (@bind $db:ty, $sql:expr, $args:expr) => {{
        let mut query = ::sqlx::query::<$db>($sql);
        for arg in $args {
            query = $crate::plumbing!(@bind_one query, arg);
        }
        query
    }};
    (@bind_one $query:expr, $arg:expr) => {
        match $arg {
            $crate::Arg::Text(v) => $query.bind(v),
            $crate::Arg::MaybeText(v) => $query.bind(v),
            $crate::Arg::Int(v) => $query.bind(v),
            $crate::Arg::MaybeInt(v) => $query.bind(v),
            $crate::Arg::Bytes(v) => $query.bind(v),
            $crate::Arg::MaybeBytes(v) => $query.bind(v),
            $crate::Arg::Bool(v) => $query.bind(v),
        }
    };
}

/// The repository ports over one SQL database. Changes go through `writer`; reads through
/// `reader` when the adapter keeps a separate pool for them (SQLite's read-only pool).
pub struct SqlStore<D: Dialect> {
    writer: Pool<D::Db>,
    reader: Option<Pool<D::Db>>,
    commit: Option<GroupCommit<D>>,
    merge: Option<merged::Merge>,
    /// The pool of the merged writes' lanes, on their own thread.
    lanes: Option<Pool<D::Db>>,
    /// The batches of the group commit or the merged writes, whichever this store runs.
    tally: Arc<batch::Tally>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            reader: self.reader.clone(),
            commit: self.commit.clone(),
            merge: self.merge.clone(),
            lanes: self.lanes.clone(),
            tally: self.tally.clone(),
        }
    }
}

impl<D: Dialect> SqlStore<D> {
    /// A store over `writer`, reading through `reader` when given.
    pub fn new(writer: Pool<D::Db>, reader: Option<Pool<D::Db>>) -> Self {
        Self {
            writer,
            reader,
            commit: None,
            merge: None,
            lanes: None,
            tally: Default::default(),
        }
    }

    /// Merges concurrent shares and reveals without a passphrase into one statement (see
    /// `merged`): for a dialect whose `WITH` holds writes (Postgres). One such statement runs
    /// at a time, each on one of `lanes` kept connections; the next lane starts beside a
    /// statement only once it has run for `STALL` (25 ms), so that one held up by a row lock
    /// does not hold up every write. A group commit merges its batches' shares and reveals
    /// itself.
    ///
    /// The lanes run on a thread of their own, over a pool of their own that `pool` makes
    /// there (`lanes` connections at most): a statement's answer is seen, and the next one
    /// sent, without waiting for the server's workers.
    pub fn with_merged_writes(mut self, lanes: usize, pool: impl FnOnce() -> Pool<D::Db>) -> Self {
        let mut inner = self.clone();
        inner.merge = None;
        let (merge, own) = merged::Merge::start(inner, lanes, pool);
        self.merge = Some(merge);
        self.lanes = own;
        self
    }

    /// The pool of the merged writes' lanes, when they have one of their own.
    pub fn lanes_pool(&self) -> Option<&Pool<D::Db>> {
        self.lanes.as_ref()
    }

    /// Commits the writes of share, reveal, burn and passphrase tries in groups (see
    /// [`GroupCommit`]): for a `writer` pool of one connection. With `checkpoints`, the log
    /// is copied into the database on another connection, never by the writer.
    ///
    /// With `inline`, the writer runs a batch of shares and reveals without a passphrase on
    /// that connection, on its own thread, instead of through `writer` (see [`InlineWriter`]).
    pub fn with_group_commit(
        mut self,
        checkpoints: Option<commit::Checkpoints<D>>,
        inline: Option<Arc<dyn InlineWriter>>,
    ) -> Self {
        self.commit = Some(GroupCommit::start(
            self.writer.clone(),
            checkpoints,
            inline,
            self.tally.clone(),
        ));
        self
    }

    /// Runs `work` atomically: in the next group commit, or in a transaction of its own.
    pub(crate) async fn transact<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Conn<D>) -> Pinned<'c, Result<T, StoreError>> + Send + Sync + 'static,
    {
        if let Some(commit) = &self.commit {
            return commit.run(work).await;
        }
        let mut tx = self.begin().await?;
        let out = work(&mut tx).await?;
        tx.commit().await.map_err(store_err::<D>)?;
        Ok(out)
    }

    /// The batches the group commit ran on the writer's own connection (see
    /// [`InlineWriter`]), when it has one.
    pub fn inline_batches(&self) -> Option<u64> {
        self.commit.as_ref().and_then(GroupCommit::inline_batches)
    }

    /// The pool every change goes through.
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.writer
    }

    fn reader(&self) -> &Pool<D::Db> {
        self.reader.as_ref().unwrap_or(&self.writer)
    }

    /// Applies the migrations (sqlx takes a lock, so several processes may start at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        D::run_migrations(&self.writer)
            .await
            .map_err(|e| StoreError::Other(format!("migrations failed: {e}")))
    }

    /// Answers only when the store answers and every migration has been applied.
    async fn schema_is_current(&self) -> Result<(), StoreError> {
        let mut conn = self.read().await?;
        let row = D::fetch_optional(
            &mut conn,
            "SELECT count(*) AS n FROM _sqlx_migrations WHERE success",
            vec![],
        )
        .await
        .map_err(store_err::<D>)?;
        let applied = match row {
            Some(row) => D::int(&row, "n").map_err(store_err::<D>)?,
            None => 0,
        };
        let expected = D::migrator().iter().count() as i64;
        if applied < expected {
            return Err(StoreError::Unavailable(format!(
                "{applied} of {expected} migrations applied: run `ots migrate`"
            )));
        }
        Ok(())
    }

    pub(crate) async fn read(&self) -> Result<sqlx::pool::PoolConnection<D::Db>, StoreError> {
        self.reader().acquire().await.map_err(store_err::<D>)
    }

    pub(crate) async fn write(&self) -> Result<sqlx::pool::PoolConnection<D::Db>, StoreError> {
        self.writer.acquire().await.map_err(store_err::<D>)
    }

    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, D::Db>, StoreError> {
        self.writer.begin().await.map_err(store_err::<D>)
    }

    /// The batches run so far, when this store merges writes.
    fn write_batches(&self) -> Option<WriteBatches> {
        (self.commit.is_some() || self.merge.is_some()).then(|| self.tally.read())
    }

    fn pool_usage(&self) -> (u32, u32) {
        let pools = std::iter::once(&self.writer)
            .chain(self.reader.as_ref())
            .chain(self.lanes.as_ref());
        pools.fold((0, 0), |(size, idle), p| {
            (size + p.size(), idle + p.num_idle() as u32)
        })
    }

    async fn close(&self) {
        // The writer's pool last: SQLite checkpoints the WAL into the database file when its
        // last connection closes. The group commit's own connection goes first.
        if let Some(commit) = &self.commit {
            commit.close_inline();
        }
        if let Some(reader) = &self.reader {
            reader.close().await;
        }
        self.writer.close().await;
        if let Some(lanes) = &self.lanes {
            lanes.close().await;
        }
    }
}

/// A sqlx error in the domain's words: duplicates are conflicts, an unreachable or
/// restarting server is unavailable, anything else is a bug or corrupt data.
pub fn store_err<D: Dialect>(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| D::unavailable_code(&c)) => {
            D::saw_unavailable();
            StoreError::Unavailable(err.to_string())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            D::saw_unavailable();
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Other(err.to_string()),
    }
}
