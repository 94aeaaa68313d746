//! `ots`: the composition root. Reads configuration, chooses adapters, wires them to the
//! domain, and serves. The only crate that knows every other.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing::{info, warn};

use ots_domain::{
    Cipher, Clock, CustomerRepository, Mailer, Policy, Rng, SecretStore, SystemClock, SystemRng,
};
use ots_http::{AppService, HttpConfig};

mod admin;
mod config;
mod master_secret;
mod store;

#[derive(Parser, Debug)]
#[command(
    name = "ots",
    version,
    about = "One-time secrets, OneTimeSecret API v1 compatible"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API, its spec and its docs.
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit.
    Migrate(StoreArgs),
    /// Validate the configuration (file, environment, flags) and print what is in force.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage customer accounts (works while a server runs on the same store).
    Customer {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        action: admin::CustomerAction,
    },
    /// Manage customers' API tokens.
    Token {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        action: admin::TokenAction,
    },
    /// Print the OpenAPI spec (JSON), or write openapi.json and openapi.yaml into a folder.
    Openapi {
        /// Folder to write openapi.json and openapi.yaml into.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Check every setting as `serve` would, without serving; exit 1 with the reason if wrong.
    Check(Box<ServeArgs>),
}

#[derive(Args, Debug, Clone)]
struct StoreArgs {
    /// Where secrets live: `sqlite://PATH`, `postgres://USER@HOST/DB` or `memory://` (lost on
    /// restart). Default: SQLite in the data directory.
    #[arg(long, env = "OTS_DATABASE_URL")]
    database_url: Option<String>,
    /// Folder for the generated master secret and the embedded database.
    #[arg(long, env = "OTS_DATA_DIR", default_value = "./ots-data")]
    data_dir: PathBuf,
    /// The configuration file (TOML): any setting below by its long name with `_` for `-`
    /// (flags and environment win), plus plans, rate limits and the trusted proxy header.
    #[arg(long, env = "OTS_CONFIG")]
    config: Option<PathBuf>,
    /// Postgres: most pooled connections per process.
    #[arg(long, env = "OTS_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    db_max_connections: u32,
    /// Postgres: milliseconds a request waits for a connection before answering 503.
    #[arg(long, env = "OTS_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    db_acquire_timeout_ms: u64,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Do not apply migrations at start (run `ots migrate` separately).
    #[arg(long, env = "OTS_NO_MIGRATE", default_value_t = false)]
    no_migrate: bool,
    /// Address to listen on.
    #[arg(long, env = "OTS_LISTEN", default_value = "127.0.0.1:7143")]
    listen: String,
    /// Base URL of links (mail, pages), e.g. https://secrets.example.com.
    #[arg(long, env = "OTS_PUBLIC_URL", default_value = "http://127.0.0.1:7143")]
    public_url: String,
    /// bcrypt cost of passphrase hashes (4–31).
    #[arg(long, env = "OTS_BCRYPT_COST", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    /// Passphrase hashes computed at once (default: all cores but one), so bcrypt cannot take
    /// every core from plain requests.
    #[arg(long, env = "OTS_BCRYPT_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    bcrypt_concurrency: Option<u32>,
    /// ttl of secrets whose request names none, in seconds.
    #[arg(long, env = "OTS_DEFAULT_TTL", default_value_t = 7 * 24 * 3600)]
    default_ttl: i64,
    /// Failed passphrase tries after which a secret is burned.
    #[arg(long, env = "OTS_MAX_PASSPHRASE_TRIES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    max_passphrase_tries: u32,
    /// Largest secret of anonymous requests, in bytes (overrides the config file; default 1024).
    #[arg(long, env = "OTS_ANONYMOUS_MAX_SECRET_BYTES")]
    anonymous_max_secret_bytes: Option<usize>,
    /// Longest ttl of anonymous requests, in seconds (overrides the config file; default 7 days).
    #[arg(long, env = "OTS_ANONYMOUS_MAX_TTL")]
    anonymous_max_ttl: Option<i64>,
    /// Whether sending the link by mail (`recipient`) needs an account.
    #[arg(long, env = "OTS_REQUIRE_ACCOUNT_FOR_EMAIL", default_value_t = false)]
    require_account_for_email: bool,
    /// SMTP server for recipient mail: smtp://HOST:PORT, smtp://USER:PASS@HOST:587?tls=starttls,
    /// smtps://USER:PASS@HOST. Unset: mail is only logged.
    #[arg(long, env = "OTS_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// Sender of recipient mail, e.g. `ots <noreply@example.com>`.
    #[arg(long, env = "OTS_MAIL_FROM")]
    mail_from: Option<String>,
    /// Milliseconds between looks at the mail outbox.
    #[arg(long, env = "OTS_MAIL_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    mail_poll_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "OTS_BODY_LIMIT", default_value_t = 1 << 20)]
    body_limit: usize,
    /// Seconds between sweeps of expired secrets.
    #[arg(long, env = "OTS_SWEEP_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    sweep_interval: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "OTS_SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `ots=debug`.
    #[arg(long, env = "OTS_LOG", default_value = "info")]
    log: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "OTS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

impl ServeArgs {
    fn policy(&self, plans: &config::Plans) -> Result<Policy> {
        let mut anonymous = plans.anonymous.clone();
        if let Some(bytes) = self.anonymous_max_secret_bytes {
            anonymous.max_secret_bytes = bytes;
        }
        if let Some(ttl) = self.anonymous_max_ttl {
            anonymous.max_ttl = ttl;
        }
        if anonymous.max_ttl < 60 || self.default_ttl < 60 {
            bail!("ttls must be at least 60 seconds");
        }
        let defaults = policy_of(plans);
        Ok(Policy {
            bcrypt_concurrency: self
                .bcrypt_concurrency
                .map_or(defaults.bcrypt_concurrency, |n| n as usize),
            default_ttl: self.default_ttl,
            max_passphrase_tries: self.max_passphrase_tries,
            bcrypt_cost: self.bcrypt_cost,
            anonymous_plan: anonymous,
            require_account_for_email: self.require_account_for_email,
            ..defaults
        })
    }
}

/// The policy parts that come from the plans alone (what admin commands need too).
fn policy_of(plans: &config::Plans) -> Policy {
    Policy {
        anonymous_plan: plans.anonymous.clone(),
        plans: plans.customer_plans.clone(),
        default_plan: plans.default_plan.clone(),
        ..Policy::default()
    }
}

fn main() -> std::process::ExitCode {
    let cli = match config::parse_cli::<Cli>() {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(admin::exit_code(&err))
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Migrate(store) => {
                init_logging("info", "text")?;
                let stores = store::open(&store, true).await?;
                info!(store = %stores.description, "migrations applied");
                Ok(())
            }
            Command::Config {
                action: ConfigAction::Check(args),
            } => check_config(&args),
            Command::Customer { store, action } => admin::customer(&store, action).await,
            Command::Token { store, action } => admin::token(&store, action).await,
            Command::Openapi { write } => openapi(write.as_deref()),
        }
    })
}

