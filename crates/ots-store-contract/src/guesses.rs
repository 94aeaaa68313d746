//! The try limit under parallel guessing, through the use cases on a real store: a hasher
//! that holds every check until released and counts them shows exactly how many ran.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ots_domain::*;
use zeroize::Zeroizing;

use crate::T0;

/// Holds every passphrase derivation until [`Gate::release`], counting them.
#[derive(Default)]
struct Gate {
    sharing_done: std::sync::atomic::AtomicBool,
    checks: AtomicU32,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl PassphraseHasher for Gate {
    /// Stands for bcrypt: the same passphrase and salt always give the same bytes. Only
    /// derivations during a reveal are counted and held (the share's comes first).
    fn derive(&self, passphrase: &Passphrase, salt: &[u8; 16], _cost: u32) -> Zeroizing<[u8; 24]> {
        if self.sharing_done.load(Ordering::SeqCst) {
            self.checks.fetch_add(1, Ordering::SeqCst);
            let open = self.open.lock().unwrap();
            drop(self.opened.wait_while(open, |open| !*open).unwrap());
        }
        let mut out = [0u8; 24];
        for (i, b) in passphrase
            .expose()
            .bytes()
            .chain(salt.iter().copied())
            .enumerate()
        {
            out[i % 24] ^= b.rotate_left(i as u32 % 8);
        }
        Zeroizing::new(out)
    }

    fn verify(&self, _passphrase: &Passphrase, _hash: &str) -> bool {
        unreachable!("new secrets store no verifier")
    }
}

struct NoMail;

#[async_trait::async_trait]
impl Mailer for NoMail {
    async fn send(&self, _mail: &SecretLinkMail) -> Result<(), String> {
        Ok(())
    }
}

struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> UnixTime {
        T0
    }
}

/// 100 concurrent wrong guesses at a secret allowing 10 tries: exactly 10 checks run (held
/// open together, so none could finish before the others were let in), the other 90 are
/// answered as for a burned secret without a check, and the 10th wrong check burns it.
pub async fn parallel_guesses_run_at_most_max_checks<S>(store: Arc<S>)
where
    S: SecretStore + CustomerRepository + 'static,
{
    const GUESSES: u32 = 100;
    const TRIES: u32 = 10;
    let gate = Arc::new(Gate::default());
    let policy = Policy {
        max_passphrase_tries: TRIES,
        bcrypt_concurrency: GUESSES as usize,
        ..Policy::default()
    };
    let svc = Arc::new(
        Service::new(
            store.clone(),
            store,
            NoMail,
            Fixed,
            SystemRng::new(),
            Keyring::new(&[5; 32]).unwrap(),
            policy,
        )
        .with_hasher(gate.clone()),
    );
    let input = ShareInput {
        passphrase: Passphrase::parse("the right one"),
        ..ShareInput::default()
    };
    let shared = svc
        .share(&svc.anonymous(), Some(SecretValue::new("guarded")), input)
        .await
        .unwrap();
    gate.sharing_done.store(true, Ordering::SeqCst);
    let key = SecretKey::parse(shared.metadata.secret_key.as_deref().unwrap()).unwrap();
    let metadata_key = MetadataKey::parse(&shared.metadata.metadata_key).unwrap();

    let answered = Arc::new(AtomicU32::new(0));
    let guesses: Vec<_> = (0..GUESSES)
        .map(|i| {
            let (svc, key, answered) = (svc.clone(), key.clone(), answered.clone());
            tokio::spawn(async move {
                let guess = Passphrase::parse(&format!("wrong {i}"));
                let outcome = svc.reveal(&key, guess).await;
                answered.fetch_add(1, Ordering::SeqCst);
                outcome
            })
        })
        .collect();
    // Wait (bounded) until every guess is either answered or held inside a check.
    for _ in 0..3000 {
        let held = gate.checks.load(Ordering::SeqCst);
        if held + answered.load(Ordering::SeqCst) >= GUESSES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.checks.load(Ordering::SeqCst), TRIES, "checks running");
    assert_eq!(answered.load(Ordering::SeqCst), GUESSES - TRIES);
    gate.release();

    let mut tries_left = Vec::new();
    for guess in guesses {
        match guess.await.unwrap() {
            Err(OtsError::NotFound) => {}
            Err(OtsError::WrongPassphrase { tries_left: left }) => tries_left.push(left),
            other => panic!("unexpected answer to a wrong guess: {other:?}"),
        }
    }
    tries_left.sort_unstable();
    assert_eq!(tries_left, (0..TRIES).collect::<Vec<_>>());
    assert_eq!(gate.checks.load(Ordering::SeqCst), TRIES, "no check after");
    let md = svc.metadata(&metadata_key).await.unwrap();
    assert_eq!(
        md.state,
        MetadataState::Burned,
        "the last wrong try burned it"
    );
    let late = svc.reveal(&key, Passphrase::parse("the right one")).await;
    assert!(matches!(late, Err(OtsError::NotFound)));
    assert_eq!(gate.checks.load(Ordering::SeqCst), TRIES);
}
