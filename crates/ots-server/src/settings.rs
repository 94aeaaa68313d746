//! Every setting of `serve`, checked and typed once at start-up from flags, environment and
//! the config file, master secret included. `serve` runs on it; `config check` prints it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use zeroize::Zeroizing;

use ots_domain::{Keyring, Policy};

use crate::cli::{ServeArgs, StoreArgs};
use crate::config::{FileConfig, Plans};
use crate::{master_secret, store};

/// The master secrets: the current one (given, or kept in the data directory), and previous
/// ones that still open what they sealed during a rotation. Resolving the current one
/// (reading or generating `master.key`) is a side effect only `serve` and `migrate` perform.
pub struct MasterSecret {
    current: Current,
    previous: Vec<Zeroizing<String>>,
}

enum Current {
    /// `OTS_SECRET`, already checked.
    Given(Zeroizing<String>),
    /// `master.key` in the data directory, made on first start.
    InDataDir(PathBuf),
}

impl MasterSecret {
    /// Reads `OTS_SECRET` and `OTS_SECRET_PREVIOUS` (comma-separated): the one place the
    /// process looks at them.
    pub fn from_env(data_dir: &std::path::Path) -> Result<Self> {
        let current = match std::env::var("OTS_SECRET") {
            Ok(secret) => {
                master_secret::check(&secret)?;
                Current::Given(secret.into())
            }
            Err(_) => Current::InDataDir(data_dir.to_owned()),
        };
        let previous = std::env::var("OTS_SECRET_PREVIOUS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                master_secret::check(s).context("in OTS_SECRET_PREVIOUS")?;
                Ok(Zeroizing::new(s.to_owned()))
            })
            .collect::<Result<_>>()?;
        Ok(Self { current, previous })
    }

    /// The keyring; creates `master.key` when the current secret is kept there and missing.
    pub fn keyring(&self) -> Result<Keyring> {
        let current = match &self.current {
            Current::Given(secret) => secret.clone(),
            Current::InDataDir(dir) => master_secret::load(None, dir)?.into(),
        };
        self.with_previous(&current)
    }

    /// The keyring if the current secret exists already: never creates one.
    pub fn existing_keyring(&self) -> Result<Option<Keyring>> {
        match &self.current {
            Current::Given(secret) => self.with_previous(secret).map(Some),
            Current::InDataDir(dir) if dir.join("master.key").exists() => self.keyring().map(Some),
            Current::InDataDir(_) => Ok(None),
        }
    }

    fn with_previous(&self, current: &str) -> Result<Keyring> {
        let mut ring =
            Keyring::new(current.as_bytes()).context("the master secret is too short")?;
        for previous in &self.previous {
            ring = ring
                .with_previous(previous.as_bytes())
                .context("a previous master secret is too short")?;
        }
        Ok(ring)
    }

    fn describe(&self) -> String {
        let current = match &self.current {
            Current::Given(_) => "from OTS_SECRET".to_owned(),
            Current::InDataDir(dir) => format!(
                "none set; `serve` uses (or creates) {}",
                dir.join("master.key").display()
            ),
        };
        match self.previous.len() {
            0 => current,
            n => format!("{current}, and {n} previous one(s) from OTS_SECRET_PREVIOUS"),
        }
    }
}

/// Mail settings: SMTP when `smtp_url` is set, else logged only.
pub struct MailSettings {
    pub smtp_url: Option<String>,
    pub from: Option<String>,
    pub poll: Duration,
}

/// The settings of `serve`.
pub struct Settings {
    pub store: StoreArgs,
    pub migrate: bool,
    pub listen: std::net::SocketAddr,
    /// The base of links as configured; without one, links name the address ots listens on
    /// (see [`Settings::public_url`]).
    pub public_url: Option<String>,
    pub policy: Policy,
    pub plans: Plans,
    pub master: MasterSecret,
    pub mail: MailSettings,
    pub body_limit: usize,
    pub sweep_interval: Duration,
    pub shutdown_grace: Duration,
    /// HTTP worker threads (see `workers`).
    pub workers: usize,
    pub log: String,
    pub log_format: String,
}

