//! One test suite, written once against the ports, that every store adapter must pass.
//!
//! An adapter's test file calls [`contract_suite!`] with an async factory returning
//! `Option<Fixture<S>>` (`None`: the backend is not available here, and the factory has said
//! so loudly). Each case gets a fresh store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ots_domain::*;

mod guesses;

pub use guesses::parallel_guesses_run_at_most_max_checks;

/// A fresh store for one test, and what to do after it.
pub struct Fixture<S> {
    pub store: Arc<S>,
    pub teardown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S> Fixture<S> {
    pub fn new(store: S) -> Self {
        Self {
            store: Arc::new(store),
            teardown: None,
        }
    }
}

/// Generates one `#[tokio::test]` per contract case for the store built by `$factory`.
#[macro_export]
macro_rules! contract_suite {
    ($factory:expr) => {
        $crate::contract_suite!(@cases $factory;
            create_then_find,
            consume_reveals_exactly_once,
            concurrent_consumes_have_one_winner,
            consume_unprotected_takes_only_what_opens_without_a_passphrase,
            concurrent_one_step_reveals_have_one_winner,
            concurrent_distinct_pairs_keep_to_their_own,
            a_share_with_mail_is_stored_whole,
            concurrent_shares_fail_alone,
            mixed_writes_fail_alone_and_keep_to_their_own,
            a_reveal_under_other_key_ids_takes_nothing_from_one_beside_it,
            tries_are_taken_then_exhausted,
            tries_are_bounded_under_concurrency,
            parallel_guesses_run_at_most_max_checks,
            burn_only_new_secrets,
            expiry_is_enforced_at_read_time,
            sweep_deletes_only_expired_rows_in_batches,
            recent_is_per_customer_newest_first,
            recent_orders_one_second_by_insertion,
            metadata_outlives_its_secret,
            purge_customer_forgets_everything,
            customers_and_tokens,
            outbox_leases_retries_and_forgets_mail,
            ping_answers,
            check_value_keeps_the_first_until_replaced,
            every_value_scheme_round_trips
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(fixture) = $factory.await else { return };
                $crate::$case(fixture.store.clone()).await;
                if let Some(teardown) = fixture.teardown {
                    teardown.await;
                }
            }
        )*
    };
}

pub(crate) const T0: UnixTime = 1_700_000_000;

fn key<K>(parse: fn(&str) -> Option<K>) -> K {
    let raw = random_string(&SystemRng::new(), KEY_LEN, KEY_ALPHABET).expect("CSPRNG");
    parse(&raw).expect("generated keys parse")
}

/// A secret and its metadata as share would store them (the sealed bytes are opaque here).
pub fn record(
    custid: &CustId,
    created: UnixTime,
    ttl: i64,
    passphrase: bool,
) -> (StoredSecret, Metadata) {
    let id = SecretId::of(&key(SecretKey::parse));
    let metadata_id = MetadataId::of(&key(MetadataKey::parse));
    let secret = StoredSecret {
        id,
        metadata_id,
        ciphertext: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
        nonce: [3; 12],
        salt: [4; 16],
        scheme: match passphrase {
            true => ValueScheme::Sealed {
                key_id: KeyId([1, 2, 3, 4]),
                passphrase: Some(PassphraseParams {
                    cost: 4,
                    salt: [6; 16],
                }),
            },
            false => ValueScheme::Expanded {
                key_id: KeyId([1, 2, 3, 4]),
            },
        },
        failed_tries: 0,
        created,
        expires_at: created + ttl,
    };
    let metadata = Metadata {
        id: metadata_id,
        custid: custid.clone(),
        sealed_secret_key: Some(vec![9; 40]),
        sealed_key: (!custid.is_anonymous()).then(|| vec![8; 40]),
        ttl,
        state: MetadataState::New,
        created,
        updated: created,
        received: None,
        burned: None,
        recipients: vec!["ja***@ex***.com".into()],
        passphrase_required: passphrase,
        secret_expires_at: created + ttl,
        expires_at: created + 2 * ttl,
    };
    (secret, metadata)
}

/// Shares an anonymous record made at `now` and reveals it without a passphrase a second
/// later, as one share+reveal pair of the bench does; says whether the reveal took it.
pub async fn share_and_reveal<S: SecretRepository + ?Sized>(store: &S, now: UnixTime) -> bool {
    let (secret, metadata) = record(&CustId::anonymous(), now, 3600, false);
    store
        .create(&secret, &metadata, None)
        .await
        .expect("create");
    store
        .consume_unprotected(&secret.id, &[KeyId([1, 2, 3, 4])], now + 1)
        .await
        .expect("reveal")
        .is_some()
}

fn cust(name: &str) -> CustId {
    CustId::parse(name).expect("valid custid")
}

async fn stored<S: SecretRepository>(
    store: &S,
    custid: &CustId,
    created: UnixTime,
    ttl: i64,
) -> (StoredSecret, Metadata) {
    let (secret, metadata) = record(custid, created, ttl, false);
    store
        .create(&secret, &metadata, None)
        .await
        .expect("create");
    (secret, metadata)
}

