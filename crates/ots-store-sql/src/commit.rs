//! Group commit for a store with one writer connection (SQLite): one task takes every write
//! that is queued, runs them all in one transaction, commits the batch with one fsync, and
//! only then answers each caller. A request is answered only once what it wrote is durable;
//! under load, one fsync serves many requests instead of one each. When one write of a batch
//! fails, the batch is rolled back and each write runs again alone, in a transaction of its
//! own, so a failure stays its own (writes are replayable: nothing of them was committed).
//!
//! Shares and reveals without a passphrase are not run one by one: the writer takes all of a
//! batch's shares into one insert per table, and all its reveals into one `DELETE` and one
//! `UPDATE`, and sends them with the batch's `BEGIN` and `COMMIT` as one query (see
//! `merged::whole_batch`), so a batch costs one round trip however many requests it serves.
//! Each query on sqlx's SQLite connection is a round trip to its worker thread, and on a busy
//! machine those hand-offs between threads, not the fsync, are what a write costs: an adapter
//! that gives the writer a connection of its own ([`InlineWriter`], SQLite's through
//! rusqlite) has such a batch run on the writer's thread, with no hand-off at all.
//!
//! The task borrows the pool's single connection while writes are queued (at most
//! `HOLD_AT_MOST` at a time), so writes that do not go through it (the sweep, the outbox,
//! accounts) are still serialized with the batches and never wait long for them.
//!
//! The writer runs on a thread of its own (`OwnThread`): on the server's workers, the news
//! that a batch was committed, and with it the start of the next batch, waited behind the
//! requests the last batch had just answered.
//!
//! With `Checkpoints`, a connection of its own copies the write-ahead log into the database
//! file after batches, while the writer goes on. SQLite's automatic checkpoint runs in the
//! committing connection: every ~1000 pages, one batch waited for the copy and the database
//! file's fsync, and every request queued behind it. The writer still checkpoints itself at
//! that size, but finds the log copied but for its last few pages, and only a checkpoint by
//! the writer, with no write between it and the next, lets the log restart from its
//! beginning (one beside a busy writer never catches up with it). The checkpointer pauses
//! only briefly between its checkpoints: after a long pause, the writer's own checkpoint
//! found tens of milliseconds of commits still to copy.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::Pool;
use tokio::sync::{mpsc, oneshot};

use ots_domain::StoreError;

use crate::batch::{OwnThread, Tally};
use crate::merged::{reveal_all, share_runs, whole_batch, Frame, Reveal, Runner, Share};
use crate::{store_err, Arg, Conn, Dialect, RowSource};
use ots_domain::StoredSecret;

/// A connection that checkpoints the log, and the statement that does it without blocking the
/// writer (SQLite: `PRAGMA wal_checkpoint(PASSIVE)`). The writer keeps its own automatic
/// checkpoint, or the log never restarts and grows for as long as writes come.
pub struct Checkpoints<D: Dialect> {
    pub pool: Pool<D::Db>,
    pub statement: &'static str,
}

/// A connection to the store whose statements run on the calling thread (SQLite through
/// rusqlite), which the writer keeps for its batches of shares and reveals without a
/// passphrase. Through sqlx, a batch is a round trip to the driver's worker thread, which
/// sends each statement's result back as it comes: a wake-up of the writer's thread for
/// each, and the worker made to give way while the writer takes it. Here the batch runs on
/// the writer's thread. The writer still holds the pool's connection meanwhile, so the
/// writes that do not come through it stay serialized with its batches.
pub trait InlineWriter: Send + Sync + 'static {
    /// Runs `sql`, statements joined by `; ` (the first `BEGIN IMMEDIATE`, the last
    /// `COMMIT`) whose anonymous `?` placeholders take `args` in order, and hands each row a
    /// statement returns to `row`. On an error nothing of it stays: what it began is rolled
    /// back. Once closed, an error, and the writer runs its batches through the pool.
    fn run(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        row: &mut dyn FnMut(&dyn RowSource) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// The batches it has committed.
    fn batches(&self) -> u64;

    /// Closes the connection, waiting for a batch it runs. The store closes it before its
    /// pools: SQLite copies the log into the database file and removes it when the last
    /// connection closes, and that must be the pool's, which closes when the server stops.
    fn close(&self);
}

/// How long the checkpointer lets commits gather after one checkpoint before the next, and
/// how often it checkpoints without being asked (writes outside the batches). At 50 ms, a
/// busy writer (~20,000 log pages a second) reached its own checkpoint's size between two
/// of these, and copied most of the log itself while its queue waited (change 48).
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(5);
const CHECKPOINT_ANYWAY: Duration = Duration::from_secs(1);

/// A future borrowing the writer connection.
pub type Pinned<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

