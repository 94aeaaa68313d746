//! Merging concurrent requests of one kind into one statement: shares into one multi-row
//! insert, reveals without a passphrase into one `DELETE … RETURNING`. A dispatcher task takes
//! the first queued job, waits for one of `in_flight` slots, takes every job queued meanwhile
//! (up to a limit) and hands them to the handler as one batch. Idle, a batch is one job and
//! costs one channel hop; busy, one statement and one commit serve many requests, so the
//! database does far less per request than one statement each.
//!
//! Each caller is answered with its own result; the handler decides how a failed merged
//! statement falls back (each job again, alone). Each batch in flight runs with a slot that
//! outlives it (a store keeps a connection there between batches: see `held`).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use ots_domain::StoreError;

type Queued<J, A> = (J, oneshot::Sender<Result<A, StoreError>>);

/// The queue to one dispatcher.
pub(crate) struct Batcher<J, A> {
    queue: mpsc::Sender<Queued<J, A>>,
}

impl<J, A> Clone for Batcher<J, A> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's batcher has stopped".into())
}

/// What a batch runs with and hands on to the next (a kept connection), and how it lets go
/// of that when unused.
pub(crate) trait Slot: Default + Send + 'static {
    /// Called on the free slots as batches start, and on all of them when no job has come
    /// for [`IDLE`]: lets go of what has been unused for a while.
    fn release_idle(&mut self) {}
}

impl Slot for () {}

/// How long the dispatcher waits for a job before it tells every free slot it is idle.
const IDLE: Duration = Duration::from_secs(1);

impl<J: Send + 'static, A: Send + 'static> Batcher<J, A> {
    /// Starts the dispatcher: at most `in_flight` batches of at most `max` jobs run at once,
    /// each with a slot of its own. The most recently used free slot runs the next batch,
    /// so a light load keeps using one and the others go idle. It ends when every handle is
    /// dropped.
    pub(crate) fn start<S, H, F>(in_flight: usize, max: usize, handler: H) -> Self
    where
        S: Slot,
        H: Fn(S, Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = (S, Vec<Result<A, StoreError>>)> + Send + 'static,
    {
        let (queue, mut jobs) = mpsc::channel::<Queued<J, A>>(16 * max);
        let in_flight = in_flight.max(1);
        let permits = Arc::new(Semaphore::new(in_flight));
        let free: Arc<Mutex<Vec<S>>> =
            Arc::new(Mutex::new((0..in_flight).map(|_| S::default()).collect()));
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let first = match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => match tokio::time::timeout(IDLE, jobs.recv()).await
                    {
                        Ok(Some(job)) => job,
                        Ok(None) => return,
                        Err(_) => {
                            lock(&free).iter_mut().for_each(S::release_idle);
                            continue;
                        }
                    },
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                // A permit is a free slot; one lost to a panicking handler is made anew.
                let slot = {
                    let mut free = lock(&free);
                    let slot = free.pop().unwrap_or_default();
                    free.iter_mut().for_each(S::release_idle);
                    slot
                };
                let (handler, free) = (handler.clone(), free.clone());
                tokio::spawn(async move {
                    let (work, replies): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
                    let (slot, answers) = handler(slot, work).await;
                    lock(&free).push(slot);
                    drop(permit);
                    // A handler that answers fewer jobs than it was given leaves the rest
                    // with a dropped reply: they see the store as stopped, not a wrong
                    // answer.
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                });
            }
        });
        Self { queue }
    }

    /// Queues `job` and waits for its answer.
    pub(crate) async fn run(&self, job: J) -> Result<A, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Splits `n` jobs into runs whose lengths are powers of two, largest first (13 = 8 + 4 + 1):
/// a merged statement's text depends on its row count, and so only a few texts are ever
/// prepared and cached per connection.
pub(crate) fn chunk_lengths(mut n: usize) -> Vec<usize> {
    let mut lengths = Vec::new();
    while n > 0 {
        let len = 1 << (usize::BITS - 1 - n.leading_zeros());
        lengths.push(len);
        n -= len;
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_that_add_up() {
        assert_eq!(chunk_lengths(0), Vec::<usize>::new());
        assert_eq!(chunk_lengths(1), vec![1]);
        assert_eq!(chunk_lengths(13), vec![8, 4, 1]);
        assert_eq!(chunk_lengths(32), vec![32]);
        for n in 0..200 {
            let lengths = chunk_lengths(n);
            assert_eq!(lengths.iter().sum::<usize>(), n);
            assert!(lengths.iter().all(|l| l.is_power_of_two()));
            assert!(lengths.windows(2).all(|w| w[0] > w[1]));
        }
    }

    #[tokio::test]
    async fn every_caller_gets_its_own_answer() {
        let batcher = Batcher::start(2, 8, |slot: (), jobs: Vec<u32>| async move {
            let answers = jobs
                .into_iter()
                .map(|j| {
                    if j % 5 == 0 {
                        Err(StoreError::Conflict(format!("{j}")))
                    } else {
                        Ok(j * 2)
                    }
                })
                .collect();
            (slot, answers)
        });
        let calls: Vec<_> = (0..100u32)
            .map(|j| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (j, batcher.run(j).await) })
            })
            .collect();
        for call in calls {
            let (j, answer) = call.await.unwrap();
            match answer {
                Ok(v) => assert_eq!(v, j * 2),
                Err(StoreError::Conflict(m)) => assert_eq!(m, j.to_string()),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_short_answer_is_an_error_not_a_hang() {
        let batcher: Batcher<u32, u32> =
            Batcher::start(1, 8, |slot: (), _jobs: Vec<u32>| async move {
                (slot, Vec::new())
            });
        assert!(matches!(
            batcher.run(1).await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
