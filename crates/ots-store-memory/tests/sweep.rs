//! The in-memory store's sweep over more records than it looks at in one hold of its lock,
//! and its burn, which finds the secret through the metadata.

use ots_domain::{CustId, MetadataState, SecretRepository, UnixTime};
use ots_store_contract::record;
use ots_store_memory::MemoryStore;

const T0: UnixTime = 1_700_000_000;

/// More than three stretches of the sweep (4096 record slots each).
const PAIRS: usize = 3 * 4096 + 517;

#[tokio::test]
async fn sweeps_go_on_where_the_last_stopped_and_take_every_expired_row_and_no_other() {
    let store = MemoryStore::new();
    let anon = CustId::anonymous();
    let (mut short, mut long) = (Vec::new(), Vec::new());
    for i in 0..PAIRS {
        let ttl = if i % 3 == 0 { 60 } else { 3600 };
        let (secret, metadata) = record(&anon, T0, ttl, false);
        store.create(&secret, &metadata, None).await.unwrap();
        if ttl == 60 { &mut short } else { &mut long }.push((secret, metadata));
    }
    // Some revealed: their metadata stays, with no secret to sweep.
    for (secret, _) in long.iter().step_by(7) {
        assert!(store.consume(&secret.id, T0 + 1).await.unwrap());
    }

    // As the use case sweeps: again while a batch comes back full.
    let sweep_all = |now: UnixTime| {
        let store = &store;
        async move {
            let (mut calls, mut secrets, mut metadata) = (0, 0, 0);
            loop {
                let n = store.sweep_expired(now, 1000).await.unwrap();
                assert!(n.secrets <= 1000 && n.metadata <= 1000, "at most a batch");
                calls += 1;
                secrets += n.secrets;
                metadata += n.metadata;
                if n.secrets < 1000 && n.metadata < 1000 {
                    return (calls, secrets, metadata);
                }
            }
        }
    };

    // At T0+60 the short secrets are expired, their metadata (2×ttl) not yet.
    let (calls, secrets, metadata) = sweep_all(T0 + 60).await;
    assert_eq!((secrets, metadata), (short.len() as u64, 0));
    assert_eq!(
        calls,
        short.len() / 1000 + 1,
        "one call a full batch, then a short one"
    );
    for (secret, metadata) in &short {
        assert!(store.find_secret(&secret.id, T0).await.unwrap().is_none());
        assert!(store
            .find_metadata(&metadata.id, T0)
            .await
            .unwrap()
            .is_some());
        assert!(
            store.burn(&metadata.id, T0).await.unwrap().is_none(),
            "a swept secret cannot be burned"
        );
    }
    for (i, (secret, metadata)) in long.iter().enumerate() {
        let revealed = i % 7 == 0;
        assert_eq!(
            store.find_secret(&secret.id, T0).await.unwrap().is_some(),
            !revealed
        );
        assert!(store
            .find_metadata(&metadata.id, T0)
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(sweep_all(T0 + 60).await, (1, 0, 0), "nothing left to take");

    // At T0+120 the short metadata goes; the long rows stay.
    let (_, secrets, metadata) = sweep_all(T0 + 120).await;
    assert_eq!((secrets, metadata), (0, short.len() as u64));
    for (_, metadata) in &short {
        assert!(store
            .find_metadata(&metadata.id, T0)
            .await
            .unwrap()
            .is_none());
    }

    // A burn finds a live secret through its metadata, once.
    let (secret, metadata) = &long[1];
    let burned = store.burn(&metadata.id, T0 + 120).await.unwrap().unwrap();
    assert_eq!(burned.state, MetadataState::Burned);
    assert!(store.find_secret(&secret.id, T0).await.unwrap().is_none());
    assert!(store.burn(&metadata.id, T0 + 120).await.unwrap().is_none());

    // At T0+7200 everything left goes, secrets with their metadata.
    let (_, secrets, metadata) = sweep_all(T0 + 7200).await;
    let unrevealed = long.iter().enumerate().filter(|(i, _)| i % 7 != 0).count() - 1;
    assert_eq!((secrets, metadata), (unrevealed as u64, long.len() as u64));
    let (secrets, metadata, mail) = store.dump();
    assert!(secrets.is_empty() && metadata.is_empty() && mail.is_empty());
}