type Answer = Result<Box<dyn Any + Send>, StoreError>;
type Opaque<D> = Box<dyn for<'c> Fn(&'c mut Conn<D>) -> Pinned<'c, Answer> + Send + Sync>;

/// What a job writes: any closure, or a share or reveal the writer merges with the others of
/// its batch.
enum Work<D: Dialect> {
    Opaque(Opaque<D>),
    Share(Share),
    Reveal(Reveal),
}

struct Job<D: Dialect> {
    work: Work<D>,
    queued: Instant,
    reply: oneshot::Sender<Answer>,
}

/// How long the writer keeps the pool's connection across batches while writes are queued.
/// Each time it is given back sqlx tests it (a hop to the worker thread); other writes (the
/// sweep, the outbox, accounts) wait for it, so it goes back at least this often.
const HOLD_AT_MOST: Duration = Duration::from_millis(20);

/// The most writes one transaction takes.
const MAX_BATCH: usize = 256;

/// The queue to the writer task.
pub struct GroupCommit<D: Dialect> {
    queue: mpsc::Sender<Job<D>>,
    inline: Option<Arc<dyn InlineWriter>>,
}

impl<D: Dialect> Clone for GroupCommit<D> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            inline: self.inline.clone(),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

impl<D: Dialect> GroupCommit<D> {
    /// Starts the writer task over `pool` (one connection), counting its batches in `tally`,
    /// and the checkpointer if any. Both end when every handle is dropped.
    pub(crate) fn start(
        pool: Pool<D::Db>,
        checkpoints: Option<Checkpoints<D>>,
        inline: Option<Arc<dyn InlineWriter>>,
        tally: Arc<Tally>,
    ) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        let committed = checkpoints.map(|checkpoints| {
            let (committed, due) = mpsc::channel(1);
            tokio::spawn(checkpointer::<D>(checkpoints, due));
            committed
        });
        // On a thread of its own (see `OwnThread`), the writer sees a batch committed, and
        // takes the next, while the server's workers answer the last one's requests.
        match OwnThread::start("ots-store-writer") {
            Ok(thread) => thread.spawn(writer::<D>(pool, jobs, committed, inline.clone(), tally)),
            Err(err) => {
                tracing::warn!(error = %err, "the store's writer runs on the server's workers");
                // An inline connection blocks the thread it runs on: not a server's worker.
                drop(tokio::spawn(writer::<D>(
                    pool, jobs, committed, None, tally,
                )));
            }
        }
        Self { queue, inline }
    }

    /// The batches committed on the writer's own connection, when it has one.
    pub(crate) fn inline_batches(&self) -> Option<u64> {
        self.inline.as_ref().map(|inline| inline.batches())
    }

    /// Closes the writer's own connection, if any (see [`InlineWriter::close`]).
    pub(crate) fn close_inline(&self) {
        if let Some(inline) = &self.inline {
            inline.close();
        }
    }

    /// Runs `work` in the next batch (again, alone, if another write of the batch fails);
    /// answers once what it wrote is committed.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Conn<D>) -> Pinned<'c, Result<T, StoreError>> + Send + Sync + 'static,
    {
        let work: Opaque<D> = Box::new(move |conn| {
            let done = work(conn);
            Box::pin(async move {
                let out = done.await?;
                Ok(Box::new(out) as Box<dyn Any + Send>)
            })
        });
        self.submit(Work::Opaque(work)).await
    }

    /// Stores a share in the next batch, merged with the batch's other shares.
    pub(crate) async fn share(&self, share: Share) -> Result<(), StoreError> {
        self.submit(Work::Share(share)).await
    }

    /// Takes a secret without a passphrase in the next batch, merged with its other reveals.
    pub(crate) async fn reveal(&self, reveal: Reveal) -> Result<Option<StoredSecret>, StoreError> {
        self.submit(Work::Reveal(reveal)).await
    }

    async fn submit<T: 'static>(&self, work: Work<D>) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                work,
                queued: Instant::now(),
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        let out = answer.await.map_err(|_| stopped())??;
        out.downcast::<T>()
            .map(|t| *t)
            .map_err(|_| StoreError::Other("a write answered with another type".into()))
    }
}

