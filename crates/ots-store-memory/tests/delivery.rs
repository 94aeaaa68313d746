//! The mail delivery use case over the in-memory store, with a mailer that fails on demand
//! and a clock the test moves: backoff, drop and send, without sleeping.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ots_domain::*;
use ots_store_memory::MemoryStore;

struct TestClock(AtomicI64);
impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct FlakyMailer {
    down: AtomicBool,
    sent: AtomicU32,
}

#[async_trait]
impl Mailer for FlakyMailer {
    async fn send(&self, _: &SecretLinkMail) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

type Svc = Service<Arc<MemoryStore>, Arc<MemoryStore>, Arc<FlakyMailer>, Arc<TestClock>, SystemRng>;

fn setup() -> (Svc, Arc<FlakyMailer>, Arc<TestClock>) {
    let store = Arc::new(MemoryStore::new());
    let mailer = Arc::new(FlakyMailer::default());
    let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000)));
    let svc = Service::new(
        store.clone(),
        store,
        mailer.clone(),
        clock.clone(),
        SystemRng::new(),
        Keyring::new(&[1; 32]).unwrap(),
        Policy {
            bcrypt_cost: 4,
            ..Policy::default()
        },
    );
    (svc, mailer, clock)
}

fn anon() -> Caller {
    Caller {
        custid: CustId::anonymous(),
        plan: Plan::anonymous(),
    }
}

fn to(addr: &str) -> ShareInput {
    ShareInput {
        recipient: Email::parse(addr),
        ..ShareInput::default()
    }
}

#[tokio::test]
async fn failed_sends_back_off_to_at_most_a_minute_then_send_once() {
    let (svc, mailer, clock) = setup();
    svc.share(&anon(), Some(Sensitive::new("v")), to("jane@example.com"))
        .await
        .unwrap();
    mailer.down.store(true, Ordering::SeqCst);
    let mut waits = Vec::new();
    for _ in 0..9 {
        // Step the clock one second at a time until the mail is tried again.
        let mut waited = 0;
        loop {
            let report = svc.deliver_due_mail(10).await.unwrap();
            if report.failed == 1 {
                break;
            }
            assert_eq!(report, MailReport::default(), "nothing is due in between");
            clock.0.fetch_add(1, Ordering::SeqCst);
            waited += 1;
        }
        waits.push(waited);
    }
    assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(svc.mail_backlog().await.unwrap(), 1, "nothing lost");
    mailer.down.store(false, Ordering::SeqCst);
    clock.0.fetch_add(60, Ordering::SeqCst);
    assert_eq!(svc.deliver_due_mail(10).await.unwrap().sent, 1);
    clock.0.fetch_add(600, Ordering::SeqCst);
    assert_eq!(
        svc.deliver_due_mail(10).await.unwrap(),
        MailReport::default()
    );
    assert_eq!(mailer.sent.load(Ordering::SeqCst), 1);
    assert_eq!(svc.mail_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn mail_of_a_received_or_burned_secret_is_dropped() {
    let (svc, mailer, _) = setup();
    let read = svc
        .share(&anon(), Some(Sensitive::new("a")), to("a@example.com"))
        .await
        .unwrap();
    let burned = svc
        .share(&anon(), Some(Sensitive::new("b")), to("b@example.com"))
        .await
        .unwrap();
    let key = SecretKey::parse(read.metadata.secret_key.as_deref().unwrap()).unwrap();
    svc.reveal(&key, None).await.unwrap();
    let key = MetadataKey::parse(&burned.metadata.metadata_key).unwrap();
    svc.burn(&key).await.unwrap();
    let report = svc.deliver_due_mail(10).await.unwrap();
    assert_eq!((report.sent, report.dropped), (0, 2));
    assert_eq!(mailer.sent.load(Ordering::SeqCst), 0);
}
