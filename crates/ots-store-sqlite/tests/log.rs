//! The write-ahead log stays short under sustained writes: checkpoints run on a connection of
//! their own beside the writer, and the log restarts from its beginning once they caught up.
//! (When only the other connection checkpointed, the log grew by every batch for as long as
//! writes kept coming: 830 MB in a ten-second benchmark.)

use ots_domain::{CustId, KeyId, SecretRepository};
use ots_store_contract::record;

mod common;

const NOW: i64 = 1_700_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_stays_short_under_sustained_writes() {
    let (store, dir) = common::fresh_store("log").await;
    let store = std::sync::Arc::new(store);
    let (waves, per_wave, value) = (120, 64, 4096);
    for _ in 0..waves {
        let pairs: Vec<_> = (0..per_wave)
            .map(|_| {
                let store = store.clone();
                let (mut secret, metadata) = record(&CustId::anonymous(), NOW, 3600, false);
                secret.ciphertext = vec![7; value];
                tokio::spawn(async move {
                    store
                        .create(&secret, &metadata, None)
                        .await
                        .expect("create");
                    store
                        .consume_unprotected(&secret.id, &[KeyId([1, 2, 3, 4])], NOW + 1)
                        .await
                        .expect("reveal")
                        .is_some()
                })
            })
            .collect();
        for pair in pairs {
            assert!(pair.await.expect("task"), "each secret is revealed once");
        }
    }
    let log = std::fs::metadata(dir.join("ots.db-wal")).map_or(0, |m| m.len());
    let written = (waves * per_wave * value) as u64;
    let _ = std::fs::remove_dir_all(&dir);
    // Each value is written once and zeroed once (secure_delete): a log that never restarts
    // holds at least twice what was written.
    assert!(
        log < written / 2,
        "the log holds {log} bytes after {written} bytes of values were written and revealed"
    );
}
