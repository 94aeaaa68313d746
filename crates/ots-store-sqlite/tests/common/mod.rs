//! A fresh SQLite database in a directory of its own, for the tests that need a real file.

use std::path::PathBuf;

use ots_domain::{random_string, SystemRng, KEY_ALPHABET};
use ots_store_sqlite::SqliteStore;

/// A migrated store on a new file, and its directory (the test removes it when done).
pub async fn fresh_store(what: &str) -> (SqliteStore, PathBuf) {
    let name = random_string(&SystemRng::new(), 12, KEY_ALPHABET).unwrap();
    let dir = std::env::temp_dir().join(format!("ots-sqlite-{what}-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ots.db");
    let store = ots_store_sqlite::connect(&format!("sqlite://{}", db.display()), true)
        .await
        .expect("open a fresh SQLite database");
    (store, dir)
}
