//! The group-commit writer keeps SQLite's one writer connection across batches while writes
//! are queued, but gives it back often enough that the writes which do not go through it
//! (the sweep, the outbox, accounts) are not starved by a steady stream of shares and reveals.
//! (They take the same connection, with the pool's ten-second acquire timeout: a writer that
//! kept it for as long as its queue was never empty would make them fail.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ots_domain::SecretRepository;
use ots_store_contract::share_and_reveal;

mod common;

const NOW: i64 = 1_700_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writes_get_the_connection_beside_a_steady_stream_of_pairs() {
    let (store, dir) = common::fresh_store("writer").await;
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (store, stop, pairs) = (store.clone(), stop.clone(), pairs.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let revealed = share_and_reveal(store.as_ref(), NOW).await;
                    assert!(revealed, "each secret is revealed once");
                    pairs.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the stream fill the writer's queue first.
    while pairs.load(Ordering::Relaxed) < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = pairs.load(Ordering::Relaxed);
    for _ in 0..20 {
        store
            .sweep_expired(NOW, 100)
            .await
            .expect("a sweep gets the writer connection beside the stream");
    }
    let during = pairs.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        during > 0,
        "the stream of pairs went on while the sweeps ran (else the test showed nothing)"
    );
}
