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

use cli::{Cli, Command, ConfigAction, ServeArgs};
use settings::Settings;

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
            Command::Migrate(store) => {
                init_logging("info", "text")?;
                let stores = store::open(&store, true).await?;
                info!(store = %stores.description, "migrations applied");
                Ok(())
            }
            Command::Config {
                action: ConfigAction::Check(args),
            } => check_config(*args),
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

/// Everything `serve` validates before it binds, without side effects (no master secret is
/// generated, no database is opened); prints the settings in force, secrets redacted.
fn check_config(args: ServeArgs) -> Result<()> {
    let settings = Settings::from_args(args)?;
    serve::mailer(&settings)?;
    settings.print();
    println!("configuration OK");
    Ok(())
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
