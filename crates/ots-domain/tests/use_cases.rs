//! The use cases on the in-memory store with a clock the tests set: share, generate, reveal
//! (with and without a passphrase), the try limit, burn, expiry and recent, and the events
//! each reports.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use ots_domain::*;
use ots_store_memory::MemoryStore;

const T0: UnixTime = 1_700_000_000;

struct FixedClock(AtomicI64);

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// Every event, in order.
#[derive(Default)]
struct Heard(Mutex<Vec<Event>>);

impl EventSink for Heard {
    fn record(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Heard {
    fn names(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().iter().map(Event::name).collect()
    }
}

type Svc = Service<Arc<MemoryStore>, Arc<MemoryStore>, Arc<LogOnly>, Arc<FixedClock>, SystemRng>;

/// A mailer that accepts everything (mail delivery has its own tests).
struct LogOnly;

#[async_trait::async_trait]
impl Mailer for LogOnly {
    async fn send(&self, _mail: &SecretLinkMail) -> Result<(), String> {
        Ok(())
    }
}

struct World {
    svc: Svc,
    store: Arc<MemoryStore>,
    clock: Arc<FixedClock>,
    heard: Arc<Heard>,
}

impl World {
    fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(FixedClock(AtomicI64::new(T0)));
        let heard = Arc::new(Heard::default());
        let policy = Policy {
            bcrypt_cost: 4,
            max_passphrase_tries: 3,
            ..Policy::default()
        };
        let svc = Service::new(
            store.clone(),
            store.clone(),
            Arc::new(LogOnly),
            clock.clone(),
            SystemRng::new(),
            Keyring::new(&[9; 32]).unwrap(),
            policy,
        )
        .with_events(heard.clone());
        Self {
            svc,
            store,
            clock,
            heard,
        }
    }

    fn advance(&self, seconds: i64) {
        self.clock.0.fetch_add(seconds, Ordering::SeqCst);
    }

    fn anon(&self) -> Caller {
        self.svc.anonymous()
    }

    async fn customer(&self, name: &str) -> Caller {
        let custid = CustId::parse(name).unwrap();
        self.store
            .add_customer(&Customer {
                custid: custid.clone(),
                email: None,
                plan: "basic".into(),
                created: T0,
            })
            .await
            .unwrap();
        Caller {
            custid,
            plan: Plan::basic(),
        }
    }

    async fn share(&self, caller: &Caller, value: &str, input: ShareInput) -> MetadataView {
        self.svc
            .share(caller, Some(SecretValue::new(value)), input)
            .await
            .unwrap()
            .metadata
    }
}

fn keys(view: &MetadataView) -> (SecretKey, MetadataKey) {
    (
        SecretKey::parse(view.secret_key.as_deref().unwrap()).unwrap(),
        MetadataKey::parse(&view.metadata_key).unwrap(),
    )
}

fn with_passphrase(p: &str) -> ShareInput {
    ShareInput {
        passphrase: Passphrase::parse(p),
        ..ShareInput::default()
    }
}

#[tokio::test]
async fn share_stores_the_value_sealed_and_answers_new_metadata() {
    let w = World::new();
    let md = w
        .share(
            &w.anon(),
            "hunter2",
            ShareInput {
                ttl: Some(Ttl::from_seconds(3600)),
                ..ShareInput::default()
            },
        )
        .await;
    assert_eq!(md.state, MetadataState::New);
    assert_eq!(
        (md.ttl, md.secret_ttl, md.metadata_ttl),
        (3600, Some(3600), 7200)
    );
    assert_eq!(md.custid, "anon");
    let (secret_key, _) = keys(&md);
    let stored = w
        .store
        .find_secret(&SecretId::of(&secret_key), T0)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.ciphertext.windows(7).any(|win| win == b"hunter2"),
        "the value is stored encrypted"
    );
    assert_eq!(w.heard.names(), ["created"]);
}

