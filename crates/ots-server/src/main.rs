//! `ots`: the composition root. Reads configuration, chooses adapters, wires them to the
//! domain, and serves. The only crate that knows every other.

use std::path::Path;

use anyhow::{Context, Result};
use tracing::info;

mod admin;
mod cli;
mod config;
mod master_secret;
mod serve;
mod settings;
mod store;
mod workers;

use cli::{Cli, Command, ConfigAction, ServeArgs};
use settings::Settings;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            Command::Serve(args) => {
                let settings = Settings::from_args(*args)?;
                init_logging(&settings.log, &settings.log_format)?;
                serve::serve(settings).await
            }
            Command::Migrate(store) => migrate(&store).await,
            Command::Config {
                action: ConfigAction::Check(args),
            } => check_config(*args).await,
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

/// Applies the schema migrations, then upgrades what a previous release wrote (which needs
/// the master secret) and seals the check value: what `serve` does before it binds.
async fn migrate(args: &cli::StoreArgs) -> Result<()> {
    init_logging("info", "text")?;
    let keyring = settings::MasterSecret::from_env(&args.data_dir)?.keyring()?;
    let stores = store::open(args, true).await?;
    let mailer = std::sync::Arc::new(ots_mail::LogMailer);
    let policy = settings::policy_of(&config::FileConfig::load(args.config.as_deref())?.plans()?);
    serve::prepare_store(&serve::service(&stores, mailer, keyring, policy)).await?;
    info!(store = %stores.description, "migrations applied");
    Ok(())
}

/// Everything `serve` validates before it binds, without side effects (no master secret is
/// generated, no database is opened); prints the settings in force, secrets redacted.
async fn check_config(args: ServeArgs) -> Result<()> {
    let settings = Settings::from_args(args)?;
    serve::mailer(&settings, &settings.public_url(settings.listen))?;
    settings.print();
    println!(
        "store sealed under: {}",
        master_opens_store(&settings).await?
    );
    println!("configuration OK");
    Ok(())
}

/// Which master secret opens the store's check value, opening the store only if it exists
/// and changing nothing. A store that no given secret opens is an error: `serve` would
/// refuse to start.
async fn master_opens_store(settings: &Settings) -> Result<String> {
    let url = store::database_url(&settings.store);
    let missing_file = url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !std::path::Path::new(path).exists());
    if url.starts_with("memory://") || missing_file {
        return Ok("nothing yet (no store)".into());
    }
    let Some(keyring) = settings.master.existing_keyring()? else {
        return Ok("nothing yet (no master secret)".into());
    };
    let stores = store::open(&settings.store, false)
        .await
        .context("opening the store to check the master secret")?;
    let svc = serve::service(
        &stores,
        std::sync::Arc::new(ots_mail::LogMailer),
        keyring,
        settings.policy.clone(),
    );
    let found = svc.peek_master().await;
    svc.close().await;
    match found? {
        None => Ok("nothing yet (no check value: `serve` seals it)".into()),
        Some(Some(0)) => Ok("the current master secret".into()),
        Some(Some(n)) => Ok(format!("previous master secret number {n} (a rotation)")),
        Some(None) => Err(ots_domain::OtsError::WrongMasterSecret.into()),
    }
}

/// The spec comes from the routes alone: no store, no key, no service.
fn openapi(write: Option<&Path>) -> Result<()> {
    match write {
        None => print!("{}", ots_http::spec_json()),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("openapi.json"), ots_http::spec_json())?;
            std::fs::write(dir.join("openapi.yaml"), ots_http::spec_yaml())?;
            eprintln!("wrote {}/openapi.json and openapi.yaml", dir.display());
        }
    }
    Ok(())
}
