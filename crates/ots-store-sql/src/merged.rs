//! Shares and reveals without a passphrase, many per statement.
//!
//! A share inserts its metadata, its secret and any mail; a reveal without a passphrase
//! deletes its secret, marks its metadata received and returns the sealed row. Both are
//! written for a list of requests, cut into runs of power-of-two length (see
//! [`chunk_lengths`]) so that only a few statement texts are ever prepared.
//!
//! - On Postgres each run is one `WITH` statement, atomic on its own. Concurrent requests
//!   reach it through a [`Batcher`]. When a run fails (a key conflict; a deadlock between two
//!   runs revealing the same keys in another order), nothing of it was written, and each of
//!   its requests runs again alone, so one request's failure stays its own.
//! - On SQLite the group commit's writer takes every share and reveal of its batch and runs
//!   them as these runs inside the batch's transaction (one insert per table, one `DELETE`
//!   and one `UPDATE` per run). A failed run fails the batch, which the writer rolls back and
//!   replays job by job (see `commit`).
//!
//! Reveal-once holds as before: the `DELETE` takes the row (on Postgres its row lock, across
//! processes; on SQLite the single writer), so of concurrent reveals exactly one gets the
//! row. Within a batch a key asked twice is deleted once and handed to the first asker.

use std::collections::HashMap;
use std::sync::Arc;

use ots_domain::*;

use crate::batch::{chunk_lengths, Batcher};
use crate::held::Held;
use crate::outbox::MailRow;
use crate::rows::{self, SECRET_COLUMNS};
use crate::secrets::{placeholders, MetadataRow, SecretRow};
use crate::{store_err, Arg, Conn, Dialect, Pinned, SqlStore};

/// What one share writes.
pub(crate) type Share = Arc<(StoredSecret, Metadata, Option<OutboxMail>)>;

/// One reveal without a passphrase: the secret's key, the key ids whose rows this process can
/// open, and when it was asked.
#[derive(Clone)]
pub(crate) struct Reveal {
    pub key: String,
    pub key_ids: Arc<Vec<String>>,
    pub now: UnixTime,
}

/// Where a caller on SQLite folds its transaction's `BEGIN` into the first statement it runs
/// here and its `COMMIT` into the last: the whole batch is then a round trip or two to the
/// driver's worker thread. Postgres never folds (its runs are atomic statements).
#[derive(Clone, Copy, Default)]
pub(crate) struct Frame {
    pub begin: bool,
    pub commit: bool,
}

impl Frame {
    /// The frame of run `i` of `n`: the begin on the first, the commit on the last.
    fn of_run(self, i: usize, n: usize) -> Frame {
        Frame {
            begin: self.begin && i == 0,
            commit: self.commit && i + 1 == n,
        }
    }

    fn wrap(self, sql: String) -> String {
        match (self.begin, self.commit) {
            (false, false) => sql,
            (true, false) => format!("BEGIN IMMEDIATE; {sql}"),
            (false, true) => format!("{sql}; COMMIT"),
            (true, true) => format!("BEGIN IMMEDIATE; {sql}; COMMIT"),
        }
    }
}

/// The most jobs one batch takes (and so the longest run).
const MAX_BATCH: usize = 32;

/// The batchers of a store that merges concurrent writes.
pub(crate) struct Merge {
    shares: Batcher<Share, ()>,
    reveals: Batcher<Reveal, Option<StoredSecret>>,
}

impl Clone for Merge {
    fn clone(&self) -> Self {
        Self {
            shares: self.shares.clone(),
            reveals: self.reveals.clone(),
        }
    }
}

impl Merge {
    /// Batchers over `store` (which must not merge itself), `in_flight` batches of each kind
    /// at a time.
    pub(crate) fn start<D: Dialect>(store: SqlStore<D>, in_flight: usize) -> Self {
        let for_shares = store.clone();
        let shares = Batcher::start(in_flight, MAX_BATCH, move |mut held: Held<D>, jobs| {
            let store = for_shares.clone();
            async move {
                let answers = store.run_now(&mut held, jobs, shares::<D>).await;
                (held, answers)
            }
        });
        let reveals = Batcher::start(in_flight, MAX_BATCH, move |mut held: Held<D>, jobs| {
            let store = store.clone();
            async move {
                let answers = store.run_now(&mut held, jobs, reveals::<D>).await;
                (held, answers)
            }
        });
        Self { shares, reveals }
    }