async fn writer<D: Dialect>(
    pool: Pool<D::Db>,
    mut jobs: mpsc::Receiver<Job<D>>,
    committed: Option<mpsc::Sender<()>>,
    inline: Option<Arc<dyn InlineWriter>>,
    tally: Arc<Tally>,
) {
    // The connection kept from the last batch, and since when it has been out of the pool.
    let mut kept: Option<(PoolConnection<D::Db>, Instant)> = None;
    loop {
        if jobs.is_empty() {
            // Nothing queued: the connection goes back, for the writes that do not come here.
            kept = None;
        }
        let Some(first) = jobs.recv().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        tally.add(batch.len());
        let (mut conn, since) = match kept.take() {
            Some(kept) => kept,
            None => match pool.acquire().await {
                Ok(conn) => (conn, Instant::now()),
                Err(err) => {
                    let err = store_err::<D>(err);
                    for job in batch {
                        tally.answered(job.queued);
                        let _ = job.reply.send(Err(err.clone()));
                    }
                    continue;
                }
            },
        };
        let queued: Vec<Instant> = batch.iter().map(|job| job.queued).collect();
        let started = Instant::now();
        let answers = run_batch::<D>(&mut conn, inline.as_deref(), batch).await;
        tally.took(started.elapsed());
        // After a failure the pool tests the connection before it serves again.
        let failed = answers.iter().any(|(_, answer)| answer.is_err());
        if !failed && since.elapsed() < HOLD_AT_MOST {
            kept = Some((conn, since));
        }
        for ((reply, answer), queued) in answers.into_iter().zip(queued) {
            tally.answered(queued);
            let _ = reply.send(answer);
        }
        if let Some(committed) = &committed {
            // Full means a checkpoint is already due; it will take this batch's pages too.
            let _ = committed.try_send(());
        }
    }
}

/// Checkpoints after commits (at most every `CHECKPOINT_PAUSE`) and every
/// `CHECKPOINT_ANYWAY`, until the writer stops. A failed checkpoint only leaves the log
/// longer until the next one; nothing waits for it.
async fn checkpointer<D: Dialect>(checkpoints: Checkpoints<D>, mut due: mpsc::Receiver<()>) {
    loop {
        if let Ok(None) = tokio::time::timeout(CHECKPOINT_ANYWAY, due.recv()).await {
            break;
        }
        let done = match checkpoints.pool.acquire().await {
            Ok(mut conn) => D::execute(&mut conn, checkpoints.statement, vec![])
                .await
                .map(|_| ())
                .map_err(store_err::<D>),
            Err(err) => Err(store_err::<D>(err)),
        };
        if let Err(err) = done {
            tracing::warn!(error = %err, "checkpoint failed; will retry");
        }
        tokio::time::sleep(CHECKPOINT_PAUSE).await;
    }
}

/// One transaction for the batch; if any job fails or the commit does, the batch is rolled
/// back and each job runs alone. A batch of shares and reveals alone runs on `inline` when
/// given.
async fn run_batch<D: Dialect>(
    conn: &mut Conn<D>,
    inline: Option<&dyn InlineWriter>,
    batch: Vec<Job<D>>,
) -> Vec<(oneshot::Sender<Answer>, Answer)> {
    let mut together = batch.len() > 1;
    if let Some(inline) = inline {
        match inline_batch::<D>(inline, &batch).await {
            Some(Ok(answers)) => {
                return batch
                    .into_iter()
                    .map(|job| job.reply)
                    .zip(answers)
                    .collect();
            }
            // Rolled back: each job again, alone.
            Some(Err(())) => together = false,
            None => {}
        }
    }
    if together {
        if let Ok(answers) = try_together::<D>(conn, &batch).await {
            return batch
                .into_iter()
                .map(|job| job.reply)
                .zip(answers)
                .collect();
        }
    }
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        let answer = alone::<D>(conn, &job.work).await;
        answers.push((job.reply, answer));
    }
    answers
}

/// Every job in one transaction, the shares and the reveals merged; `Err` (rolled back) when
/// any failed or the commit did.
async fn try_together<D: Dialect>(conn: &mut Conn<D>, batch: &[Job<D>]) -> Result<Vec<Answer>, ()> {
    let done = all_jobs::<D>(conn, batch).await;
    if done.is_err() {
        let _ = D::execute(conn, "ROLLBACK", vec![]).await;
    }
    done
}

