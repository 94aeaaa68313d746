//! The threat model of the README, row by row, played by an attacker who holds a copy of the
//! store (and, in the second row, the master secret): what each can open, and what not.

use std::collections::BTreeSet;
use std::sync::Arc;

use ots_domain::crypto::{self, purpose};
use ots_domain::*;
use ots_store_memory::MemoryStore;

const MASTER: &[u8] = &[9; 32];

struct NoMail;

#[async_trait::async_trait]
impl Mailer for NoMail {
    async fn send(&self, _mail: &SecretLinkMail) -> Result<(), String> {
        Ok(())
    }
}

type Svc = Service<Arc<MemoryStore>, Arc<MemoryStore>, NoMail, SystemClock, SystemRng>;

struct Shares {
    store: Arc<MemoryStore>,
    svc: Svc,
    /// value → secret key, for every share.
    links: Vec<(&'static str, SecretKey, Option<&'static str>)>,
}

/// Anonymous and customer shares, with and without passphrases and mail.
async fn shares() -> Shares {
    let store = Arc::new(MemoryStore::new());
    let policy = Policy {
        bcrypt_cost: 4,
        ..Policy::default()
    };
    let svc = Service::new(
        store.clone(),
        store.clone(),
        NoMail,
        SystemClock,
        SystemRng::new(),
        Keyring::new(MASTER).unwrap(),
        policy,
    );
    let customer = Caller {
        custid: CustId::parse("alice").unwrap(),
        plan: Plan::basic(),
    };
    let anonymous = svc.anonymous();
    let cases: [(&Caller, &'static str, Option<&'static str>, Option<&str>); 5] = [
        (&anonymous, "anonymous plain", None, None),
        (&anonymous, "anonymous guarded", Some("anon words"), None),
        (
            &anonymous,
            "anonymous mailed",
            None,
            Some("jane@example.com"),
        ),
        (&customer, "customer plain", None, None),
        (&customer, "customer guarded", Some("alice words"), None),
    ];
    let mut links = Vec::new();
    for (caller, value, passphrase, recipient) in cases {
        let input = ShareInput {
            passphrase: passphrase.and_then(Passphrase::parse),
            ttl: None,
            recipient: recipient.and_then(Email::parse),
        };
        let shared = svc
            .share(caller, Some(SecretValue::new(value)), input)
            .await
            .unwrap();
        let key = SecretKey::parse(shared.metadata.secret_key.as_deref().unwrap()).unwrap();
        links.push((value, key, passphrase));
    }
    Shares { store, svc, links }
}

/// Every secret key someone holding the copy and `keyring` can recover from it: links of
/// mail not yet sent, and the links of customers' unread secrets through `recent`'s keys.
fn recoverable_links(store: &MemoryStore, keyring: &Keyring) -> BTreeSet<SecretKey> {
    let (_, metadata, outbox) = store.dump();
    let utf8 = |raw: zeroize::Zeroizing<Vec<u8>>| String::from_utf8(raw.to_vec()).ok();
    let mut links = BTreeSet::new();
    for mail in &outbox {
        if let Some(key) = keyring
            .open(purpose::MAIL_LINK, &mail.sealed_secret_key)
            .and_then(utf8)
        {
            links.extend(SecretKey::parse(&key));
        }
    }
    for m in &metadata {
        let metadata_key = m
            .sealed_key
            .as_deref()
            .and_then(|sealed| keyring.open(purpose::RECENT_KEY, sealed))
            .and_then(utf8);
        let (Some(metadata_key), Some(sealed)) = (metadata_key, &m.sealed_secret_key) else {
            continue;
        };
        if sealed == crypto::DERIVED_FROM_METADATA_KEY {
            let metadata_key = MetadataKey::parse(&metadata_key).expect("a metadata key");
            links.extend(SecretKey::derived_from(&metadata_key));
        } else if let Some(key) =
            crypto::open_under_key(&metadata_key, purpose::CREATOR_SECRET_KEY, sealed)
                .and_then(utf8)
        {
            links.extend(SecretKey::parse(&key));
        }
    }
    links
}

/// Opens what can be opened without a passphrase, given the links found.
fn open_without_passphrase(
    store: &MemoryStore,
    keyring: &Keyring,
    links: &BTreeSet<SecretKey>,
) -> BTreeSet<String> {
    let (secrets, _, _) = store.dump();
    let mut opened = BTreeSet::new();
    for secret in &secrets {
        for link in links.iter().filter(|l| SecretId::of(l) == secret.id) {
            let mut aad = secret.id.as_bytes().to_vec();
            aad.extend_from_slice(secret.metadata_id.as_bytes());
            if let Some(value) = keyring.open_value(
                &secret.scheme,
                &secret.ciphertext,
                link,
                None,
                &secret.salt,
                &secret.nonce,
                &aad,
            ) {
                opened.insert(value.expose().to_owned());
            }
        }
    }
    opened
}