pub async fn create_then_find<S: SecretRepository>(store: Arc<S>) {
    let (secret, metadata) = record(&CustId::anonymous(), T0, 3600, true);
    store.create(&secret, &metadata, None).await.unwrap();
    let found = store
        .find_secret(&secret.id, T0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, secret, "the secret comes back byte for byte");
    let found = store
        .find_metadata(&metadata.id, T0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, metadata, "the metadata comes back field for field");
    // A secret key that derives from the metadata key is kept as nothing: an empty value,
    // which must come back empty, not absent (absent means received or burned).
    let (secret, mut metadata) = record(&CustId::anonymous(), T0, 3600, false);
    metadata.sealed_secret_key = Some(Vec::new());
    store.create(&secret, &metadata, None).await.unwrap();
    let found = store.find_metadata(&metadata.id, T0 + 1).await.unwrap();
    assert_eq!(found.and_then(|m| m.sealed_secret_key), Some(Vec::new()));
    // Keys that were never stored are simply absent.
    assert!(store
        .find_secret(&SecretId::of(&key(SecretKey::parse)), T0)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .find_metadata(&MetadataId::of(&key(MetadataKey::parse)), T0)
        .await
        .unwrap()
        .is_none());
    // Finding changes nothing.
    assert_eq!(
        store
            .find_secret(&secret.id, T0 + 2)
            .await
            .unwrap()
            .unwrap(),
        secret
    );
}

pub async fn consume_reveals_exactly_once<S: SecretRepository>(store: Arc<S>) {
    let (secret, metadata) = stored(&*store, &CustId::anonymous(), T0, 3600).await;
    assert!(store.consume(&secret.id, T0 + 10).await.unwrap());
    assert!(
        !store.consume(&secret.id, T0 + 11).await.unwrap(),
        "a second reveal gets nothing"
    );
    assert!(
        store
            .find_secret(&secret.id, T0 + 11)
            .await
            .unwrap()
            .is_none(),
        "the ciphertext is gone"
    );
    let md = store
        .find_metadata(&metadata.id, T0 + 12)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(md.state, MetadataState::Received);
    assert_eq!(md.received, Some(T0 + 10));
    assert_eq!(md.updated, T0 + 10);
    assert_eq!(md.sealed_secret_key, None);
    assert!(!store
        .consume(&SecretId::of(&key(SecretKey::parse)), T0)
        .await
        .unwrap());
}

