//! Values a caller hands in: the secret, a passphrase, a ttl, a recipient; and the plans
//! that bound them.

use std::fmt;

use zeroize::Zeroizing;

/// Length of a value made by `generate`.
pub const GENERATED_LEN: usize = 12;
/// Letters and digits without look-alikes: no 0/O, no 1/l/I.
pub const GENERATED_ALPHABET: &[u8; 57] =
    b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