fn init_logging(filter: &str, format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

fn build_service(
    secrets: Arc<dyn SecretStore>,
    customers: Arc<dyn CustomerRepository>,
    mailer: Arc<dyn Mailer>,
    cipher: Cipher,
    policy: Policy,
) -> Arc<AppService> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rng: Arc<dyn Rng> = Arc::new(SystemRng::new());
    Arc::new(AppService::new(
        secrets, customers, mailer, clock, rng, cipher, policy,
    ))
}

/// Everything `serve` validates before it binds, without side effects (no master secret is
/// generated, no database is opened); prints the settings in force, secrets redacted.
fn check_config(args: &ServeArgs) -> Result<()> {
    let file = config::FileConfig::load(args.store.config.as_deref())?;
    let plans = file.plans()?;
    let policy = args.policy(&plans)?;
    args.listen
        .parse::<std::net::SocketAddr>()
        .with_context(|| format!("listen address {:?} is not HOST:PORT", args.listen))?;
    if !(args.public_url.starts_with("http://") || args.public_url.starts_with("https://")) {
        bail!(
            "public URL {:?} must start with http:// or https://",
            args.public_url
        );
    }
    let url = store::database_url(&args.store);
    store::check_url(&url)?;
    match std::env::var("OTS_SECRET") {
        Ok(secret) => {
            master_secret::check(&secret)?;
        }
        Err(_) => println!(
            "master secret: none set; `serve` uses (or creates) {}",
            args.store.data_dir.join("master.key").display()
        ),
    }
    mailer(args)?;
    println!("listen: {}", args.listen);
    println!("public url: {}", args.public_url);
    println!("store: {}", store::redact(&url));
    println!(
        "smtp: {}",
        args.smtp_url
            .as_deref()
            .map_or("off (logged only)".to_owned(), store::redact)
    );
    println!(
        "default ttl: {} s, passphrase tries: {}, bcrypt cost: {}",
        policy.default_ttl, policy.max_passphrase_tries, policy.bcrypt_cost
    );
    for plan in std::iter::once(&policy.anonymous_plan).chain(&policy.plans) {
        let limits = plans
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
    println!("configuration OK");
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    init_logging(&args.log, &args.log_format)?;
    let file = config::FileConfig::load(args.store.config.as_deref())?;
    let plans = file.plans()?;
    let policy = args.policy(&plans)?;
    let master = master_secret::load(std::env::var("OTS_SECRET").ok(), &args.store.data_dir)?;
    let cipher = Cipher::new(master.as_bytes()).context("the master secret is too short")?;
    let stores = store::open(&args.store, !args.no_migrate).await?;
    let mailer = mailer(&args)?;
    let svc = build_service(stores.secrets, stores.customers, mailer, cipher, policy);

    let postman = tokio::spawn(deliver_forever(
        svc.clone(),
        Duration::from_millis(args.mail_poll_ms),
    ));
    let metrics = Arc::new(ots_http::Metrics::new());
    let sweeper = tokio::spawn(sweep_forever(
        svc.clone(),
        Duration::from_secs(args.sweep_interval),
        metrics.clone(),
    ));
    let http = HttpConfig {
        metrics: metrics.clone(),
        body_limit: args.body_limit,
        rate_limits: plans.rate_limits.clone(),
        trusted_proxy_header: plans.trusted_proxy_header.clone(),
        public_url: args.public_url.clone(),
    };
    let app = ots_http::app(svc.clone(), &http);
    let listener = poem::listener::TcpListener::bind(args.listen.clone());
    let acceptor = poem::listener::Listener::into_acceptor(listener)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = poem::listener::Acceptor::local_addr(&acceptor)
        .first()
        .and_then(|a| a.as_socket_addr().copied());
    info!(listen = ?local, store = %stores.description, public_url = %args.public_url, "ots is serving");
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            app,
            shutdown_signal(),
            Some(Duration::from_secs(args.shutdown_grace)),
        )
        .await
        .context("serving")?;
    sweeper.abort();
    postman.abort();
    svc.close().await;
    info!("ots stopped");
    Ok(())
}