pub async fn concurrent_consumes_have_one_winner<S: SecretRepository + 'static>(store: Arc<S>) {
    for round in 0..2 {
        let (secret, metadata) = stored(&*store, &CustId::anonymous(), T0, 3600).await;
        let tasks: Vec<_> = (0..256)
            .map(|_| {
                let (store, key) = (store.clone(), secret.id);
                tokio::spawn(async move { store.consume(&key, T0 + 5).await })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            if task.await.expect("task").expect("consume") {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one of 256 reveals wins");
        let md = store
            .find_metadata(&metadata.id, T0 + 6)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(md.state, MetadataState::Received);
    }
}

const HELD: KeyId = KeyId([1, 2, 3, 4]);

/// What `consume_unprotected` takes.
async fn take<S: SecretRepository>(
    store: &S,
    id: &SecretId,
    key_ids: &[KeyId],
    now: UnixTime,
) -> Option<StoredSecret> {
    store.consume_unprotected(id, key_ids, now).await.unwrap()
}

/// Whether the secret is still there.
async fn waits<S: SecretRepository>(store: &S, id: &SecretId, now: UnixTime) -> bool {
    store.find_secret(id, now).await.unwrap().is_some()
}

pub async fn consume_unprotected_takes_only_what_opens_without_a_passphrase<S: SecretRepository>(
    store: Arc<S>,
) {
    let (secret, metadata) = stored(&*store, &CustId::anonymous(), T0, 3600).await;
    // Sealed under a master secret this process does not hold: left for the long way.
    let other = KeyId([9, 9, 9, 9]);
    assert_eq!(take(&*store, &secret.id, &[other], T0 + 1).await, None);
    assert!(waits(&*store, &secret.id, T0 + 1).await);
    let taken = take(&*store, &secret.id, &[other, HELD], T0 + 10).await;
    assert_eq!(
        taken.as_ref(),
        Some(&secret),
        "the row comes back byte for byte"
    );
    let again = take(&*store, &secret.id, &[HELD], T0 + 11).await;
    assert_eq!(again, None, "a second reveal gets nothing");
    assert!(!store.consume(&secret.id, T0 + 11).await.unwrap());
    let md = store
        .find_metadata(&metadata.id, T0 + 12)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (md.state, md.received, md.updated, md.sealed_secret_key),
        (MetadataState::Received, Some(T0 + 10), T0 + 10, None)
    );

    // What earlier releases wrote without a passphrase is taken the same way.
    let (mut older, older_md) = record(&CustId::anonymous(), T0, 3600, false);
    older.scheme = ValueScheme::Sealed {
        key_id: HELD,
        passphrase: None,
    };
    store.create(&older, &older_md, None).await.unwrap();
    assert_eq!(take(&*store, &older.id, &[other], T0 + 1).await, None);
    assert_eq!(
        take(&*store, &older.id, &[HELD], T0 + 1).await.as_ref(),
        Some(&older)
    );

    // A passphrase, or an expired secret: nothing is taken.
    let (guarded, guarded_md) = record(&CustId::anonymous(), T0, 3600, true);
    store.create(&guarded, &guarded_md, None).await.unwrap();
    assert_eq!(take(&*store, &guarded.id, &[HELD], T0 + 1).await, None);
    assert!(waits(&*store, &guarded.id, T0 + 1).await);
    let (old, _) = stored(&*store, &CustId::anonymous(), T0, 60).await;
    assert_eq!(take(&*store, &old.id, &[HELD], T0 + 61).await, None);
    assert_eq!(
        take(&*store, &SecretId::of(&key(SecretKey::parse)), &[HELD], T0).await,
        None
    );
}

/// One-step reveals race each other and plain consumes: one caller, whichever, wins.
pub async fn concurrent_one_step_reveals_have_one_winner<S: SecretRepository + 'static>(
    store: Arc<S>,
) {
    for round in 0..2 {
        let (secret, metadata) = stored(&*store, &CustId::anonymous(), T0, 3600).await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (store, key) = (store.clone(), secret.id);
                tokio::spawn(async move {
                    if i % 4 == 0 {
                        store.consume(&key, T0 + 5).await.unwrap()
                    } else {
                        let taken = store.consume_unprotected(&key, &[HELD], T0 + 5).await;
                        taken.unwrap().is_some()
                    }
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += u32::from(task.await.expect("task"));
        }
        assert_eq!(winners, 1, "round {round}: exactly one of 200 reveals wins");
        let md = store
            .find_metadata(&metadata.id, T0 + 6)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(md.state, MetadataState::Received);
    }
}

/// Many concurrent shares (some with mail) and then two concurrent one-step reveals of each,
/// mixed with reveals of unknown keys: every share and mail is stored, every secret goes to
/// exactly one of its two callers byte for byte, no caller gets another's row, and every
/// metadata record is marked received. (A store that merges concurrent writes into one
/// statement must still answer each caller with its own row.)
pub async fn concurrent_distinct_pairs_keep_to_their_own<S: SecretRepository + Outbox + 'static>(
    store: Arc<S>,
) {
    let before = store.mail_backlog().await.unwrap();
    let batches_before = store.write_batches();
    let shares: Vec<_> = (0..150)
        .map(|i| {
            let store = store.clone();
            let (secret, metadata) = record(&cust("alice"), T0, 3600, false);
            tokio::spawn(async move {
                let mail = (i % 3 == 0).then(|| mail_for(&metadata, "x", T0));
                store
                    .create(&secret, &metadata, mail.as_ref())
                    .await
                    .expect("create");
                (secret, metadata)
            })
        })
        .collect();
    let mut records = Vec::new();
    for share in shares {
        records.push(share.await.expect("task"));
    }
    assert_eq!(store.mail_backlog().await.unwrap(), before + 50);
    let mut reveals = Vec::new();
    for (n, (secret, _)) in records.iter().enumerate() {
        for _ in 0..2 {
            let (store, id) = (store.clone(), secret.id);
            reveals.push(tokio::spawn(async move {
                (
                    n,
                    store
                        .consume_unprotected(&id, &[HELD], T0 + 5)
                        .await
                        .unwrap(),
                )
            }));
        }
        if n % 10 == 0 {
            let store = store.clone();
            reveals.push(tokio::spawn(async move {
                let unknown = SecretId::of(&key(SecretKey::parse));
                (
                    usize::MAX,
                    store
                        .consume_unprotected(&unknown, &[HELD], T0 + 5)
                        .await
                        .unwrap(),
                )
            }));
        }
    }
    let mut wins = vec![0u32; records.len()];
    for reveal in reveals {
        let (n, taken) = reveal.await.expect("task");
        if n == usize::MAX {
            assert_eq!(taken, None, "an unknown key opens nothing");
            continue;
        }
        if let Some(taken) = taken {
            assert_eq!(taken, records[n].0, "each caller gets its own row");
            wins[n] += 1;
        }
    }
    assert!(
        wins.iter().all(|w| *w == 1),
        "each secret exactly once: {wins:?}"
    );
    if let (Some(before), Some(after)) = (batches_before, store.write_batches()) {
        // 150 shares, two reveals of each and 15 of unknown keys, each counted once.
        let (batches, writes) = (after.batches - before.batches, after.writes - before.writes);
        assert_eq!(writes, 150 + 300 + 15, "every write is counted once");
        assert!(
            (1..writes).contains(&batches),
            "concurrent writes share batches: {writes} writes in {batches}"
        );
    }
    for md in revealed(&*store, &records).await {
        assert_eq!(
            (md.state, md.received),
            (MetadataState::Received, Some(T0 + 5))
        );
    }
}

