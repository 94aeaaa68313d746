//! The command line: commands and their flags. Every flag also reads an environment variable
//! and a key of the config file ([`crate::config::parse_cli`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::admin;

#[derive(Parser, Debug)]
#[command(
    name = "ots",
    version,
    about = "One-time secrets, OneTimeSecret API v1 compatible"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
pub enum ConfigAction {
    /// Check every setting as `serve` would, without serving; exit 1 with the reason if wrong.
    Check(Box<ServeArgs>),
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where secrets live: `sqlite://PATH`, `postgres://USER@HOST/DB` or `memory://` (lost on
    /// restart). Default: SQLite in the data directory.
    #[arg(long, env = "OTS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder for the generated master secret and the embedded database.
    #[arg(long, env = "OTS_DATA_DIR", default_value = "./ots-data")]
    pub data_dir: PathBuf,
    /// The configuration file (TOML): any setting below by its long name with `_` for `-`
    /// (flags and environment win), plus plans, rate limits and the trusted proxy header.
    #[arg(long, env = "OTS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Postgres: most pooled connections per process.
    #[arg(long, env = "OTS_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,
    /// Postgres: milliseconds a request waits for a connection before answering 503.
    #[arg(long, env = "OTS_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Do not apply migrations at start (run `ots migrate` separately).
    #[arg(long, env = "OTS_NO_MIGRATE", default_value_t = false)]
    pub no_migrate: bool,
    /// Address to listen on.
    #[arg(long, env = "OTS_LISTEN", default_value = "127.0.0.1:7143")]
    pub listen: String,
    /// Base URL of links (mail, pages), e.g. https://secrets.example.com [default: http://
    /// and the address ots listens on, 127.0.0.1 for 0.0.0.0]
    #[arg(long, env = "OTS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// bcrypt cost of passphrase hashes (4–31).
    #[arg(long, env = "OTS_BCRYPT_COST", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,
    /// Passphrase hashes computed at once (default: all cores but one), so bcrypt cannot take
    /// every core from plain requests.
    #[arg(long, env = "OTS_BCRYPT_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub bcrypt_concurrency: Option<u32>,
    /// ttl of secrets whose request names none, in seconds.
    #[arg(long, env = "OTS_DEFAULT_TTL", default_value_t = 7 * 24 * 3600)]
    pub default_ttl: i64,
    /// Failed passphrase tries after which a secret is burned.
    #[arg(long, env = "OTS_MAX_PASSPHRASE_TRIES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_passphrase_tries: u32,
    /// Largest secret of anonymous requests, in bytes (overrides the config file; default 1024).
    #[arg(long, env = "OTS_ANONYMOUS_MAX_SECRET_BYTES")]
    pub anonymous_max_secret_bytes: Option<usize>,
    /// Longest ttl of anonymous requests, in seconds (overrides the config file; default 7 days).
    #[arg(long, env = "OTS_ANONYMOUS_MAX_TTL")]
    pub anonymous_max_ttl: Option<i64>,
    /// Whether sending the link by mail (`recipient`) needs an account.
    #[arg(long, env = "OTS_REQUIRE_ACCOUNT_FOR_EMAIL", default_value_t = false)]
    pub require_account_for_email: bool,
    /// SMTP server for recipient mail: smtp://HOST:PORT, smtp://USER:PASS@HOST:587?tls=starttls,
    /// smtps://USER:PASS@HOST. Unset: mail is only logged.
    #[arg(long, env = "OTS_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of recipient mail, e.g. `ots <noreply@example.com>`.
    #[arg(long, env = "OTS_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Milliseconds between looks at the mail outbox.
    #[arg(long, env = "OTS_MAIL_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub mail_poll_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "OTS_BODY_LIMIT", default_value_t = 1 << 20)]
    pub body_limit: usize,
    /// Seconds between sweeps of expired secrets.
    #[arg(long, env = "OTS_SWEEP_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_interval: u64,
    /// HTTP worker threads, each serving its share of the connections; 0, the default,
    /// starts one per CPU the process may run on.
    #[arg(long, env = "OTS_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "OTS_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `ots=debug`.
    #[arg(long, env = "OTS_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "OTS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}
