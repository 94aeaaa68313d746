//! Group commit for a store with one writer connection (SQLite): one task takes every write
//! that is queued, runs them all in one transaction, commits the batch with one fsync, and
//! only then answers each caller. A request is answered only once what it wrote is durable;
//! under load, one fsync serves many requests instead of one each. When one write of a batch
//! fails, the batch is rolled back and each write runs again alone, in a transaction of its
//! own, so a failure stays its own (writes are replayable: nothing of them was committed).
//!
//! The task borrows the pool's single connection for each batch, so writes that do not go
//! through it (the sweep, the outbox, accounts) are still serialized with the batches.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use sqlx::Pool;
use tokio::sync::{mpsc, oneshot};

use ots_domain::StoreError;

use crate::{store_err, Conn, Dialect};

/// A future borrowing the writer connection.
pub type Pinned<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

type Answer = Result<Box<dyn Any + Send>, StoreError>;
type Work<D> = Box<dyn for<'c> Fn(&'c mut Conn<D>) -> Pinned<'c, Answer> + Send + Sync>;

struct Job<D: Dialect> {
    work: Work<D>,
    reply: oneshot::Sender<Answer>,
}

/// The most writes one transaction takes.
const MAX_BATCH: usize = 256;

/// The queue to the writer task.
pub struct GroupCommit<D: Dialect> {
    queue: mpsc::Sender<Job<D>>,
}

impl<D: Dialect> Clone for GroupCommit<D> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

impl<D: Dialect> GroupCommit<D> {
    /// Starts the writer task over `pool` (one connection). It ends when every handle is
    /// dropped.
    pub fn start(pool: Pool<D::Db>) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer::<D>(pool, jobs));
        Self { queue }
    }

    /// Runs `work` in the next batch (again, alone, if another write of the batch fails);
    /// answers once what it wrote is committed.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Conn<D>) -> Pinned<'c, Result<T, StoreError>> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work<D> = Box::new(move |conn| {
            let done = work(conn);
            Box::pin(async move {
                let out = done.await?;
                Ok(Box::new(out) as Box<dyn Any + Send>)
            })
        });
        self.queue
            .send(Job { work, reply })
            .await
            .map_err(|_| stopped())?;
        let out = answer.await.map_err(|_| stopped())??;
        out.downcast::<T>()
            .map(|t| *t)
            .map_err(|_| StoreError::Other("a write answered with another type".into()))
    }
}

async fn writer<D: Dialect>(pool: Pool<D::Db>, mut jobs: mpsc::Receiver<Job<D>>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(err) => {
                let err = store_err::<D>(err);
                for job in batch {
                    let _ = job.reply.send(Err(err.clone()));
                }
                continue;
            }
        };
        let answers = run_batch::<D>(&mut conn, batch).await;
        drop(conn);
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }
}

/// One transaction for the batch; if any job fails or the commit does, the batch is rolled
/// back and each job runs alone.
async fn run_batch<D: Dialect>(
    conn: &mut Conn<D>,
    batch: Vec<Job<D>>,
) -> Vec<(oneshot::Sender<Answer>, Answer)> {
    if batch.len() > 1 {
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

/// Every job in one transaction; `Err` (rolled back) when any failed or the commit did.
async fn try_together<D: Dialect>(conn: &mut Conn<D>, batch: &[Job<D>]) -> Result<Vec<Answer>, ()> {
    D::execute(conn, "BEGIN IMMEDIATE", vec![])
        .await
        .map_err(|_| ())?;
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        let answer = (job.work)(conn).await;
        if answer.is_err() {
            let _ = D::execute(conn, "ROLLBACK", vec![]).await;
            return Err(());
        }
        answers.push(answer);
    }
    if D::execute(conn, "COMMIT", vec![]).await.is_err() {
        let _ = D::execute(conn, "ROLLBACK", vec![]).await;
        return Err(());
    }
    Ok(answers)
}

/// One job in a transaction of its own.
async fn alone<D: Dialect>(conn: &mut Conn<D>, work: &Work<D>) -> Answer {
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
