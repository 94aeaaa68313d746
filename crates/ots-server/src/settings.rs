//! Every setting of `serve`, checked and typed once at start-up from flags, environment and
//! the config file, master secret included. `serve` runs on it; `config check` prints it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use ots_domain::Policy;

use crate::cli::{ServeArgs, StoreArgs};
use crate::config::{FileConfig, Plans};
use crate::{master_secret, store};

/// Where the master secret comes from. Resolving it (reading or generating the file) is a
/// side effect that only `serve` performs.
pub enum MasterSecret {
    /// `OTS_SECRET`, already checked.
    Given(zeroize::Zeroizing<String>),
    /// `master.key` in the data directory, made on first start.
    InDataDir(PathBuf),
}

impl MasterSecret {
    /// Reads `OTS_SECRET`: the one place the process looks at it.
    fn from_env(data_dir: &std::path::Path) -> Result<Self> {
        match std::env::var("OTS_SECRET") {
            Ok(secret) => {
                master_secret::check(&secret)?;
                Ok(Self::Given(secret.into()))
            }
            Err(_) => Ok(Self::InDataDir(data_dir.to_owned())),
        }
    }

    /// The secret's bytes; creates `master.key` when it is missing.
    pub fn resolve(&self) -> Result<zeroize::Zeroizing<String>> {
        match self {
            Self::Given(secret) => Ok(secret.clone()),
            Self::InDataDir(dir) => master_secret::load(None, dir).map(Into::into),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Given(_) => "from OTS_SECRET".to_owned(),
            Self::InDataDir(dir) => format!(
                "none set; `serve` uses (or creates) {}",
                dir.join("master.key").display()
            ),
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
    pub public_url: String,
    pub policy: Policy,
    pub plans: Plans,
    pub master: MasterSecret,
    pub mail: MailSettings,
    pub body_limit: usize,
    pub sweep_interval: Duration,
    pub shutdown_grace: Duration,
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
        if !(args.public_url.starts_with("http://") || args.public_url.starts_with("https://")) {
            bail!(
                "public URL {:?} must start with http:// or https://",
                args.public_url
            );
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
            log: args.log,
            log_format: args.log_format,
            store: args.store,
        })
    }

    /// What is in force, secrets and passwords redacted.
    pub fn print(&self) {
        let policy = &self.policy;
        println!("master secret: {}", self.master.describe());
        println!("listen: {}", self.listen);
        println!("public url: {}", self.public_url);
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