/// Each of `records` after its reveal: its secret gone, its metadata as the store now has it.
async fn revealed<S: SecretRepository + ?Sized>(
    store: &S,
    records: &[(StoredSecret, Metadata)],
) -> Vec<Metadata> {
    let mut now = Vec::new();
    for (secret, metadata) in records {
        assert!(store
            .find_secret(&secret.id, T0 + 6)
            .await
            .unwrap()
            .is_none());
        now.push(
            store
                .find_metadata(&metadata.id, T0 + 6)
                .await
                .unwrap()
                .expect("metadata outlives its secret"),
        );
    }
    now
}

/// A share with a recipient stores the secret, the metadata and the mail together, and a
/// share whose key is taken stores none of them.
pub async fn a_share_with_mail_is_stored_whole<S: SecretRepository + Outbox>(store: Arc<S>) {
    let (secret, metadata) = record(&cust("alice"), T0, 3600, false);
    let mail = OutboxMail {
        id: random_string(&SystemRng::new(), 20, KEY_ALPHABET).unwrap(),
        metadata_id: metadata.id,
        sealed_to: vec![7; 40],
        from_custid: cust("alice"),
        sealed_secret_key: vec![6; 40],
        attempts: 0,
        next_attempt_at: T0,
    };
    store.create(&secret, &metadata, Some(&mail)).await.unwrap();
    assert_eq!(store.mail_backlog().await.unwrap(), 1);
    assert!(store.find_secret(&secret.id, T0).await.unwrap().is_some());
    // The same metadata key again: a conflict, and nothing of the second share is kept.
    let (mut other, mut other_md) = record(&cust("alice"), T0, 3600, false);
    other_md.id = metadata.id;
    other.metadata_id = metadata.id;
    let mail2 = OutboxMail {
        id: random_string(&SystemRng::new(), 20, KEY_ALPHABET).unwrap(),
        ..mail.clone()
    };
    let err = store.create(&other, &other_md, Some(&mail2)).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert!(store.find_secret(&other.id, T0).await.unwrap().is_none());
    assert_eq!(store.mail_backlog().await.unwrap(), 1);
}

/// Of many concurrent shares, those that conflict fail and leave no trace, and every other
/// one is stored (a store that commits writes in groups must keep them apart).
pub async fn concurrent_shares_fail_alone<S: SecretRepository + 'static>(store: Arc<S>) {
    let (first, first_md) = record(&CustId::anonymous(), T0, 3600, false);
    store.create(&first, &first_md, None).await.unwrap();
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let store = store.clone();
            let (mut secret, mut metadata) = record(&CustId::anonymous(), T0, 3600, false);
            if i % 6 == 0 {
                // Same metadata key as `first`: must conflict.
                metadata.id = first_md.id;
                secret.metadata_id = first_md.id;
            }
            tokio::spawn(async move {
                let result = store.create(&secret, &metadata, None).await;
                (i, secret.id, result)
            })
        })
        .collect();
    let (mut stored, mut conflicts) = (0, 0);
    for task in tasks {
        let (i, id, result) = task.await.expect("task");
        let found = store.find_secret(&id, T0).await.unwrap().is_some();
        if i % 6 == 0 {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
            assert!(!found, "a failed share leaves nothing");
            conflicts += 1;
        } else {
            result.expect("create");
            assert!(found, "every other share is stored");
            stored += 1;
        }
    }
    assert_eq!((stored, conflicts), (100, 20));
    assert!(store.find_secret(&first.id, T0).await.unwrap().is_some());
}