impl Settings {
    /// Checks every setting as `serve` needs it, without side effects.
    pub fn from_args(args: ServeArgs) -> Result<Self> {
        let plans = FileConfig::load(args.store.config.as_deref())?.plans()?;
        let policy = policy(&args, &plans)?;
        let listen = args
            .listen
            .parse()
            .with_context(|| format!("listen address {:?} is not HOST:PORT", args.listen))?;
        if let Some(url) = &args.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("public URL {url:?} must start with http:// or https://");
            }
        }
        store::check_url(&store::database_url(&args.store))?;
        let smtp_url = args.smtp_url.filter(|u| !u.is_empty());
        if smtp_url.is_some() && args.mail_from.is_none() {
            bail!("OTS_SMTP_URL is set but OTS_MAIL_FROM (the sender address) is not");
        }
        Ok(Self {
            master: MasterSecret::from_env(&args.store.data_dir)?,
            migrate: !args.no_migrate,
            listen,
            public_url: args.public_url,
            policy,
            plans,
            mail: MailSettings {
                smtp_url,
                from: args.mail_from,
                poll: Duration::from_millis(args.mail_poll_ms),
            },
            body_limit: args.body_limit,
            sweep_interval: Duration::from_secs(args.sweep_interval),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            workers: crate::workers::count(Some(args.workers)),
            log: args.log,
            log_format: args.log_format,
            store: args.store,
        })
    }

    /// The base of links in mail and pages: the configured one, or else `http://` and the
    /// address ots listens on (`listening`, the bound one: a port of 0 is the one the system
    /// gave), with loopback in place of an unspecified address (0.0.0.0, ::), which no link
    /// can name. Without it, a server moved to another port linked to the old one.
    pub fn public_url(&self, listening: std::net::SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => link_base(listening),
        }
    }

    /// What is in force, secrets and passwords redacted.
    pub fn print(&self) {
        let policy = &self.policy;
        println!("master secret: {}", self.master.describe());
        match self.listen.port() {
            0 => println!("listen: {} (a port the system picks at start)", self.listen),
            _ => println!("listen: {}", self.listen),
        }
        println!("http workers: {}", self.workers);
        match &self.public_url {
            Some(url) => println!("public url: {url}"),
            None => println!(
                "public url: {} (the listen address; set --public-url to the one people reach)",
                configured_link_base(self.listen)
            ),
        }
        println!(
            "store: {}",
            store::redact(&store::database_url(&self.store))
        );
        println!(
            "smtp: {}",
            self.mail
                .smtp_url
                .as_deref()
                .map_or("off (logged only)".to_owned(), store::redact)
        );
        println!(
            "default ttl: {} s, passphrase tries: {}, bcrypt cost: {}",
            policy.default_ttl, policy.max_passphrase_tries, policy.bcrypt_cost
        );
        for plan in std::iter::once(&policy.anonymous_plan).chain(&policy.plans) {
            let limits = self
                .plans
                .rate_limits
                .get(&plan.name)
                .copied()
                .unwrap_or_default();
            println!(
                "plan {}: {} bytes, ttl ≤ {} s, create {}/{} reveal {}/{} other {}/{} (burst/min)",
                plan.name,
                plan.max_secret_bytes,
                plan.max_ttl,
                limits.create.burst,
                limits.create.per_minute,
                limits.reveal.burst,
                limits.reveal.per_minute,
                limits.other.burst,
                limits.other.per_minute,
            );
        }
    }
}

fn policy(args: &ServeArgs, plans: &Plans) -> Result<Policy> {
    let mut anonymous = plans.anonymous.clone();
    if let Some(bytes) = args.anonymous_max_secret_bytes {
        anonymous.max_secret_bytes = bytes;
    }
    if let Some(ttl) = args.anonymous_max_ttl {
        anonymous.max_ttl = ttl;
    }
    if anonymous.max_ttl < 60 || args.default_ttl < 60 {
        bail!("ttls must be at least 60 seconds");
    }
    let defaults = policy_of(plans);
    Ok(Policy {
        bcrypt_concurrency: args
            .bcrypt_concurrency
            .map_or(defaults.bcrypt_concurrency, |n| n as usize),
        default_ttl: args.default_ttl,
        max_passphrase_tries: args.max_passphrase_tries,
        bcrypt_cost: args.bcrypt_cost,
        anonymous_plan: anonymous,
        require_account_for_email: args.require_account_for_email,
        ..defaults
    })
}

/// The policy parts that come from the plans alone (what admin commands need too).
pub fn policy_of(plans: &Plans) -> Policy {
    Policy {
        anonymous_plan: plans.anonymous.clone(),
        plans: plans.customer_plans.clone(),
        default_plan: plans.default_plan.clone(),
        ..Policy::default()
    }
}

/// `http://` and `listening`, loopback in place of an unspecified address.
fn link_base(listening: std::net::SocketAddr) -> String {
    let mut at = listening;
    if at.ip().is_unspecified() {
        at.set_ip(match at.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{at}")
}

/// The link base as the configuration gives it, before ots binds: a port of 0 is chosen by
/// the system at start, so it is named as such, not printed as a port links could use.
fn configured_link_base(listen: std::net::SocketAddr) -> String {
    match listen.port() {
        0 => format!(
            "{}:<the port the system picks at start>",
            link_base(listen).trim_end_matches(":0")
        ),
        _ => link_base(listen),
    }
}

#[cfg(test)]
mod tests {
    use super::{configured_link_base, link_base};

    #[test]
    fn a_port_of_zero_is_named_as_picked_at_start_not_printed_as_zero() {
        let base = |addr: &str| configured_link_base(addr.parse().unwrap());
        assert_eq!(
            base("127.0.0.1:0"),
            "http://127.0.0.1:<the port the system picks at start>"
        );
        assert_eq!(
            base("[::]:0"),
            "http://[::1]:<the port the system picks at start>"
        );
        assert_eq!(base("0.0.0.0:8080"), "http://127.0.0.1:8080");
    }

    #[test]
    fn links_name_the_address_listened_on_and_loopback_for_any() {
        let base = |addr: &str| link_base(addr.parse().unwrap());
        assert_eq!(base("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(base("10.1.2.3:7143"), "http://10.1.2.3:7143");
        assert_eq!(base("0.0.0.0:9000"), "http://127.0.0.1:9000");
        assert_eq!(base("[::]:9000"), "http://[::1]:9000");
        assert_eq!(base("[2001:db8::5]:443"), "http://[2001:db8::5]:443");
    }
}
