//! The group-commit writer runs on a thread of its own while the store lives, and the thread
//! ends with the store. (One test in this binary: it counts the process's threads by name.)

use std::time::{Duration, Instant};

use ots_store_contract::share_and_reveal;

mod common;

/// This process's threads named `name` (Linux: `/proc/self/task/*/comm`).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[tokio::test]
async fn the_writer_has_a_thread_of_its_own_which_ends_with_the_store() {
    const NAME: &str = "ots-store-write";
    // Linux keeps 15 bytes of a thread's name: "ots-store-writer" reads as NAME.
    assert_eq!(threads_named(NAME), 0, "no store yet");
    let (store, dir) = common::fresh_store("thread").await;
    assert!(share_and_reveal(&store, 1_700_000_000).await);
    assert_eq!(threads_named(NAME), 1, "the writer's thread runs");
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named(NAME) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(threads_named(NAME), 0, "the thread ended with the store");
}
