//! Value types built once at the edge with their checks ("parse, don't validate"), and the
//! records the repository ports store.

use std::fmt;

use zeroize::Zeroizing;

/// Length of secret and metadata keys: 31 base-36 characters carry 160.3 bits.
pub const KEY_LEN: usize = 31;
/// Alphabet of keys: lowercase base 36.
pub const KEY_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Length of a value made by `generate`.
pub const GENERATED_LEN: usize = 12;
/// Letters and digits without look-alikes: no 0/O, no 1/l/I.
pub const GENERATED_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Unix seconds, UTC.
pub type UnixTime = i64;

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Accepts exactly [`KEY_LEN`] lowercase base-36 characters.
            pub fn parse(raw: &str) -> Option<Self> {
                let ok = raw.len() == KEY_LEN
                    && raw.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
                ok.then(|| Self(raw.to_owned()))
            }

            /// A fresh random key from the CSPRNG.
            pub fn generate<R: crate::ports::Rng + ?Sized>(rng: &R) -> Result<Self, String> {
                crate::service::random_string(rng, KEY_LEN, KEY_ALPHABET).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Keys are capabilities: logs get a short prefix only.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &self.0[..4])
            }
        }
    };
}

key_type!(
    /// The shareable key of a secret.
    SecretKey
);
key_type!(
    /// The creator's private key of a secret's metadata.
    MetadataKey
);

/// Bytes that must never be printed: secret values and passphrases.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(Zeroizing<String>);

impl Sensitive {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sensitive(…)")
    }
}

/// The value of a secret, as the creator gave it or as the recipient gets it.
pub type SecretValue = Sensitive;

/// A passphrase. Never empty: an empty form field means "no passphrase".
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Passphrase(Sensitive);

impl Passphrase {
    /// `None` for an empty string: forms send `passphrase=` when the field is left blank.
    pub fn parse(raw: &str) -> Option<Self> {
        (!raw.is_empty()).then(|| Self(Sensitive::new(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// A requested time-to-live in seconds, before clamping to the plan.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ttl(i64);

impl Ttl {
    /// Integer seconds (surrounding blanks allowed); anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        raw.trim().parse::<i64>().ok().map(Self)
    }

    pub fn seconds(self) -> i64 {
        self.0
    }

    pub fn from_seconds(seconds: i64) -> Self {
        Self(seconds)
    }
}

/// A syntactically valid email address (one `@`, a dotted domain, no blanks or controls).
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (local, domain) = raw.split_once('@')?;
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        let ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains(['<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']'])
            && domain.contains('.')
            && labels_ok;
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `jane@example.com` → `ja***@ex***.com`: enough for the creator to recognise, too
    /// little to harvest.
    pub fn obfuscated(&self) -> String {
        obfuscate_email(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.obfuscated())
    }
}

/// Obfuscates a stored address the way OneTimeSecret shows recipients.
pub fn obfuscate_email(address: &str) -> String {
    let keep = |s: &str| s.chars().take(2).collect::<String>();
    match address.split_once('@') {
        Some((local, domain)) => match domain.rsplit_once('.') {
            Some((name, tld)) => format!("{}***@{}***.{}", keep(local), keep(name), tld),
            None => format!("{}***@{}***", keep(local), keep(domain)),
        },
        None => format!("{}***", keep(address)),
    }
}

/// A customer id; `anon` is the anonymous customer.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct CustId(String);

impl CustId {
    pub const ANONYMOUS: &'static str = "anon";

    pub fn anonymous() -> Self {
        Self(Self::ANONYMOUS.to_owned())
    }

    /// 1–64 characters of letters, digits and `._@+-`; `anon` is reserved.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw != Self::ANONYMOUS
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_anonymous(&self) -> bool {
        self.0 == Self::ANONYMOUS
    }
}

impl fmt::Display for CustId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a customer may do: the size of a secret and how long it may live.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Plan {
    pub name: String,
    pub max_secret_bytes: usize,
    pub max_ttl: i64,
}

impl Plan {
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            max_secret_bytes: 1024,
            max_ttl: 7 * 24 * 3600,
        }
    }

    pub fn basic() -> Self {
        Self {
            name: "basic".into(),
            max_secret_bytes: 10 * 1024,
            max_ttl: 30 * 24 * 3600,
        }
    }
}

/// A customer account, as the customer repository stores it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Customer {
    pub custid: CustId,
    pub email: Option<String>,
    pub plan: String,
    pub created: UnixTime,
}

/// An API token as stored: only a hash, plus a short prefix for humans to name it by.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredToken {
    pub prefix: String,
    pub hash: Vec<u8>,
    pub created: UnixTime,
}