async fn sweep_forever(svc: Arc<AppService>, every: Duration, metrics: Arc<ots_http::Metrics>) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        match svc.sweep_expired(1000).await {
            Ok(swept) if swept.total() == 0 => {}
            Ok(swept) => {
                metrics.expired(swept.secrets);
                info!(
                    secrets = swept.secrets,
                    metadata = swept.metadata,
                    "swept expired rows"
                );
            }
            Err(err) => warn!(error = %err, "sweep failed; will retry"),
        }
    }
}

/// SMTP when configured, else log-only.
fn mailer(args: &ServeArgs) -> Result<Arc<dyn Mailer>> {
    let Some(url) = args.smtp_url.clone().filter(|u| !u.is_empty()) else {
        info!("no SMTP configured: recipient mail is logged, not sent");
        return Ok(Arc::new(ots_mail::LogMailer));
    };
    let from = args
        .mail_from
        .clone()
        .context("OTS_SMTP_URL is set but OTS_MAIL_FROM (the sender address) is not")?;
    let smtp =
        ots_mail::SmtpMailer::new(&url, &from, &args.public_url).map_err(anyhow::Error::msg)?;
    info!(server = %store::redact(&url), "recipient mail goes out by SMTP");
    Ok(Arc::new(smtp))
}

/// Delivers the outbox: a message is sent within a poll interval of its share, and a failed
/// one is retried with backoff; an outage is logged on every failed try, and loses nothing.
async fn deliver_forever(svc: Arc<AppService>, every: Duration) {
    const BATCH: u32 = 50;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        loop {
            match svc.deliver_due_mail(BATCH).await {
                Ok(report) if report.sent + report.failed + report.dropped == BATCH => continue,
                Ok(_) => break,
                Err(err) => {
                    warn!(error = %err, "mail delivery round failed; will retry");
                    break;
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(err) => {
                    warn!(error = %err, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutting down: finishing in-flight requests");
}

fn openapi(write: Option<&Path>) -> Result<()> {
    // The spec does not depend on the store or keys; an in-memory service describes it.
    let store = Arc::new(ots_store_memory::MemoryStore::new());
    let svc = || {
        build_service(
            store.clone(),
            store.clone(),
            Arc::new(ots_mail::LogMailer),
            Cipher::new(&[0; 32]).expect("32 bytes"),
            Policy::default(),
        )
    };
    match write {
        None => print!("{}", ots_http::spec_json(svc())),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("openapi.json"), ots_http::spec_json(svc()))?;
            std::fs::write(dir.join("openapi.yaml"), ots_http::spec_yaml(svc()))?;
            eprintln!("wrote {}/openapi.json and openapi.yaml", dir.display());
        }
    }
    Ok(())
}
