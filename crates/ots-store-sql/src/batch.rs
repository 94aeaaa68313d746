//! Merging concurrent requests of one kind into one statement: shares into one multi-row
//! insert, reveals without a passphrase into one `DELETE … RETURNING`. A dispatcher task takes
//! the first queued job, waits for one of `in_flight` slots, takes every job queued meanwhile
//! (up to a limit) and hands them to the handler as one batch. Idle, a batch is one job and
//! costs one channel hop; busy, one statement and one commit serve many requests, so the
//! database does far less per request than one statement each.
//!
//! Each caller is answered with its own result; the handler decides how a failed merged
//! statement falls back (each job again, alone).

use std::future::Future;
use std::sync::Arc;

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

impl<J: Send + 'static, A: Send + 'static> Batcher<J, A> {
    /// Starts the dispatcher: at most `in_flight` batches of at most `max` jobs run at once.
    /// It ends when every handle is dropped.
    pub(crate) fn start<H, F>(in_flight: usize, max: usize, handler: H) -> Self
    where
        H: Fn(Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<Result<A, StoreError>>> + Send + 'static,
    {
        let (queue, mut jobs) = mpsc::channel::<Queued<J, A>>(16 * max);
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            while let Some(first) = jobs.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let handler = handler.clone();
                tokio::spawn(async move {
                    let (work, replies): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
                    let answers = handler(work).await;
                    // A handler that answers fewer jobs than it was given leaves the rest
                    // with a dropped reply: they see the store as stopped, not a wrong
                    // answer.
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                    drop(slot);
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
        let batcher = Batcher::start(2, 8, |jobs: Vec<u32>| async move {
            jobs.into_iter()
                .map(|j| {
                    if j % 5 == 0 {
                        Err(StoreError::Conflict(format!("{j}")))
                    } else {
                        Ok(j * 2)
                    }
                })
                .collect()
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
            Batcher::start(1, 8, |_jobs: Vec<u32>| async move { Vec::new() });
        assert!(matches!(
            batcher.run(1).await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
