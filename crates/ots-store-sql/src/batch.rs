//! Merging concurrent requests into one statement. A lane takes the first queued job, then
//! every job queued meanwhile (up to a limit), and hands them to the handler as one batch.
//! Idle, a batch is one job and costs one channel hop; busy, one statement and one commit
//! serve every request that came while the last one ran, so the database does far less per
//! request than a statement each.
//!
//! One batch runs at a time: while it runs, the next lane holds the first job that came and
//! waits for it to end, then takes everything queued. Running the next batch beside it would
//! make both smaller, and on a busy machine the database's time per statement, not the wait,
//! is what limits the rate. Only a batch that has run for [`STALL`] (a row lock held by
//! another process, a slow flush) lets the next lane start beside it, so one stuck statement
//! holds up the others for that long at most.
//!
//! Each caller is answered with its own result; the handler decides how a failed merged
//! statement falls back (each job again, alone). Each lane keeps a slot across its batches (a
//! store keeps a connection there: see `held`).
//!
//! The lanes may run on a thread of their own ([`OwnThread`]): there a statement's answer is
//! seen as soon as it comes and the next batch starts at once, while the server's workers are
//! still busy answering the last batch's requests; on the workers, both waited their turn
//! behind those requests.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use ots_domain::{StoreError, Timings, WriteBatches, BATCH_SECONDS};

/// A job, when it was queued, and where its answer goes.
type Queued<J, A> = (J, Instant, oneshot::Sender<Result<A, StoreError>>);

/// The batches a store has run and the writes they carried, counted where each batch is
/// taken (a batch replayed job by job after a failure counts once); how long each took to
/// run and commit, counted when it has (its replay included); and how long each write took
/// from its queue to its answer, counted when it is answered.
#[derive(Default)]
pub(crate) struct Tally {
    batches: AtomicU64,
    writes: AtomicU64,
    took: Cells,
    answered: Cells,
}

/// [`Timings`] counted from several threads.
#[derive(Default)]
struct Cells {
    counts: [AtomicU64; BATCH_SECONDS.len() + 1],
    micros: AtomicU64,
}

impl Cells {
    fn add(&self, elapsed: Duration) {
        let bucket = Timings::bucket(elapsed.as_secs_f64());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn read(&self) -> Timings {
        Timings {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            micros: self.micros.load(Ordering::Relaxed),
        }
    }
}

impl Tally {
    pub(crate) fn add(&self, writes: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes as u64, Ordering::Relaxed);
    }

    /// A batch ran and committed in `elapsed`.
    pub(crate) fn took(&self, elapsed: Duration) {
        self.took.add(elapsed);
    }

    /// A write queued at `queued` is answered now.
    pub(crate) fn answered(&self, queued: Instant) {
        self.answered.add(queued.elapsed());
    }

    pub(crate) fn read(&self) -> WriteBatches {
        WriteBatches {
            batches: self.batches.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            took: self.took.read(),
            answered: self.answered.read(),
        }
    }
}

/// The queue to the lanes.
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

/// What a lane's batches run with and hand on to the next (a kept connection), and how it
/// lets go of that when unused.
pub(crate) trait Slot: Default + Send + 'static {
    /// Called when the lane has had no job for [`IDLE`]: lets go of what has been unused
    /// for a while.
    fn release_idle(&mut self) {}
}

impl Slot for () {}

/// How long a lane waits for a job before it tells its slot it is idle.
const IDLE: Duration = Duration::from_secs(1);

/// How long a running batch holds back the next one.
pub(crate) const STALL: Duration = Duration::from_millis(25);

/// The batches running now, and a signal each time one ends.
#[derive(Default)]
struct Running {
    count: AtomicUsize,
    ended: Notify,
}

impl Running {
    /// Returns once no batch runs, or after `at_most`.
    async fn none(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, async {
            loop {
                let ended = self.ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if self.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                ended.await;
            }
        })
        .await;
    }
}

/// A batch counted as running until it is dropped (also when its handler panics).
struct Runs(Arc<Running>);

