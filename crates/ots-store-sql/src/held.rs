//! A pooled connection that a long-running task keeps between its statements.
//!
//! sqlx tests every connection given back to its pool: dropping a `PoolConnection` spawns a
//! task that pings it (a round trip to Postgres, a hop to SQLite's worker thread) before it
//! is idle again. That protects a pool from connections left mid-statement by a cancelled
//! future. A merging lane runs its statements to completion in a task of its own, so it can
//! keep its connection for the next batch instead, and a statement costs one round trip, not
//! two. The connection goes back to the pool once it has been unused for a while (then the
//! pool's own checks apply to it again), and after any failure that may mean it is broken.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;

use crate::Dialect;

/// How long a kept connection may sit unused before it is given back to the pool: the same
/// second after which the Postgres pool pings an idle connection before handing it out.
pub(crate) const KEEP_IDLE: Duration = Duration::from_secs(1);

/// A connection kept from the last statement, and when that statement ended.
pub(crate) struct Held<D: Dialect> {
    conn: Option<(PoolConnection<D::Db>, Instant)>,
}

impl<D: Dialect> Default for Held<D> {
    fn default() -> Self {
        Self { conn: None }
    }
}

impl<D: Dialect> Held<D> {
    /// The kept connection if it was used within [`KEEP_IDLE`] and the dialect does not
    /// think it may be stale (Postgres: not idle across a moment the store was seen
    /// unreachable); otherwise one from `pool`, which tests it as it would any.
    pub(crate) async fn take(
        &mut self,
        pool: &sqlx::Pool<D::Db>,
    ) -> Result<PoolConnection<D::Db>, sqlx::Error> {
        if let Some((conn, used)) = self.conn.take() {
            let idle_for = used.elapsed();
            if idle_for <= KEEP_IDLE && !D::may_be_stale(idle_for) {
                return Ok(conn);
            }
        }
        pool.acquire().await
    }

    /// Keeps `conn` for the next statement.
    pub(crate) fn keep(&mut self, conn: PoolConnection<D::Db>) {
        self.conn = Some((conn, Instant::now()));
    }

    /// Gives the connection back to the pool if it has been unused for [`KEEP_IDLE`].
    pub(crate) fn release_idle(&mut self) {
        if matches!(&self.conn, Some((_, used)) if used.elapsed() > KEEP_IDLE) {
            self.conn = None;
        }
    }
}