/// Shares, some of them conflicting, and one-step reveals of earlier shares, some under a
/// key id this process does not hold, all at once: a store that merges shares and reveals
/// into one statement must keep a conflict to its own share, give every secret to exactly
/// one of its askers byte for byte, and take nothing it was not asked to open.
pub async fn mixed_writes_fail_alone_and_keep_to_their_own<S: SecretRepository + 'static>(
    store: Arc<S>,
) {
    let (first, first_md) = record(&CustId::anonymous(), T0, 3600, false);
    store.create(&first, &first_md, None).await.unwrap();
    let mut earlier = Vec::new();
    for _ in 0..60 {
        earlier.push(stored(&*store, &CustId::anonymous(), T0, 3600).await);
    }
    let other = KeyId([9, 9, 9, 9]);
    enum Done {
        Shared(usize, SecretId, Result<(), StoreError>),
        Revealed(usize, Option<StoredSecret>),
        Refused(Option<StoredSecret>),
    }
    let mut tasks = Vec::new();
    for (i, (secret, _)) in earlier.iter().enumerate() {
        let id = secret.id;
        let asker = store.clone();
        tasks.push(tokio::spawn(async move {
            let taken = asker.consume_unprotected(&id, &[HELD], T0 + 5).await;
            Done::Revealed(i, taken.unwrap())
        }));
        if i % 3 == 0 {
            let (store, secret) = (store.clone(), secret.clone());
            tasks.push(tokio::spawn(async move {
                let taken = store
                    .consume_unprotected(&secret.id, &[other], T0 + 5)
                    .await;
                Done::Refused(taken.unwrap())
            }));
        }
        let store = store.clone();
        let (mut secret, mut metadata) = record(&CustId::anonymous(), T0, 3600, false);
        if i % 6 == 0 {
            metadata.id = first_md.id;
            secret.metadata_id = first_md.id;
        }
        tasks.push(tokio::spawn(async move {
            let result = store.create(&secret, &metadata, None).await;
            Done::Shared(i, secret.id, result)
        }));
    }
    let (mut wins, mut stored_shares) = (vec![0u32; earlier.len()], 0);
    for task in tasks {
        match task.await.expect("task") {
            Done::Shared(i, id, result) => {
                let found = store.find_secret(&id, T0).await.unwrap().is_some();
                if i % 6 == 0 {
                    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
                    assert!(!found, "a conflicting share leaves nothing");
                } else {
                    result.expect("create");
                    assert!(found, "every other share is stored");
                    stored_shares += 1;
                }
            }
            Done::Revealed(i, taken) => {
                let taken = taken.expect("each secret goes to its one asker under HELD");
                assert_eq!(taken, earlier[i].0, "each caller gets its own row");
                wins[i] += 1;
            }
            Done::Refused(taken) => assert_eq!(taken, None, "nothing opens under another id"),
        }
    }
    assert_eq!(stored_shares, 50);
    assert!(wins.iter().all(|w| *w == 1), "{wins:?}");
    for md in revealed(&*store, &earlier).await {
        assert_eq!(md.state, MetadataState::Received);
    }
    assert!(store.find_secret(&first.id, T0).await.unwrap().is_some());
}

/// Reveals of the same secrets under two sets of key ids at once, the one that cannot open
/// them asked first: a store that merges reveals must hand each secret to the asker whose key
/// ids open it, never to one beside it in the same batch that asked the same key first.
/// (On SQLite such a batch deletes each set's keys in a statement of its own; the rows taken
/// were once handed out by key alone.)
pub async fn a_reveal_under_other_key_ids_takes_nothing_from_one_beside_it<
    S: SecretRepository + 'static,
>(
    store: Arc<S>,
) {
    let other = KeyId([9, 9, 9, 9]);
    let mut secrets = Vec::new();
    for _ in 0..40 {
        secrets.push(stored(&*store, &CustId::anonymous(), T0, 3600).await.0);
    }
    let mut tasks = Vec::new();
    for secret in &secrets {
        for key_ids in [other, HELD] {
            let (store, id) = (store.clone(), secret.id);
            tasks.push(tokio::spawn(async move {
                let taken = store.consume_unprotected(&id, &[key_ids], T0 + 5).await;
                (key_ids, taken.expect("reveal"))
            }));
        }
    }
    for (task, i) in tasks.into_iter().zip(0..) {
        let (key_ids, taken) = task.await.expect("task");
        match key_ids == HELD {
            true => assert_eq!(taken.as_ref(), Some(&secrets[i / 2]), "the opener gets it"),
            false => assert_eq!(taken, None, "nothing goes to key ids that cannot open it"),
        }
    }
}

pub async fn tries_are_taken_then_exhausted<S: SecretRepository>(store: Arc<S>) {
    let (secret, metadata) = record(&CustId::anonymous(), T0, 3600, true);
    store.create(&secret, &metadata, None).await.unwrap();
    let take = |at| {
        let (store, key) = (store.clone(), secret.id);
        async move { store.take_try(&key, 3, at).await.unwrap() }
    };
    assert_eq!(take(T0 + 1).await, TryTaken::Taken { left: 2 });
    assert_eq!(take(T0 + 2).await, TryTaken::Taken { left: 1 });
    let found = store
        .find_secret(&secret.id, T0 + 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.failed_tries, 2, "tries are stored with the secret");
    assert_eq!(take(T0 + 3).await, TryTaken::Taken { left: 0 });
    assert_eq!(take(T0 + 3).await, TryTaken::NoneLeft, "no fourth try");
    assert!(
        store
            .find_secret(&secret.id, T0 + 3)
            .await
            .unwrap()
            .is_some(),
        "taking tries alone destroys nothing"
    );
    assert!(store.exhaust(&secret.id, T0 + 3).await.unwrap());
    assert!(!store.exhaust(&secret.id, T0 + 3).await.unwrap());
    assert!(store
        .find_secret(&secret.id, T0 + 3)
        .await
        .unwrap()
        .is_none());
    assert!(!store.consume(&secret.id, T0 + 3).await.unwrap());
    let md = store
        .find_metadata(&metadata.id, T0 + 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(md.state, MetadataState::Burned);
    assert_eq!(md.burned, Some(T0 + 3));
    assert_eq!(take(T0 + 5).await, TryTaken::Gone);
}

/// 100 concurrent takes of a secret allowing 10 tries: exactly 10 are taken.
pub async fn tries_are_bounded_under_concurrency<S: SecretRepository + 'static>(store: Arc<S>) {
    let (secret, metadata) = record(&CustId::anonymous(), T0, 3600, true);
    store.create(&secret, &metadata, None).await.unwrap();
    let takes: Vec<_> = (0..100)
        .map(|_| {
            let (store, key) = (store.clone(), secret.id);
            tokio::spawn(async move { store.take_try(&key, 10, T0 + 1).await.unwrap() })
        })
        .collect();
    let mut lefts = Vec::new();
    for take in takes {
        match take.await.unwrap() {
            TryTaken::Taken { left } => lefts.push(left),
            TryTaken::NoneLeft => {}
            TryTaken::Gone => panic!("the secret is still there"),
        }
    }
    lefts.sort_unstable();
    assert_eq!(
        lefts,
        (0..10).collect::<Vec<u32>>(),
        "each try once, 10 in all"
    );
}

