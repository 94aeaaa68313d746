//! The store's shares and reveals without a passphrase run on the writer's own connection
//! (rusqlite, on the writer's thread), not through sqlx's worker thread: `connect` gives the
//! group commit that connection for a database in a file, and its batches go there.

use ots_domain::SecretRepository;
use ots_store_contract::share_and_reveal;

mod common;

#[tokio::test]
async fn shares_and_reveals_run_on_the_writers_own_connection() {
    let (store, dir) = common::fresh_store("inline").await;
    assert_eq!(
        store.inline_batches(),
        Some(0),
        "the writer has its connection"
    );
    for _ in 0..10 {
        assert!(share_and_reveal(&store, 1_700_000_000).await);
    }
    // One after the other, each share and each reveal is a batch of its own.
    assert_eq!(store.inline_batches(), Some(20), "every batch ran inline");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