impl Runs {
    fn start(running: &Arc<Running>) -> Self {
        running.count.fetch_add(1, Ordering::AcqRel);
        Self(running.clone())
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

impl<J: Send + 'static, A: Send + 'static> Batcher<J, A> {
    /// Starts `lanes` lanes (at most that many batches run at once, see [`STALL`]), each
    /// running batches of at most `max` jobs with a slot of its own, counted in `tally`. The
    /// lanes end when every handle is dropped.
    #[cfg(test)]
    pub(crate) fn start<S, H, F>(lanes: usize, max: usize, tally: Arc<Tally>, handler: H) -> Self
    where
        S: Slot,
        H: Fn(S, Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = (S, Vec<Result<A, StoreError>>)> + Send + 'static,
    {
        Self::start_on(None, lanes, max, tally, handler)
    }

    /// [`Batcher::start`], the lanes and their batches on `thread` when given (the thread
    /// ends with the lanes), else on the runtime this is called from.
    pub(crate) fn start_on<S, H, F>(
        thread: Option<OwnThread>,
        lanes: usize,
        max: usize,
        tally: Arc<Tally>,
        handler: H,
    ) -> Self
    where
        S: Slot,
        H: Fn(S, Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = (S, Vec<Result<A, StoreError>>)> + Send + 'static,
    {
        let (queue, jobs) = mpsc::channel::<Queued<J, A>>(16 * max);
        let jobs = Arc::new(Mutex::new(jobs));
        let running = Arc::new(Running::default());
        let handler = Arc::new(handler);
        for _ in 0..lanes.max(1) {
            let lane = lane(
                jobs.clone(),
                running.clone(),
                max,
                tally.clone(),
                handler.clone(),
            );
            match &thread {
                Some(thread) => thread.spawn(lane),
                None => drop(tokio::spawn(lane)),
            }
        }
        Self { queue }
    }

    /// Queues `job` and waits for its answer.
    pub(crate) async fn run(&self, job: J) -> Result<A, StoreError> {
        let (reply, answer) = oneshot::channel();
        (self.queue.send((job, Instant::now(), reply)).await).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A thread with a runtime of its own (one thread, its own I/O and timers) for a store's
/// lanes: it runs until every lane started on it has ended.
pub(crate) struct OwnThread {
    handle: tokio::runtime::Handle,
    /// Each lane holds a clone; the thread ends once every clone is dropped.
    alive: mpsc::Sender<()>,
}

impl OwnThread {
    /// Starts the thread, named `name`; an error when the OS or tokio cannot.
    pub(crate) fn start(name: &str) -> std::io::Result<Self> {
        let (alive, mut ended) = mpsc::channel::<()>(1);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        // `None` once every lane (every sender) is gone.
                        rt.block_on(ended.recv());
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err));
                    }
                }
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("the lanes' thread ended at once"))??;
        Ok(Self { handle, alive })
    }

    /// Runs `task` on the thread, which lives at least as long as it.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let alive = self.alive.clone();
        drop(self.handle.spawn(async move {
            task.await;
            drop(alive);
        }));
    }