#[tokio::test]
async fn share_refuses_nothing_and_too_much() {
    let w = World::new();
    let refused = |r: Result<Shared, OtsError>| r.unwrap_err();
    let caller = w.anon();
    assert!(matches!(
        refused(w.svc.share(&caller, None, ShareInput::default()).await),
        OtsError::NothingToShare
    ));
    assert!(matches!(
        refused(
            w.svc
                .share(&caller, Some(SecretValue::new("")), ShareInput::default())
                .await
        ),
        OtsError::NothingToShare
    ));
    let big = "x".repeat(caller.plan.max_secret_bytes + 1);
    assert!(matches!(
        refused(
            w.svc
                .share(&caller, Some(SecretValue::new(big)), ShareInput::default())
                .await
        ),
        OtsError::TooLarge { max: 1024 }
    ));
    assert!(w.heard.names().is_empty(), "nothing was created");
}

#[tokio::test]
async fn generate_shows_its_value_once_and_it_reveals() {
    let w = World::new();
    let shared = w
        .svc
        .generate(&w.anon(), ShareInput::default())
        .await
        .unwrap();
    let value = shared.value.expect("generate shows the value");
    assert_eq!(value.len(), GENERATED_LEN);
    assert!(value
        .expose()
        .bytes()
        .all(|b| GENERATED_ALPHABET.contains(&b)));
    let (secret_key, metadata_key) = keys(&shared.metadata);
    let revealed = w.svc.reveal(&secret_key, None).await.unwrap();
    assert_eq!(revealed.value.expose(), value.expose());
    let later = w.svc.metadata(&metadata_key).await.unwrap();
    assert_eq!(later.state, MetadataState::Received);
}

#[tokio::test]
async fn reveal_without_passphrase_gives_the_value_once() {
    let w = World::new();
    let md = w.share(&w.anon(), "once only", ShareInput::default()).await;
    let (secret_key, metadata_key) = keys(&md);
    assert!(!w.svc.peek(&secret_key).await.unwrap().passphrase_required);
    w.advance(5);
    let revealed = w.svc.reveal(&secret_key, None).await.unwrap();
    assert_eq!(revealed.value.expose(), "once only");
    assert!(matches!(
        w.svc.reveal(&secret_key, None).await,
        Err(OtsError::NotFound)
    ));
    let md = w.svc.metadata(&metadata_key).await.unwrap();
    assert_eq!(
        (md.state, md.received),
        (MetadataState::Received, Some(T0 + 5))
    );
    assert_eq!((md.secret_key, md.secret_ttl), (None, None));
    assert_eq!(w.heard.names(), ["created", "revealed"]);
}

#[tokio::test]
async fn reveal_with_passphrase_needs_the_right_one_and_keeps_the_secret_meanwhile() {
    let w = World::new();
    let md = w
        .share(&w.anon(), "behind a word", with_passphrase("correct horse"))
        .await;
    let (secret_key, _) = keys(&md);
    assert!(md.passphrase_required);
    assert!(w.svc.peek(&secret_key).await.unwrap().passphrase_required);
    assert!(matches!(
        w.svc.reveal(&secret_key, None).await,
        Err(OtsError::WrongPassphrase { tries_left: 2 })
    ));
    assert!(matches!(
        w.svc
            .reveal(&secret_key, Passphrase::parse("correct horsE"))
            .await,
        Err(OtsError::WrongPassphrase { tries_left: 1 })
    ));
    let revealed = w
        .svc
        .reveal(&secret_key, Passphrase::parse("correct horse"))
        .await
        .unwrap();
    assert_eq!(revealed.value.expose(), "behind a word");
    assert_eq!(
        w.heard.names(),
        [
            "created",
            "wrong_passphrase",
            "wrong_passphrase",
            "revealed"
        ]
    );
}

#[tokio::test]
async fn the_last_wrong_try_burns_the_secret() {
    let w = World::new();
    let md = w
        .share(&w.anon(), "guarded", with_passphrase("right"))
        .await;
    let (secret_key, metadata_key) = keys(&md);
    for left in [2, 1, 0] {
        let err = w
            .svc
            .reveal(&secret_key, Passphrase::parse("wrong"))
            .await
            .unwrap_err();
        assert!(matches!(err, OtsError::WrongPassphrase { tries_left } if tries_left == left));
    }
    assert!(matches!(
        w.svc.reveal(&secret_key, Passphrase::parse("right")).await,
        Err(OtsError::NotFound)
    ));
    let md = w.svc.metadata(&metadata_key).await.unwrap();
    assert_eq!(md.state, MetadataState::Burned);
}