pub async fn burn_only_new_secrets<S: SecretRepository>(store: Arc<S>) {
    let anon = CustId::anonymous();
    let (secret, metadata) = stored(&*store, &anon, T0, 3600).await;
    let burned = store
        .burn(&metadata.id, T0 + 7)
        .await
        .unwrap()
        .expect("burns a new secret");
    assert_eq!(burned.state, MetadataState::Burned);
    assert_eq!(burned.burned, Some(T0 + 7));
    assert_eq!(burned.sealed_secret_key, None);
    assert!(store
        .find_secret(&secret.id, T0 + 8)
        .await
        .unwrap()
        .is_none());
    assert!(
        !store.consume(&secret.id, T0 + 8).await.unwrap(),
        "a burned secret is never revealed"
    );
    assert!(
        store.burn(&metadata.id, T0 + 9).await.unwrap().is_none(),
        "burning twice finds nothing"
    );

    let (secret, metadata) = stored(&*store, &anon, T0, 3600).await;
    assert!(store.consume(&secret.id, T0 + 1).await.unwrap());
    assert!(
        store.burn(&metadata.id, T0 + 2).await.unwrap().is_none(),
        "a received secret cannot be burned"
    );
    let md = store
        .find_metadata(&metadata.id, T0 + 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(md.state, MetadataState::Received);

    let (_, metadata) = stored(&*store, &anon, T0, 60).await;
    assert!(
        store.burn(&metadata.id, T0 + 60).await.unwrap().is_none(),
        "an expired secret cannot be burned"
    );
    assert!(store
        .burn(&MetadataId::of(&key(MetadataKey::parse)), T0)
        .await
        .unwrap()
        .is_none());
}

pub async fn expiry_is_enforced_at_read_time<S: SecretRepository>(store: Arc<S>) {
    let (secret, metadata) = stored(&*store, &CustId::anonymous(), T0, 60).await;
    assert!(store
        .find_secret(&secret.id, T0 + 59)
        .await
        .unwrap()
        .is_some());
    assert!(
        store
            .find_secret(&secret.id, T0 + 60)
            .await
            .unwrap()
            .is_none(),
        "gone at its ttl, before any sweep"
    );
    assert!(!store.consume(&secret.id, T0 + 60).await.unwrap());
    assert_eq!(
        store.take_try(&secret.id, 10, T0 + 60).await.unwrap(),
        TryTaken::Gone
    );
    let md = store
        .find_metadata(&metadata.id, T0 + 61)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(md.state_at(T0 + 61), MetadataState::Expired);
}

pub async fn sweep_deletes_only_expired_rows_in_batches<S: SecretRepository>(store: Arc<S>) {
    let anon = CustId::anonymous();
    let mut short = Vec::new();
    for _ in 0..5 {
        short.push(stored(&*store, &anon, T0, 60).await);
    }
    let (long_secret, long_md) = stored(&*store, &anon, T0, 3600).await;
    // At T0+60 the five secrets are expired, their metadata (2×ttl) not yet.
    let mut swept = 0;
    loop {
        let n = store.sweep_expired(T0 + 60, 2).await.unwrap().total();
        assert!(
            n <= 4,
            "a batch of 2 deletes at most 2 secrets and 2 metadata, got {n}"
        );
        if n == 0 {
            break;
        }
        swept += n;
    }
    assert_eq!(swept, 5);
    for (secret, metadata) in &short {
        assert!(
            store.find_secret(&secret.id, T0).await.unwrap().is_none(),
            "swept rows are gone even for an earlier clock"
        );
        assert!(store
            .find_metadata(&metadata.id, T0 + 60)
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(
        store.sweep_expired(T0 + 120, 100).await.unwrap().total(),
        5,
        "then the metadata at 2×ttl"
    );
    for (_, metadata) in &short {
        assert!(store
            .find_metadata(&metadata.id, T0)
            .await
            .unwrap()
            .is_none());
    }
    assert!(store
        .find_secret(&long_secret.id, T0 + 120)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .find_metadata(&long_md.id, T0 + 120)
        .await
        .unwrap()
        .is_some());
}

pub async fn recent_is_per_customer_newest_first<S: SecretRepository>(store: Arc<S>) {
    let (alice, bob) = (cust("alice"), cust("bob"));
    let mut alices = Vec::new();
    for i in 0..5 {
        alices.push(stored(&*store, &alice, T0 + i * 10, 3600).await.1);
    }
    stored(&*store, &bob, T0 + 25, 3600).await;
    let short = stored(&*store, &alice, T0 - 1, 60).await.1;

    let recent = store.recent(&alice, T0 + 100, 100).await.unwrap();
    let keys: Vec<_> = recent.iter().map(|m| m.id).collect();
    let mut expected: Vec<_> = alices.iter().rev().map(|m| m.id).collect();
    expected.push(short.id);
    assert_eq!(keys, expected, "newest first, only alice's");
    let limited = store.recent(&alice, T0 + 100, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0].id, alices[4].id);
    // The short secret's metadata is dead at T0 - 1 + 120.
    let later = store.recent(&alice, T0 + 121, 100).await.unwrap();
    assert!(later.iter().all(|m| m.id != short.id));
    assert_eq!(later.len(), 5);
    assert!(store
        .recent(&cust("carol"), T0, 100)
        .await
        .unwrap()
        .is_empty());
}

/// Records created in the same second come back in the reverse order of their `create`
/// calls, whatever their random keys: a share made a moment ago is listed first.
pub async fn recent_orders_one_second_by_insertion<S: SecretRepository>(store: Arc<S>) {
    let alice = cust("alice");
    let mut created = Vec::new();
    for _ in 0..12 {
        created.push(stored(&*store, &alice, T0, 3600).await.1.id);
    }
    let listed: Vec<MetadataId> = store
        .recent(&alice, T0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    created.reverse();
    assert_eq!(listed, created, "newest first within one second");
}

pub async fn metadata_outlives_its_secret<S: SecretRepository>(store: Arc<S>) {
    let (secret, metadata) = stored(&*store, &CustId::anonymous(), T0, 100).await;
    assert!(store.consume(&secret.id, T0 + 10).await.unwrap());
    let md = store
        .find_metadata(&metadata.id, T0 + 199)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(md.state, MetadataState::Received);
    assert!(
        store
            .find_metadata(&metadata.id, T0 + 200)
            .await
            .unwrap()
            .is_none(),
        "gone at twice the ttl"
    );
}

pub async fn purge_customer_forgets_everything<S: SecretRepository>(store: Arc<S>) {
    let (alice, bob) = (cust("alice"), cust("bob"));
    let (a1, _) = stored(&*store, &alice, T0, 3600).await;
    let (a2, _) = stored(&*store, &alice, T0, 3600).await;
    let (b1, _) = stored(&*store, &bob, T0, 3600).await;
    assert!(store.consume(&a2.id, T0 + 1).await.unwrap());
    assert_eq!(store.purge_customer(&alice, T0 + 2).await.unwrap(), 2);
    assert!(store.find_secret(&a1.id, T0 + 2).await.unwrap().is_none());
    assert!(store.recent(&alice, T0 + 2, 100).await.unwrap().is_empty());
    assert!(store.find_secret(&b1.id, T0 + 2).await.unwrap().is_some());
}

pub async fn customers_and_tokens<S: CustomerRepository>(store: Arc<S>) {
    let alice = Customer {
        custid: cust("alice"),
        email: Some("alice@example.com".into()),
        plan: "basic".into(),
        created: T0,
    };
    store.add_customer(&alice).await.unwrap();
    assert!(matches!(
        store.add_customer(&alice).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.find_customer(&alice.custid).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.find_customer(&cust("nobody")).await.unwrap(), None);

    let t1 = StoredToken {
        prefix: "abcd1234".into(),
        hash: vec![1; 32],
        created: T0,
    };
    let t2 = StoredToken {
        prefix: "efgh5678".into(),
        hash: vec![2; 32],
        created: T0 + 1,
    };
    store.add_token(&alice.custid, &t1).await.unwrap();
    store.add_token(&alice.custid, &t2).await.unwrap();
    let mut tokens = store.tokens(&alice.custid).await.unwrap();
    tokens.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    assert_eq!(tokens, vec![t1.clone(), t2.clone()]);
    assert_eq!(store.revoke_tokens(&alice.custid, "abcd").await.unwrap(), 1);
    assert_eq!(store.tokens(&alice.custid).await.unwrap(), vec![t2]);

    assert!(store.set_plan(&alice.custid, "pro").await.unwrap());
    assert!(!store.set_plan(&cust("nobody"), "pro").await.unwrap());
    let bob = Customer {
        custid: cust("bob"),
        email: None,
        plan: "basic".into(),
        created: T0,
    };
    store.add_customer(&bob).await.unwrap();
    let listed: Vec<_> = store
        .list_customers()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.custid, c.plan))
        .collect();
    assert_eq!(
        listed,
        vec![
            (cust("alice"), "pro".to_string()),
            (cust("bob"), "basic".to_string())
        ]
    );

    assert!(store.remove_customer(&alice.custid).await.unwrap());
    assert!(!store.remove_customer(&alice.custid).await.unwrap());
    assert_eq!(store.find_customer(&alice.custid).await.unwrap(), None);
    assert!(store.tokens(&alice.custid).await.unwrap().is_empty());
}

/// Processes starting at once on an empty store all keep the first check value; only a
/// rotation replaces it.
pub async fn check_value_keeps_the_first_until_replaced<S: SecretRepository>(store: Arc<S>) {
    assert_eq!(store.check_value().await.unwrap(), None);
    store.init_check_value(b"first").await.unwrap();
    store.init_check_value(b"second").await.unwrap();
    assert_eq!(
        store.check_value().await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    store.replace_check_value(b"rotated").await.unwrap();
    assert_eq!(
        store.check_value().await.unwrap().as_deref(),
        Some(&b"rotated"[..])
    );
}

/// What tells how a value opens comes back exactly as stored, for every scheme.
pub async fn every_value_scheme_round_trips<S: SecretRepository>(store: Arc<S>) {
    let schemes = [
        ValueScheme::Expanded {
            key_id: KeyId([3, 4, 5, 6]),
        },
        ValueScheme::Sealed {
            key_id: KeyId([9, 8, 7, 6]),
            passphrase: None,
        },
        ValueScheme::Sealed {
            key_id: KeyId([1, 1, 1, 1]),
            passphrase: Some(PassphraseParams {
                cost: 12,
                salt: [5; 16],
            }),
        },
        ValueScheme::Legacy {
            passphrase_hash: "$2b$04$abcdefghijklmnopqrstuuF4HyPqQ0aYBvXGkcGg1.5dK1nq7f2W".into(),
            sealed_metadata_key: vec![4; 59],
        },
    ];
    for scheme in schemes {
        let (mut secret, metadata) = record(&cust("alice"), T0, 3600, true);
        secret.scheme = scheme;
        store.create(&secret, &metadata, None).await.unwrap();
        let found = store.find_secret(&secret.id, T0).await.unwrap().unwrap();
        assert!(found == secret, "{:?} comes back as stored", found);
        let md = store
            .find_metadata(&metadata.id, T0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(md, metadata);
    }
}

pub async fn ping_answers<S: SecretRepository>(store: Arc<S>) {
    store.ping().await.expect("a fresh store answers");
}

fn mail_for(metadata: &Metadata, to: &str, at: UnixTime) -> OutboxMail {
    OutboxMail {
        id: key(SecretKey::parse).to_string(),
        metadata_id: metadata.id,
        from_custid: metadata.custid.clone(),
        sealed_to: format!("sealed {to}").into_bytes(),
        sealed_secret_key: vec![7; 48],
        attempts: 0,
        next_attempt_at: at,
    }
}

pub async fn outbox_leases_retries_and_forgets_mail<S: SecretRepository + Outbox>(store: Arc<S>) {
    let (s1, m1) = record(&cust("alice"), T0, 60, false);
    let mail1 = mail_for(&m1, "jane@example.com", T0);
    store.create(&s1, &m1, Some(&mail1)).await.unwrap();
    let (s2, m2) = record(&cust("alice"), T0, 3600, false);
    let mail2 = mail_for(&m2, "joe@example.com", T0 + 5);
    store.create(&s2, &m2, Some(&mail2)).await.unwrap();
    assert_eq!(store.mail_backlog().await.unwrap(), 2);

    let due = store.claim_due_mail(T0, T0 + 120, 10).await.unwrap();
    assert_eq!(due.len(), 1, "only what is due");
    assert_eq!(due[0].sealed_to, mail1.sealed_to);
    assert_eq!(due[0].metadata_id, m1.id);
    assert!(
        store
            .claim_due_mail(T0 + 10, T0 + 130, 10)
            .await
            .unwrap()
            .iter()
            .all(|m| m.id != mail1.id),
        "leased"
    );

    store.mail_retry(&mail1.id, 1, T0 + 11).await.unwrap();
    let again = store.claim_due_mail(T0 + 11, T0 + 131, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        (mail1.id.as_str(), 1)
    );
    store.mail_done(&mail1.id).await.unwrap();
    assert_eq!(store.mail_backlog().await.unwrap(), 1);

    // A mail lives no longer than its metadata.
    let (s3, m3) = record(&cust("alice"), T0, 60, false);
    store
        .create(&s3, &m3, Some(&mail_for(&m3, "x@example.com", T0 + 500)))
        .await
        .unwrap();
    assert_eq!(store.mail_backlog().await.unwrap(), 2);
    store.sweep_expired(T0 + 120, 100).await.unwrap();
    assert_eq!(
        store.mail_backlog().await.unwrap(),
        1,
        "swept with its metadata"
    );
    store
        .purge_customer(&cust("alice"), T0 + 121)
        .await
        .unwrap();
    assert_eq!(
        store.mail_backlog().await.unwrap(),
        0,
        "purged with its customer"
    );
    let _ = (s1, s2);
}