    /// The thread's runtime, to create there what its lanes use (a pool whose connections'
    /// sockets its I/O driver then watches).
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// One lane: the next batch, its run, its answers; again until the queue closes.
async fn lane<J, A, S, H, F>(
    jobs: Arc<Mutex<mpsc::Receiver<Queued<J, A>>>>,
    running: Arc<Running>,
    max: usize,
    tally: Arc<Tally>,
    handler: Arc<H>,
) where
    J: Send + 'static,
    A: Send + 'static,
    S: Slot,
    H: Fn(S, Vec<J>) -> F + Send + Sync + 'static,
    F: Future<Output = (S, Vec<Result<A, StoreError>>)> + Send + 'static,
{
    let mut slot = S::default();
    loop {
        let (batch, runs) = {
            let Ok(mut queue) = tokio::time::timeout(IDLE, jobs.lock()).await else {
                slot.release_idle();
                continue;
            };
            let first = match tokio::time::timeout(IDLE, queue.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    slot.release_idle();
                    continue;
                }
            };
            // Everything that comes while the running batch ends goes into this one.
            running.none(STALL).await;
            let mut batch = vec![first];
            while batch.len() < max {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            tally.add(batch.len());
            (batch, Runs::start(&running))
        };
        // The batch runs in a task of its own, which answers its callers: a handler that
        // panics loses its batch (its callers see the store as stopped) and its slot, not
        // the lane.
        let (handler, tally) = (handler.clone(), tally.clone());
        let run = tokio::spawn(async move {
            let _runs = runs;
            let (mut work, mut replies) = (Vec::new(), Vec::new());
            for (job, queued, reply) in batch {
                work.push(job);
                replies.push((queued, reply));
            }
            let started = Instant::now();
            let (slot, answers) = handler(slot, work).await;
            tally.took(started.elapsed());
            // A handler that answers fewer jobs than it was given leaves the rest with a
            // dropped reply: they see the store as stopped, not a wrong answer.
            for ((queued, reply), answer) in replies.into_iter().zip(answers) {
                tally.answered(queued);
                let _ = reply.send(answer);
            }
            slot
        });
        slot = run.await.unwrap_or_default();
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
        let batcher = Batcher::start(
            2,
            8,
            Default::default(),
            |slot: (), jobs: Vec<u32>| async move {
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
            },
        );
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

    /// Jobs that come while a batch runs wait for it and go into the next, whichever lane
    /// takes it: however many lanes, one batch runs at a time.
    #[tokio::test]
    async fn one_batch_runs_at_a_time_and_takes_what_came_meanwhile() {
        use std::sync::atomic::AtomicUsize;
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tally = Arc::new(Tally::default());
        let batcher = {
            let (running, most, batches) = (running.clone(), most.clone(), batches.clone());
            Batcher::start(4, 64, tally.clone(), move |slot: (), jobs: Vec<u32>| {
                let (running, most, batches) = (running.clone(), most.clone(), batches.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    batches.lock().unwrap().push(jobs.len());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    (slot, jobs.into_iter().map(Ok).collect())
                }
            })
        };
        let calls: Vec<_> = (0..200u32)
            .map(|j| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (j, batcher.run(j).await) })
            })
            .collect();
        for call in calls {
            let (j, answer) = call.await.unwrap();
            assert_eq!(answer.unwrap(), j);
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one batch at a time");
        let batches = batches.lock().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 200);
        assert!(
            batches.len() < 20,
            "jobs that wait are taken together: {batches:?}"
        );
        let tally = tally.read();
        assert_eq!(
            (tally.batches, tally.writes),
            (batches.len() as u64, 200),
            "the tally counts what ran"
        );
        // Each batch slept 5 ms: counted once, in a bucket over that; each write is
        // answered once, after at least its batch's run.
        let over = Timings::bucket(0.005);
        for (timings, count) in [(tally.took, tally.batches), (tally.answered, 200)] {
            assert_eq!(timings.count(), count, "{timings:?}");
            assert_eq!(timings.counts[..over].iter().sum::<u64>(), 0, "{timings:?}");
            assert!(timings.micros >= 5_000 * count, "{timings:?}");
        }
        assert!(
            tally.answered.micros >= tally.took.micros,
            "a write waits for its whole batch: {tally:?}"
        );
    }

    /// A batch that does not end (a row lock held elsewhere) holds up the next for STALL,
    /// not for as long as it runs.
    #[tokio::test]
    async fn a_stuck_batch_lets_the_next_start_beside_it() {
        let release = Arc::new(Notify::new());
        let batcher = {
            let release = release.clone();
            Batcher::start(2, 8, Default::default(), move |slot: (), jobs: Vec<u32>| {
                let release = release.clone();
                async move {
                    if jobs.contains(&0) {
                        release.notified().await;
                    }
                    (slot, jobs.into_iter().map(Ok).collect())
                }
            })
        };
        let stuck = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.run(0).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = std::time::Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(2), batcher.run(1)).await;
        assert_eq!(
            next.expect("the next batch ran beside the stuck one")
                .unwrap(),
            1
        );
        assert!(started.elapsed() >= STALL - Duration::from_millis(11));
        assert!(!stuck.is_finished());
        release.notify_one();
        assert_eq!(stuck.await.unwrap().unwrap(), 0);
    }

    /// On a thread of their own, the lanes and their batches run there, and the thread ends
    /// with them once every handle is dropped.
    #[tokio::test]
    async fn lanes_on_their_own_thread_run_there_and_end_with_the_handles() {
        let held = Arc::new(());
        let thread = OwnThread::start("ots-test-lanes").expect("a thread");
        let batcher = {
            let held = held.clone();
            Batcher::start_on(
                Some(thread),
                2,
                8,
                Default::default(),
                move |slot: (), jobs: Vec<u32>| {
                    let _held = held.clone();
                    async move {
                        let name = std::thread::current().name().map(str::to_owned);
                        (slot, jobs.iter().map(|_| Ok(name.clone())).collect())
                    }
                },
            )
        };
        let calls: Vec<_> = (0..20u32)
            .map(|j| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.run(j).await })
            })
            .collect();
        for call in calls {
            assert_eq!(
                call.await.unwrap().unwrap().as_deref(),
                Some("ots-test-lanes")
            );
        }
        assert!(Arc::strong_count(&held) > 1, "the lanes hold the handler");
        drop(batcher);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&held) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "the lanes ended and let go of their handler"
        );
    }

    #[tokio::test]
    async fn a_short_answer_is_an_error_not_a_hang() {
        let batcher: Batcher<u32, u32> = Batcher::start(
            1,
            8,
            Default::default(),
            |slot: (), _jobs: Vec<u32>| async move { (slot, Vec::new()) },
        );
        assert!(matches!(
            batcher.run(1).await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