#[tokio::test]
async fn burn_destroys_an_unread_secret_once() {
    let w = World::new();
    let md = w.share(&w.anon(), "to burn", ShareInput::default()).await;
    let (secret_key, metadata_key) = keys(&md);
    w.advance(7);
    let burned = w.svc.burn(&metadata_key).await.unwrap();
    assert_eq!(
        (burned.state, burned.burned),
        (MetadataState::Burned, Some(T0 + 7))
    );
    assert!(matches!(
        w.svc.burn(&metadata_key).await,
        Err(OtsError::NotFound)
    ));
    assert!(matches!(
        w.svc.reveal(&secret_key, None).await,
        Err(OtsError::NotFound)
    ));
    assert_eq!(w.heard.names(), ["created", "burned"]);
}

#[tokio::test]
async fn a_secret_expires_at_its_ttl_and_the_sweep_reports_it() {
    let w = World::new();
    let ttl = ShareInput {
        ttl: Some(Ttl::from_seconds(120)),
        ..ShareInput::default()
    };
    let md = w.share(&w.anon(), "short-lived", ttl).await;
    let (secret_key, metadata_key) = keys(&md);
    w.advance(119);
    assert!(w.svc.peek(&secret_key).await.is_ok());
    w.advance(1);
    assert!(matches!(
        w.svc.reveal(&secret_key, None).await,
        Err(OtsError::NotFound)
    ));
    let md = w.svc.metadata(&metadata_key).await.unwrap();
    assert_eq!(md.state, MetadataState::Expired);
    let swept = w.svc.sweep_expired(100).await.unwrap();
    assert_eq!((swept.secrets, swept.metadata), (1, 0));
    w.advance(120);
    assert!(matches!(
        w.svc.metadata(&metadata_key).await,
        Err(OtsError::NotFound)
    ));
    assert_eq!(w.svc.sweep_expired(100).await.unwrap().metadata, 1);
    assert_eq!(w.heard.names(), ["created", "expired", "expired"]);
}

#[tokio::test]
async fn recent_lists_one_seconds_shares_newest_first_without_secret_keys() {
    let w = World::new();
    let alice = w.customer("alice").await;
    let bob = w.customer("bob").await;
    let mut shared = Vec::new();
    for value in ["first", "second", "third"] {
        shared.push(
            w.share(&alice, value, ShareInput::default())
                .await
                .metadata_key,
        );
    }
    w.share(&bob, "bob's", ShareInput::default()).await;
    let recent = w.svc.recent(&alice, None).await.unwrap();
    let listed: Vec<&str> = recent.iter().map(|m| m.metadata_key.as_str()).collect();
    assert_eq!(listed, [&shared[2], &shared[1], &shared[0]], "newest first");
    assert!(recent.iter().all(|m| m.secret_key.is_none()));
    assert_eq!(w.svc.recent(&alice, Some(2)).await.unwrap().len(), 2);
    assert!(matches!(
        w.svc.recent(&alice, Some(0)).await,
        Err(OtsError::InvalidLimit { max: 100 })
    ));
    assert!(matches!(
        w.svc.recent(&w.anon(), None).await,
        Err(OtsError::Unauthorized)
    ));
}

#[tokio::test]
async fn authenticate_takes_a_good_token_and_never_falls_back_to_anonymous() {
    let w = World::new();
    w.customer("alice").await;
    let custid = CustId::parse("alice").unwrap();
    w.store
        .add_token(
            &custid,
            &StoredToken {
                prefix: "goodtoke".into(),
                hash: crypto::hash_token("goodtoken-123"),
                created: T0,
            },
        )
        .await
        .unwrap();
    let good = Credentials::parse("alice", "goodtoken-123").unwrap();
    assert_eq!(
        w.svc.authenticate(Some(&good)).await.unwrap().custid,
        custid
    );
    let anonymous = w.svc.authenticate(None).await.unwrap();
    assert!(anonymous.custid.is_anonymous());
    for (user, token) in [("alice", "wrongtoken"), ("nobody", "goodtoken-123")] {
        let bad = Credentials::parse(user, token).unwrap();
        assert!(matches!(
            w.svc.authenticate(Some(&bad)).await,
            Err(OtsError::Unauthorized)
        ));
    }
}