/// The stored state of a secret's metadata. `expired` is never stored: it is what `new`
/// becomes once the secret's ttl has passed (see [`Metadata::state_at`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MetadataState {
    New,
    Received,
    Burned,
    Expired,
}

impl MetadataState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Received => "received",
            Self::Burned => "burned",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "new" => Self::New,
            "received" => Self::Received,
            "burned" => Self::Burned,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// The creator's record of one secret. It outlives the secret (twice its ttl) so the
/// creator can see what happened to it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Metadata {
    pub key: MetadataKey,
    pub custid: CustId,
    /// Present while the secret may still be revealed; `None` once received or burned.
    pub secret_key: Option<SecretKey>,
    /// The secret's granted ttl in seconds (after clamping).
    pub ttl: i64,
    pub state: MetadataState,
    pub created: UnixTime,
    pub updated: UnixTime,
    pub received: Option<UnixTime>,
    pub burned: Option<UnixTime>,
    /// Full addresses; shown only obfuscated, kept only as long as the metadata.
    pub recipients: Vec<String>,
    pub passphrase_required: bool,
    /// When the secret stops being revealable: `created + ttl`.
    pub secret_expires_at: UnixTime,
    /// When the metadata itself is forgotten: `created + 2 * ttl`.
    pub expires_at: UnixTime,
}

impl Metadata {
    /// The state as seen at `now`: a `new` secret whose ttl passed is `expired`.
    pub fn state_at(&self, now: UnixTime) -> MetadataState {
        match self.state {
            MetadataState::New if now >= self.secret_expires_at => MetadataState::Expired,
            state => state,
        }
    }

    pub fn is_alive_at(&self, now: UnixTime) -> bool {
        now < self.expires_at
    }

    /// Marks the metadata `received` at `now` (the store calls this inside its transaction).
    pub fn mark_received(&mut self, now: UnixTime) {
        self.state = MetadataState::Received;
        self.secret_key = None;
        self.received = Some(now);
        self.updated = now;
    }

    /// Marks the metadata `burned` at `now`.
    pub fn mark_burned(&mut self, now: UnixTime) {
        self.state = MetadataState::Burned;
        self.secret_key = None;
        self.burned = Some(now);
        self.updated = now;
    }
}

/// The encrypted secret as stored. The value is never stored in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub key: SecretKey,
    pub metadata_key: MetadataKey,
    /// AES-256-GCM ciphertext with its tag appended.
    pub ciphertext: Vec<u8>,
    pub nonce: [u8; 12],
    pub salt: [u8; 16],
    /// bcrypt hash of the (pre-hashed) passphrase, when one was set.
    pub passphrase_hash: Option<String>,
    pub failed_tries: u32,
    pub created: UnixTime,
    pub expires_at: UnixTime,
}

impl StoredSecret {
    pub fn is_alive_at(&self, now: UnixTime) -> bool {
        now < self.expires_at
    }
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("key", &self.key)
            .field("passphrase_required", &self.passphrase_hash.is_some())
            .field("failed_tries", &self.failed_tries)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What one sweep deleted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Swept {
    /// Secrets that expired unread.
    pub secrets: u64,
    /// Metadata records past twice their secret's ttl.
    pub metadata: u64,
}

impl Swept {
    pub fn total(self) -> u64 {
        self.secrets + self.metadata
    }
}

/// What a failed passphrase try did to the secret.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailedTry {
    /// Counted; this many tries remain.
    TriesLeft(u32),
    /// That was the last allowed try: the secret is burned.
    Burned,
    /// The secret was already gone (revealed, burned or expired meanwhile).
    Gone,
}