#[tokio::test]
async fn a_copy_alone_recovers_no_link_and_opens_no_value() {
    let s = shares().await;
    let stranger = Keyring::new(&[1; 32]).unwrap();
    assert!(recoverable_links(&s.store, &stranger).is_empty());
    let every_link: BTreeSet<SecretKey> = s.links.iter().map(|(_, k, _)| k.clone()).collect();
    assert!(
        open_without_passphrase(&s.store, &stranger, &every_link).is_empty(),
        "even with every link, no value opens without the master secret"
    );
}

#[tokio::test]
async fn a_copy_and_the_master_secret_open_customers_and_mailed_links_only() {
    let s = shares().await;
    let keyring = Keyring::new(MASTER).unwrap();
    let links = recoverable_links(&s.store, &keyring);
    let expected: BTreeSet<SecretKey> = s
        .links
        .iter()
        .filter(|(value, _, _)| value.starts_with("customer") || *value == "anonymous mailed")
        .map(|(_, k, _)| k.clone())
        .collect();
    assert_eq!(
        links, expected,
        "anonymous links without mail stay out of reach"
    );
    let opened = open_without_passphrase(&s.store, &keyring, &links);
    assert_eq!(
        opened,
        BTreeSet::from(["anonymous mailed".to_owned(), "customer plain".to_owned()]),
        "a passphrase-protected value does not open without its passphrase"
    );
    // Once mail is sent, its link is gone from the store too.
    s.svc.deliver_due_mail(10).await.unwrap();
    let links = recoverable_links(&s.store, &keyring);
    assert!(links.iter().all(|k| s.links[2].1 != *k));
}

#[tokio::test]
async fn a_passphrase_guess_costs_a_bcrypt_even_with_the_link_and_the_master_secret() {
    let s = shares().await;
    let keyring = Keyring::new(MASTER).unwrap();
    let (_, link, passphrase) = &s.links[4];
    let passphrase = Passphrase::parse(passphrase.unwrap()).unwrap();
    let (secrets, _, _) = s.store.dump();
    let secret = secrets.iter().find(|x| x.id == SecretId::of(link)).unwrap();
    let ValueScheme::Sealed {
        passphrase: Some(params),
        ..
    } = secret.scheme
    else {
        panic!("a passphrase-protected secret in the current scheme");
    };
    let mut aad = secret.id.as_bytes().to_vec();
    aad.extend_from_slice(secret.metadata_id.as_bytes());
    let open = |derived: &[u8; 24]| {
        keyring.open_value(
            &secret.scheme,
            &secret.ciphertext,
            link,
            Some(derived),
            &secret.salt,
            &secret.nonce,
            &aad,
        )
    };
    // Any shortcut past bcrypt (here: SHA-256 of the passphrase, as the old scheme did) fails
    // even with the right passphrase; only the bcrypt derivation at the stored cost opens.
    let sha = ring::digest::digest(&ring::digest::SHA256, passphrase.expose().as_bytes());
    let shortcut: [u8; 24] = sha.as_ref()[..24].try_into().unwrap();
    assert!(open(&shortcut).is_none());
    let cheaper = crypto::derive_passphrase_key(&passphrase, &params.salt, params.cost - 1);
    assert!(open(&cheaper).is_none(), "not at a lower cost either");
    let derived = crypto::derive_passphrase_key(&passphrase, &params.salt, params.cost);
    assert_eq!(open(&derived).unwrap().expose(), "customer guarded");
}

#[tokio::test]
async fn the_link_neither_shows_nor_burns_the_metadata() {
    let s = shares().await;
    let (value, link, _) = &s.links[0];
    let as_metadata = MetadataKey::parse(link.as_str()).unwrap();
    assert!(matches!(
        s.svc.metadata(&as_metadata).await,
        Err(OtsError::NotFound)
    ));
    assert!(matches!(
        s.svc.burn(&as_metadata).await,
        Err(OtsError::NotFound)
    ));
    let revealed = s.svc.reveal(link, None).await.unwrap();
    assert_eq!(revealed.value.expose(), *value);
    assert!(matches!(
        s.svc.reveal(link, None).await,
        Err(OtsError::NotFound)
    ));
}
