//! The HTTP workers: one thread per core, each with a runtime of its own (one thread, its own
//! I/O and timers), each serving the connections dealt to it.
//!
//! Why not tokio's shared pool: there a task a worker wakes for itself (hyper wakes a
//! connection's task when its handler takes the body) goes into a queue the other worker is
//! woken to steal from, and stolen tasks carry their futures (several KiB each) to the other
//! core's cache. On two cores ots spent 15.0–16.9 µs of CPU on a share's or a reveal's
//! request on workers of their own against 17.6–18.3 on the pool, while a `status` request
//! moved less (10.1–11.4 against 11.1–11.3), and the in-memory store served 14–21% more
//! pairs a second; SQLite about 3% fewer, a write's answer coming back from the writer's
//! thread to the one worker that holds its connection (BENCHMARKS.md, change 52). A
//! connection here stays on the worker it was dealt to for its life.
//!
//! One accept loop, on the main runtime, deals new connections to the workers in turn, so
//! that each holds its share of keep-alive connections (`SO_REUSEPORT` would leave the split
//! to a hash of each connection's addresses, uneven over a few dozen). The workers are not pinned to CPUs: pinned, one of
//! them shares its core with the SQL stores' writer thread or lanes and cannot make room
//! for it (SQLite and Postgres lost 15–17% of their pairs a second when tried).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use poem::Endpoint;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

/// A connection dealt to a worker, taken off the accepting runtime (`into_std`) so that the
/// worker registers it with its own.
type Dealt = (std::net::TcpStream, SocketAddr);

/// The workers' threads, and what stops them.
pub struct Workers {
    hands: Vec<mpsc::UnboundedSender<Dealt>>,
    next: usize,
    stop: watch::Sender<bool>,
    /// One per worker, answered when its server has finished its in-flight requests.
    served: Vec<oneshot::Receiver<()>>,
    /// Ends the workers' threads; their runtimes drive the I/O of what they opened
    /// (pooled database connections among it) until then.
    release: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers serving `app`, which answer as bound to `local`; each finishes
    /// its in-flight requests within `grace` of [`Workers::stop`].
    pub fn start<E>(count: usize, app: E, local: SocketAddr, grace: Duration) -> Result<Self>
    where
        E: Endpoint + 'static,
    {
        let app = Arc::new(app);
        let (stop, stopped) = watch::channel(false);
        let (release, released) = watch::channel(false);
        let mut workers = Self {
            hands: Vec::with_capacity(count),
            next: 0,
            stop,
            served: Vec::with_capacity(count),
            release,
            threads: Vec::with_capacity(count),
        };
        for i in 0..count {
            let (hand, dealt) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting an HTTP worker's runtime")?;
            let app = app.clone();
            let mut stopped = stopped.clone();
            let mut released = released.clone();
            let (done, served) = oneshot::channel();
            let thread = std::thread::Builder::new()
                .name(format!("ots-http-{i}"))
                .spawn(move || {
                    let acceptor = Dealer {
                        dealt,
                        local: LocalAddr(local.into()),
                    };
                    runtime.block_on(async move {
                        let server = poem::Server::new_with_acceptor(acceptor);
                        let stop = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        if let Err(err) = server
                            .run_with_graceful_shutdown(app, stop, Some(grace))
                            .await
                        {
                            warn!(worker = i, error = %err, "an HTTP worker stopped");
                        }
                        let _ = done.send(());
                        let _ = released.wait_for(|release| *release).await;
                    });
                })
                .context("starting an HTTP worker's thread")?;
            workers.hands.push(hand);
            workers.served.push(served);
            workers.threads.push(thread);
        }
        info!(workers = count, "HTTP workers started");
        Ok(workers)
    }

    /// Gives `stream` to the next worker in turn.
    pub fn deal(&mut self, stream: tokio::net::TcpStream, remote: SocketAddr) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                warn!(error = %err, "an accepted connection could not be handed over");
                return;
            }
        };
        let i = self.next % self.hands.len();
        self.next = self.next.wrapping_add(1);
        // A worker whose thread ended (it logged why) drops the connection: the client sees
        // it closed and retries.
        let _ = self.hands[i].send((stream, remote));
    }

    /// Stops taking connections and lets each worker finish its in-flight requests (within
    /// the grace), then runs `then` (closing the stores) while the workers' runtimes still
    /// drive what was opened on them; returns when every worker's thread has ended.
    pub async fn stop(self, then: impl std::future::Future<Output = ()>) {
        let Self {
            hands,
            stop,
            served,
            release,
            threads,
            ..
        } = self;
        drop(hands);
        let _ = stop.send(true);
        for served in served {
            let _ = served.await;
        }
        then.await;
        let _ = release.send(true);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        if let Err(err) = joined {
            warn!(error = %err, "waiting for the HTTP workers failed");
        }
    }
}

/// Accepts on the main runtime and deals each connection to a worker until `signal`; an
/// error of `accept` (out of file descriptors, say) is logged and retried after a pause,
/// not spun on.
pub async fn accept_until(
    listener: tokio::net::TcpListener,
    workers: &mut Workers,
    signal: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => workers.deal(stream, remote),
                Err(err) => {
                    warn!(error = %err, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// The acceptor a worker's poem server reads: the connections dealt to this worker.
struct Dealer {
    dealt: mpsc::UnboundedReceiver<Dealt>,
    local: LocalAddr,
}

impl Acceptor for Dealer {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        vec![self.local.clone()]
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        loop {
            let Some((stream, remote)) = self.dealt.recv().await else {
                // No more connections come: wait for the stop, which poem selects beside
                // this (an error here would only be retried at once, in a spin).
                return std::future::pending().await;
            };
            match tokio::net::TcpStream::from_std(stream) {
                Ok(io) => {
                    return Ok((
                        io,
                        self.local.clone(),
                        RemoteAddr(remote.into()),
                        poem::http::uri::Scheme::HTTP,
                    ))
                }
                Err(err) => warn!(error = %err, "a dealt connection could not be registered"),
            }
        }
    }
}

/// How many workers to start: `configured`, or one per CPU the process may run on.
pub fn count(configured: Option<usize>) -> usize {
    configured
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_defaults_to_the_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(count(None), cpus);
        assert_eq!(count(Some(0)), cpus);
        assert_eq!(count(Some(3)), 3);
    }

    /// Connections are dealt in turn, and each worker answers on the address it was given;
    /// after the stop, nothing answers and the threads have ended.
    #[tokio::test]
    async fn deals_connections_to_every_worker_and_stops() {
        use std::sync::Mutex;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let app = poem::endpoint::make_sync({
            let seen = seen.clone();
            move |req: poem::Request| {
                seen.lock()
                    .unwrap()
                    .insert(std::thread::current().name().unwrap_or("").to_owned());
                format!("{}", req.remote_addr())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut workers = Workers::start(2, app, addr, Duration::from_secs(1)).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let accepting = tokio::spawn(async move {
            accept_until(listener, &mut workers, async {
                let _ = stop_rx.await;
            })
            .await;
            workers.stop(async {}).await;
        });
        for _ in 0..4 {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mine = conn.local_addr().unwrap();
            conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(
                answer.ends_with(&format!("socket://{mine}")),
                "the remote address is the client's: {answer}"
            );
        }
        assert_eq!(
            *seen.lock().unwrap(),
            ["ots-http-0".to_owned(), "ots-http-1".to_owned()].into(),
            "both workers served"
        );
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), accepting)
            .await
            .expect("the workers stop")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
