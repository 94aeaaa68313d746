//! Chooses the store from the database URL: one `match`, in one place.

use std::sync::Arc;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use ots_domain::{CustomerRepository, SecretStore};

use crate::cli::StoreArgs;

pub struct Stores {
    pub secrets: Arc<dyn SecretStore>,
    pub customers: Arc<dyn CustomerRepository>,
    /// For logs: the kind of store, never credentials.
    pub description: String,
}

/// The database URL in force: the configured one, or SQLite in the data directory.
pub fn database_url(args: &StoreArgs) -> String {
    match &args.database_url {
        Some(url) if !url.is_empty() => url.clone(),
        _ => format!("sqlite://{}", args.data_dir.join("ots.db").display()),
    }
}

fn both<S: SecretStore + CustomerRepository + 'static>(store: S, description: String) -> Stores {
    let store = Arc::new(store);
    Stores {
        secrets: store.clone(),
        customers: store,
        description,
    }
}

/// Opens the store the URL names (`migrate`: apply migrations first).
pub async fn open(args: &StoreArgs, migrate: bool) -> Result<Stores> {
    let url = database_url(args);
    check_url(&url)?;
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("memory") => Ok(both(
            ots_store_memory::MemoryStore::new(),
            "memory (secrets are lost on restart)".into(),
        )),
        Some("sqlite") => {
            if args.database_url.is_none() {
                crate::master_secret::create_private_dir(&args.data_dir)?;
            }
            let store = ots_store_sqlite::connect(&url, migrate)
                .await
                .with_context(|| format!("opening {url}"))?;
            Ok(both(store, url))
        }
        Some("postgres" | "postgresql") => {
            let settings = ots_store_postgres::PgSettings {
                max_connections: args.db_max_connections,
                acquire_timeout: Duration::from_millis(args.db_acquire_timeout_ms),
                migrate,
                ..Default::default()
            };
            let store = ots_store_postgres::connect(&url, &settings)
                .await
                .with_context(|| format!("connecting to {}", redact(&url)))?;
            Ok(both(store, redact(&url)))
        }
        _ => bail!(
            "unsupported database URL {:?}: use memory://, sqlite://PATH or postgres://…",
            redact(&url)
        ),
    }
}

/// Whether the URL names a store ots knows, with a clear error if not.
pub fn check_url(url: &str) -> Result<()> {
    match url.split_once("://") {
        Some(("memory", _)) => Ok(()),
        Some(("sqlite", path)) if !path.is_empty() => Ok(()),
        Some(("postgres" | "postgresql", rest)) if !rest.is_empty() => Ok(()),
        _ => bail!(
            "unsupported database URL {:?}: use memory://, sqlite://PATH or postgres://USER@HOST/DB",
            redact(url)
        ),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}://…@{}", &url[..start], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
