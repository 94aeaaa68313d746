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
    /// see `ots_store_sql::SqlStore::with_merged_writes`). Their connections are taken from
    /// `max_connections`, which keeps at least one for the rest.
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
/// advisory lock, so several processes may start at once). The merged writes' lanes keep
/// `merged_in_flight` of the `max_connections` in a pool of their own, on their thread.
pub async fn connect(url: &str, settings: &PgSettings) -> Result<PgStore, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(store_err::<Postgres>)?;
    let (pooled, in_flight) = split_connections(settings);
    let pool = pool_options(settings, pooled)
        .connect_with(options.clone())
        .await
        .map_err(store_err::<Postgres>)?;
    let lanes = pool_options(settings, in_flight as u32);
    let store = SqlStore::new(pool, None)
        .with_merged_writes(in_flight, move || lanes.connect_lazy_with(options));
    if settings.migrate {
        store.migrate().await?;
    }
    Ok(store)
}

/// The connections of the shared pool and of the lanes' own: `max_connections` in all, the
/// lanes at least one and the pool at least one (so two when `max_connections` is one).
fn split_connections(settings: &PgSettings) -> (u32, usize) {
    let max = settings.max_connections.max(1);
    let in_flight = settings
        .merged_in_flight
        .clamp(1, (max as usize).saturating_sub(1).max(1));
    (max.saturating_sub(in_flight as u32).max(1), in_flight)
}

/// A pool of at most `max` connections, as every pool of this store is set.
fn pool_options(settings: &PgSettings, max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lanes_and_the_pool_share_max_connections() {
        let split = |max_connections, merged_in_flight| {
            split_connections(&PgSettings {
                max_connections,
                merged_in_flight,
                ..PgSettings::default()
            })
        };
        assert_eq!(split(10, 4), (6, 4));
        assert_eq!(split(3, 2), (1, 2));
        assert_eq!(split(3, 8), (1, 2), "the pool keeps one");
        assert_eq!(split(32, 0), (31, 1), "the lanes have one at least");
        assert_eq!(split(1, 4), (1, 1), "one is too few: one each");
    }
}
