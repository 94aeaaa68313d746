//! The repository ports over PostgreSQL, for deployments with several server processes.
//!
//! Reveal, burn and failed passphrase tries each run in one transaction that first takes the
//! secret's row (`SELECT … FOR UPDATE`, or the `UPDATE` itself): of concurrent callers, across
//! processes, one holds the row, deletes it and commits; the others then find no row. The
//! sweep and the outbox claim take disjoint batches with `SKIP LOCKED`.
//!
//! bcrypt and the held lock: the domain verifies a passphrase against a snapshot read without
//! locks (`find_secret`) and only then calls `consume`, whose transaction holds the row lock
//! for a few statements. No connection is ever held across a bcrypt check (~0.25 s at cost
//! 12), so slow passphrase checks cannot starve the pool, and a lock is held for milliseconds.
//!
//! Concurrent shares and reveals without a passphrase are merged into one `WITH` statement
//! (see the SQL core's `merged`): under load, one statement and one commit serve every share
//! and reveal that came while the previous one ran.
//!
//! The statements are the shared SQL core's (`ots-store-sql`); this crate holds only what
//! Postgres does differently, and how to connect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use ots_domain::StoreError;
use ots_store_sql::{store_err, Column, Dialect, Param, SqlStore};

#[cfg(feature = "testing")]
pub mod testing;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PgSettings {
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
    /// Whether to apply migrations on connect.
    pub migrate: bool,
    /// How many merged statements may run at once. One runs at a time, and every share and
    /// reveal without a passphrase that comes meanwhile waits for the next; another starts
    /// beside it only once it has run for a while (a row lock held elsewhere, a slow flush:
    /// see `ots_store_sql::SqlStore::with_merged_writes`). Never more than `max_connections`.
    pub merged_in_flight: usize,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            migrate: true,
            merged_in_flight: 4,
        }
    }
}

/// Postgres's dialect: row locks, `SKIP LOCKED` batches, insertion order by an identity
/// column.
pub struct Postgres;

impl Dialect for Postgres {
    type Db = sqlx::Postgres;
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const FOR_UPDATE_BOTH: &'static str = " FOR UPDATE OF s, m";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const WRITES_IN_WITH: bool = true;
    const INSERTION_ORDER: &'static str = "seq";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// 57P01 admin shutdown, 57P03 cannot connect now, 08xxx connection exceptions.
    fn unavailable_code(code: &str) -> bool {
        code.starts_with("08") || code == "57P01" || code == "57P03"
    }

    fn saw_unavailable() {
        LOST_AT_MS.store(millis_now().max(1), Ordering::Relaxed);
    }

    fn may_be_stale(idle_for: Duration) -> bool {
        needs_ping(idle_for)
    }

    fn fetch_all_params<'c>(
        conn: &'c mut sqlx::PgConnection,
        sql: &'c str,
        params: Vec<Param<'c>>,
    ) -> impl std::future::Future<Output = Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>> + Send + 'c
    {
        let mut query = sqlx::query::<sqlx::Postgres>(sql);
        for param in params {
            query = match param {
                Param::One(arg) => ots_store_sql::plumbing!(@bind_one query, arg),
                Param::Column(Column::Texts(v)) => query.bind(v),
                Param::Column(Column::MaybeTexts(v)) => query.bind(v),
                Param::Column(Column::Ints(v)) => query.bind(v),
                Param::Column(Column::MaybeInts(v)) => query.bind(v),
                Param::Column(Column::Blobs(v)) => query.bind(v),
                Param::Column(Column::MaybeBlobs(v)) => query.bind(v),
                Param::Column(Column::Bools(v)) => query.bind(v),
            };
        }
        query.fetch_all(conn)
    }

    ots_store_sql::plumbing!(sqlx::Postgres);
}

/// When this process last saw Postgres unreachable, in milliseconds since [`millis_now`]'s
/// start; 0 for never.
static LOST_AT_MS: AtomicU64 = AtomicU64::new(0);

fn millis_now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Whether a pooled connection must answer a ping before it is handed out: when it sat idle
/// for more than a second (Postgres may have restarted meanwhile), or was already idle when
/// this process last saw Postgres unreachable. A busy pool pings nothing, so a statement is
/// one round trip; after a restart, no request fails on a stale connection that the pool
/// could have tested.
fn needs_ping(idle_for: Duration) -> bool {
    let idle_since = millis_now().saturating_sub(idle_for.as_millis() as u64);
    let lost_at = LOST_AT_MS.load(Ordering::Relaxed);
    idle_for > Duration::from_secs(1) || (lost_at != 0 && lost_at >= idle_since)
}

/// Secrets, metadata, customers and tokens in one Postgres database.
pub type PgStore = SqlStore<Postgres>;

/// Connects a pool to `url` and, unless told not to, applies the migrations (sqlx takes an
/// advisory lock, so several processes may start at once).
pub async fn connect(url: &str, settings: &PgSettings) -> Result<PgStore, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(store_err::<Postgres>)?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // Check a pooled connection before handing it out only when it may be stale (see
        // `needs_ping`), so that a server restart costs one failed request at most, not
        // one per stale connection, and a busy pool pays no ping per statement.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if needs_ping(meta.idle_for) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(store_err::<Postgres>)?;
    let in_flight = settings
        .merged_in_flight
        .clamp(1, settings.max_connections as usize);
    let store = SqlStore::new(pool, None).with_merged_writes(in_flight);
    if settings.migrate {
        store.migrate().await?;
    }
    Ok(store)
}