/// The batch's transaction: first every share, then every reveal, then the other jobs one by
/// one (the jobs of one batch are concurrent, so any order is theirs). A batch of shares and
/// reveals alone is one query, its `BEGIN` and `COMMIT` in it; otherwise the `BEGIN` rides on
/// the first merged statement and the `COMMIT` on the last when no other job follows.
async fn all_jobs<D: Dialect>(conn: &mut Conn<D>, batch: &[Job<D>]) -> Result<Vec<Answer>, ()> {
    let (mut shares, mut reveals, mut others) = (Vec::new(), Vec::new(), false);
    for job in batch {
        match &job.work {
            Work::Share(share) => shares.push(share.clone()),
            Work::Reveal(reveal) => reveals.push(reveal.clone()),
            Work::Opaque(_) => others = true,
        }
    }
    if !others {
        if let Some(revealed) = whole_batch::<D>(Runner::Sqlx(conn), &shares, &reveals).await {
            return merged_answers(batch, revealed.map_err(|_| ())?);
        }
    }
    let reveal_runs = reveals.iter().any(|r| !r.key_ids.is_empty());
    let folded_commit = !others && (reveal_runs || !shares.is_empty());
    let mut begun = false;
    if !shares.is_empty() {
        let frame = Frame {
            begin: true,
            commit: folded_commit && !reveal_runs,
        };
        share_runs::<D>(conn, &shares, frame)
            .await
            .map_err(|_| ())?;
        begun = true;
    }
    let frame = Frame {
        begin: !begun,
        commit: folded_commit,
    };
    let mut revealed = reveal_all::<D>(conn, &reveals, frame)
        .await
        .map_err(|_| ())?
        .into_iter();
    begun |= reveal_runs;
    if !begun {
        D::execute(conn, "BEGIN IMMEDIATE", vec![])
            .await
            .map_err(|_| ())?;
    }
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        let answer = match &job.work {
            Work::Share(_) => Ok(Box::new(()) as Box<dyn Any + Send>),
            Work::Reveal(_) => match revealed.next() {
                Some(secret) => Ok(Box::new(secret) as Box<dyn Any + Send>),
                None => return Err(()),
            },
            Work::Opaque(work) => match work(conn).await {
                Ok(out) => Ok(out),
                Err(_) => return Err(()),
            },
        };
        answers.push(answer);
    }
    if !folded_commit {
        D::execute(conn, "COMMIT", vec![]).await.map_err(|_| ())?;
    }
    Ok(answers)
}

/// A batch of shares and reveals alone, on the writer's own connection: `None` when the
/// batch holds another write or is not of [`whole_batch`]'s shape, `Err` when it failed
/// (and was rolled back).
async fn inline_batch<D: Dialect>(
    inline: &dyn InlineWriter,
    batch: &[Job<D>],
) -> Option<Result<Vec<Answer>, ()>> {
    let (mut shares, mut reveals) = (Vec::new(), Vec::new());
    for job in batch {
        match &job.work {
            Work::Share(share) => shares.push(share.clone()),
            Work::Reveal(reveal) => reveals.push(reveal.clone()),
            Work::Opaque(_) => return None,
        }
    }
    let revealed = whole_batch::<D>(Runner::Inline(inline), &shares, &reveals).await?;
    Some(
        revealed
            .map_err(|_| ())
            .and_then(|r| merged_answers(batch, r)),
    )
}

/// Each job's answer from what a merged batch's reveals took, in the batch's order.
fn merged_answers<D: Dialect>(
    batch: &[Job<D>],
    revealed: Vec<Option<StoredSecret>>,
) -> Result<Vec<Answer>, ()> {
    let mut revealed = revealed.into_iter();
    batch
        .iter()
        .map(|job| match &job.work {
            Work::Reveal(_) => revealed
                .next()
                .map(|secret| Box::new(secret) as Box<dyn Any + Send>)
                .ok_or(()),
            _ => Ok(Box::new(()) as Box<dyn Any + Send>),
        })
        .map(|answer| answer.map(Ok))
        .collect()
}

/// One job in a transaction of its own.
async fn alone<D: Dialect>(conn: &mut Conn<D>, work: &Work<D>) -> Answer {
    let whole = Frame {
        begin: true,
        commit: true,
    };
    let merged = match work {
        Work::Opaque(work) => return opaque_alone::<D>(conn, work).await,
        Work::Share(share) => share_runs::<D>(conn, std::slice::from_ref(share), whole)
            .await
            .map(|_| Box::new(()) as Box<dyn Any + Send>),
        Work::Reveal(reveal) => reveal_all::<D>(conn, std::slice::from_ref(reveal), whole)
            .await
            .map(|mut answers| answers.pop().flatten())
            .map(|secret| Box::new(secret) as Box<dyn Any + Send>),
    };
    // Begun and committed in the statement; on failure, nothing of it may stay.
    if merged.is_err() {
        let _ = D::execute(conn, "ROLLBACK", vec![]).await;
    }
    merged
}

/// A closure's job in a transaction of its own.
async fn opaque_alone<D: Dialect>(conn: &mut Conn<D>, work: &Opaque<D>) -> Answer {
    D::execute(conn, "BEGIN IMMEDIATE", vec![])
        .await
        .map_err(store_err::<D>)?;
    let answer = work(conn).await;
    let end = if answer.is_ok() { "COMMIT" } else { "ROLLBACK" };
    match D::execute(conn, end, vec![]).await {
        Ok(_) => answer,
        Err(err) => {
            let err = store_err::<D>(err);
            tracing::error!(error = %err, "a write did not commit");
            let _ = D::execute(conn, "ROLLBACK", vec![]).await;
            Err(err)
        }
    }
}