    pub(crate) async fn share(&self, share: Share) -> Result<(), StoreError> {
        self.shares.run(share).await
    }

    pub(crate) async fn reveal(&self, reveal: Reveal) -> Result<Option<StoredSecret>, StoreError> {
        self.reveals.run(reveal).await
    }
}

/// How one kind of merged job is written: its runs on `conn`, `fallback` as for
/// [`share_runs`].
type Runs<D, J, A> = for<'c> fn(&'c mut Conn<D>, &'c [J], bool) -> Pinned<'c, Answers<A>>;

/// One answer per job, or one failure for all.
type Answers<A> = Result<Vec<Result<A, StoreError>>, StoreError>;

fn shares<'c, D: Dialect>(
    conn: &'c mut Conn<D>,
    jobs: &'c [Share],
    fallback: bool,
) -> Pinned<'c, Answers<()>> {
    Box::pin(share_runs::<D>(conn, jobs, fallback, Frame::default()))
}

fn reveals<'c, D: Dialect>(
    conn: &'c mut Conn<D>,
    jobs: &'c [Reveal],
    fallback: bool,
) -> Pinned<'c, Answers<Option<StoredSecret>>> {
    Box::pin(reveal_all::<D>(conn, jobs, fallback, Frame::default()))
}

impl<D: Dialect> crate::batch::Slot for Held<D> {
    fn release_idle(&mut self) {
        Held::release_idle(self)
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Stores each share; one answer per share, in order.
    pub(crate) async fn share_now(&self, jobs: Vec<Share>) -> Vec<Result<(), StoreError>> {
        self.run_now(&mut Held::default(), jobs, shares::<D>).await
    }

    /// Takes each reveal's secret; one answer per reveal, in order.
    pub(crate) async fn reveal_now(
        &self,
        jobs: Vec<Reveal>,
    ) -> Vec<Result<Option<StoredSecret>, StoreError>> {
        self.run_now(&mut Held::default(), jobs, reveals::<D>).await
    }

    /// Where each run is one atomic statement (Postgres), outside any transaction on the
    /// connection `held` keeps (or a pooled one, kept there afterwards unless the database
    /// seemed unreachable), a failed run replayed job by job; otherwise all in one
    /// transaction, which fails as a whole.
    async fn run_now<J, A>(
        &self,
        held: &mut Held<D>,
        jobs: Vec<J>,
        runs: Runs<D, J, A>,
    ) -> Vec<Result<A, StoreError>>
    where
        J: Send + Sync + 'static,
        A: Send + 'static,
    {
        let n = jobs.len();
        let answers = if D::WRITES_IN_WITH {
            match held.take(self.pool()).await.map_err(store_err::<D>) {
                Ok(mut conn) => {
                    let answers = runs(&mut conn, &jobs, true).await;
                    let unreachable =
                        |a: &Result<A, StoreError>| matches!(a, Err(StoreError::Unavailable(_)));
                    match &answers {
                        Ok(each) if !each.iter().any(unreachable) => held.keep(conn),
                        // Back to the pool, whose ping on release closes it if it is broken.
                        _ => drop(conn),
                    }
                    answers
                }
                Err(err) => Err(err),
            }
        } else {
            let jobs = Arc::new(jobs);
            self.transact(move |conn| {
                let jobs = jobs.clone();
                Box::pin(async move { runs(conn, &jobs, false).await })
            })
            .await
        };
        answers.unwrap_or_else(|err| (0..n).map(|_| Err(err.clone())).collect())
    }
}

/// Every share, run by run. With `fallback` (each run atomic alone: Postgres) a failed run
/// is tried again share by share; without, the first failure is the answer (the caller's
/// transaction is to be rolled back). `frame` is applied when there is at least one share.
pub(crate) async fn share_runs<D: Dialect>(
    conn: &mut Conn<D>,
    jobs: &[Share],
    fallback: bool,
    frame: Frame,
) -> Answers<()> {
    let mut answers = Vec::with_capacity(jobs.len());
    let mut at = 0;
    let lengths = chunk_lengths(jobs.len());
    for (i, &len) in lengths.iter().enumerate() {
        let run = &jobs[at..at + len];
        at += len;
        match insert_shares::<D>(conn, run, frame.of_run(i, lengths.len())).await {
            Ok(()) => answers.extend(run.iter().map(|_| Ok(()))),
            Err(err) if !fallback => return Err(err),
            Err(err) if len == 1 => answers.push(Err(err)),
            Err(_) => {
                for job in run {
                    let one = std::slice::from_ref(job);
                    answers.push(insert_shares::<D>(conn, one, Frame::default()).await);
                }
            }
        }
    }
    Ok(answers)
}

/// The rows of `shares`: on Postgres one `WITH` (foreign keys checked at its end); on SQLite
/// one insert per table, metadata first.
async fn insert_shares<D: Dialect>(
    conn: &mut Conn<D>,
    shares: &[Share],
    frame: Frame,
) -> Result<(), StoreError> {
    let n = shares.len();
    let metadata: Vec<MetadataRow> = shares.iter().map(|s| MetadataRow::of(&s.1)).collect();
    let secrets: Vec<SecretRow> = shares.iter().map(|s| SecretRow::of(&s.0)).collect();
    let mails: Vec<MailRow> = shares
        .iter()
        .filter_map(|s| s.2.as_ref().map(MailRow::of))
        .collect();
    let m_args: Vec<Arg> = metadata.iter().flat_map(|m| m.args()).collect();
    let s_args: Vec<Arg> = secrets.iter().flat_map(|s| s.args()).collect();
    let o_args: Vec<Arg> = mails.iter().flat_map(|o| o.args()).collect();
    let s_first = 1 + n * MetadataRow::COUNT;
    let mut inserts = vec![
        MetadataRow::insert_sql(1, n),
        SecretRow::insert_sql(s_first, n),
    ];
    if !mails.is_empty() {
        let o_first = s_first + n * SecretRow::COUNT;
        inserts.push(MailRow::insert_sql(o_first, mails.len()));
    }
    let sql = if D::WRITES_IN_WITH {
        let ctes: Vec<String> = ["m", "s", "o"]
            .iter()
            .zip(&inserts)
            .map(|(name, insert)| format!("{name} AS ({insert})"))
            .collect();
        format!("WITH {} SELECT 1", ctes.join(", "))
    } else {
        // One query of several statements, numbered on across them: one round trip to
        // the driver's worker thread.
        frame.wrap(inserts.join("; "))
    };
    let mut args = m_args;
    args.extend(s_args);
    args.extend(o_args);
    D::execute(conn, &sql, args)
        .await
        .map(|_| ())
        .map_err(store_err::<D>)
}

/// Every reveal: grouped by the key ids they may open, each key deleted once and handed to
/// the first job that asked for it. `fallback` as for [`share_runs`]; `frame` is applied
/// when some job has key ids.
pub(crate) async fn reveal_all<D: Dialect>(
    conn: &mut Conn<D>,
    jobs: &[Reveal],
    fallback: bool,
    frame: Frame,
) -> Answers<Option<StoredSecret>> {
    // Per set of key ids: the keys asked, each once, and the latest time asked.
    type Group<'j> = (&'j Arc<Vec<String>>, Vec<&'j str>, UnixTime);
    let mut groups: Vec<Group> = Vec::new();
    for job in jobs.iter().filter(|job| !job.key_ids.is_empty()) {
        match groups.iter_mut().find(|g| g.0 == &job.key_ids) {
            Some(group) => {
                if !group.1.contains(&job.key.as_str()) {
                    group.1.push(&job.key);
                }
                // A batch answers after every job in it was asked: the latest "now" is the
                // truest, and never reveals what expired meanwhile.
                group.2 = group.2.max(job.now);
            }
            None => groups.push((&job.key_ids, vec![&job.key], job.now)),
        }
    }
    let mut runs: Vec<(&[String], &[&str], UnixTime)> = Vec::new();
    for (key_ids, keys, now) in &groups {
        let mut at = 0;
        for len in chunk_lengths(keys.len()) {
            runs.push((key_ids.as_slice(), &keys[at..at + len], *now));
            at += len;
        }
    }
    let mut taken: HashMap<&str, Result<StoredSecret, StoreError>> = HashMap::new();
    for (i, &(key_ids, run, now)) in runs.iter().enumerate() {
        let run_frame = frame.of_run(i, runs.len());
        match delete_run::<D>(conn, run, key_ids, now, run_frame).await {
            Ok(found) => {
                for secret in found {
                    if let Some(key) = run.iter().find(|k| **k == secret.id.to_hex()) {
                        taken.insert(key, Ok(secret));
                    }
                }
            }
            Err(err) if !fallback => return Err(err),
            Err(err) if run.len() == 1 => {
                taken.insert(run[0], Err(err));
            }
            Err(_) => {
                for key in run {
                    let one = std::slice::from_ref(key);
                    match delete_run::<D>(conn, one, key_ids, now, Frame::default()).await {
                        Ok(found) => {
                            if let Some(secret) = found.into_iter().next() {
                                taken.insert(key, Ok(secret));
                            }
                        }
                        Err(err) => {
                            taken.insert(key, Err(err));
                        }
                    }
                }
            }
        }
    }
    Ok(jobs
        .iter()
        .map(|job| match taken.get(job.key.as_str()) {
            Some(Err(err)) => Err(err.clone()),
            // Found: the first job with this key takes it; later ones find it gone.
            Some(Ok(_)) => match taken.remove(job.key.as_str()) {
                Some(Ok(secret)) => Ok(Some(secret)),
                _ => Ok(None),
            },
            None => Ok(None),
        })
        .collect())
}

/// Deletes the live, passphrase-free secrets among `keys` sealed under one of `key_ids`,
/// marks their metadata received, and returns them.
async fn delete_run<D: Dialect>(
    conn: &mut Conn<D>,
    keys: &[&str],
    key_ids: &[String],
    now: UnixTime,
    frame: Frame,
) -> Result<Vec<StoredSecret>, StoreError> {
    let n = keys.len();
    let live = format!(
        "FROM secrets WHERE key IN {} AND expires_at > $1 AND scheme = 2 \
         AND passphrase_cost IS NULL AND key_id IN {}",
        placeholders(2, n),
        placeholders(2 + n, key_ids.len())
    );
    let mut args = vec![Arg::Int(now)];
    args.extend(keys.iter().map(|k| Arg::Text(k)));
    args.extend(key_ids.iter().map(|k| Arg::Text(k)));
    const RECEIVED: &str = "UPDATE metadata SET state = 'received', secret_key = NULL, \
                            received = $1, updated = $1 WHERE key IN";
    let sql = if D::WRITES_IN_WITH {
        format!(
            "WITH s AS (DELETE {live} RETURNING {SECRET_COLUMNS}), \
             m AS ({RECEIVED} (SELECT metadata_key FROM s)) SELECT {SECRET_COLUMNS} FROM s"
        )
    } else {
        // SQLite's `WITH` holds no writes: the metadata is marked first, by the same
        // filter, then the rows are deleted and returned; one query of two statements in
        // the writer's transaction, one round trip to the driver's worker thread.
        frame.wrap(format!(
            "{RECEIVED} (SELECT metadata_key {live}); DELETE {live} RETURNING {SECRET_COLUMNS}"
        ))
    };
    let rows = D::fetch_all(conn, &sql, args)
        .await
        .map_err(store_err::<D>)?;
    rows.iter().map(rows::secret::<D>).collect()
}