/// The creator's view of a metadata record at one instant: what the API shows.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MetadataView {
    pub custid: String,
    pub metadata_key: String,
    pub secret_key: Option<String>,
    pub ttl: i64,
    pub metadata_ttl: i64,
    pub secret_ttl: Option<i64>,
    pub state: MetadataState,
    pub created: UnixTime,
    pub updated: UnixTime,
    pub received: Option<UnixTime>,
    pub burned: Option<UnixTime>,
    pub recipient: Vec<String>,
    pub passphrase_required: bool,
}

impl MetadataView {
    pub fn of(metadata: &Metadata, now: UnixTime) -> Self {
        let state = metadata.state_at(now);
        let live = state == MetadataState::New;
        Self {
            custid: metadata.custid.to_string(),
            metadata_key: metadata.key.to_string(),
            secret_key: metadata
                .secret_key
                .as_ref()
                .filter(|_| live)
                .map(ToString::to_string),
            ttl: metadata.ttl,
            metadata_ttl: (metadata.expires_at - now).max(0),
            secret_ttl: live.then(|| (metadata.secret_expires_at - now).max(0)),
            state,
            created: metadata.created,
            updated: metadata.updated,
            received: metadata.received,
            burned: metadata.burned,
            recipient: metadata
                .recipients
                .iter()
                .map(|r| obfuscate_email(r))
                .collect(),
            passphrase_required: metadata.passphrase_required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_only_31_lowercase_base36() {
        assert!(SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").is_some());
        assert!(SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu").is_none());
        assert!(SecretKey::parse("153L8vbwqx5taskp92pf05uvgjefvu9").is_none());
        assert!(SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefv/9").is_none());
        assert!(MetadataKey::parse("").is_none());
    }

    #[test]
    fn ttl_is_integer_seconds() {
        assert_eq!(Ttl::parse(" 3600 ").map(Ttl::seconds), Some(3600));
        assert_eq!(Ttl::parse("-5").map(Ttl::seconds), Some(-5));
        assert!(Ttl::parse("1h").is_none());
        assert!(Ttl::parse("3600.5").is_none());
        assert!(Ttl::parse("").is_none());
    }

    #[test]
    fn emails_are_validated_and_obfuscated() {
        let email = Email::parse("jane.doe@example.com").unwrap();
        assert_eq!(email.obfuscated(), "ja***@ex***.com");
        assert_eq!(obfuscate_email("x@mail.example.org"), "x***@ma***.org");
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "jane doe@example.com",
            "jane@exa mple.com",
            "jane@-example.com",
            "a@b@c.com",
            "<jane@example.com>",
        ] {
            assert!(Email::parse(bad).is_none(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn empty_passphrase_means_none() {
        assert!(Passphrase::parse("").is_none());
        assert_eq!(Passphrase::parse(" x").unwrap().expose(), " x");
    }

    #[test]
    fn sensitive_values_never_print() {
        let value = Sensitive::new("hunter2");
        assert!(!format!("{value:?}").contains("hunter2"));
        let pass = Passphrase::parse("hunter2").unwrap();
        assert!(!format!("{pass:?}").contains("hunter2"));
        let key = SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap();
        assert!(!format!("{key:?}").contains("153l8vbwqx5taskp92pf05uvgjefvu9"));
    }

    #[test]
    fn new_metadata_expires_with_its_secret() {
        let md = Metadata {
            key: MetadataKey::parse("qjpjroeit8wra0ojeyhcw5pjsgwtuq7").unwrap(),
            custid: CustId::anonymous(),
            secret_key: SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9"),
            ttl: 100,
            state: MetadataState::New,
            created: 1000,
            updated: 1000,
            received: None,
            burned: None,
            recipients: vec!["jane@example.com".into()],
            passphrase_required: false,
            secret_expires_at: 1100,
            expires_at: 1200,
        };
        let view = MetadataView::of(&md, 1050);
        assert_eq!(view.state, MetadataState::New);
        assert_eq!(view.secret_ttl, Some(50));
        assert_eq!(view.metadata_ttl, 150);
        assert_eq!(view.recipient, vec!["ja***@ex***.com".to_string()]);
        let view = MetadataView::of(&md, 1100);
        assert_eq!(view.state, MetadataState::Expired);
        assert_eq!(view.secret_key, None);
        assert_eq!(view.secret_ttl, None);
        assert!(md.is_alive_at(1199));
        assert!(!md.is_alive_at(1200));
    }
}
