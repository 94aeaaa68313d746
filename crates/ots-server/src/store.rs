//! Chooses the store from the database URL: one `match`, in one place.

use std::sync::Arc;

use anyhow::{bail, Result};
use ots_domain::{CustomerRepository, SecretRepository};

use crate::StoreArgs;

pub struct Stores {
    pub secrets: Arc<dyn SecretRepository>,
    pub customers: Arc<dyn CustomerRepository>,
    /// For logs: the kind of store, never credentials.
    pub description: String,
}

pub async fn open(args: &StoreArgs) -> Result<Stores> {
    let url = args.database_url.as_deref().unwrap_or("memory://");
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("memory") => {
            let store = Arc::new(ots_store_memory::MemoryStore::new());
            Ok(Stores {
                secrets: store.clone(),
                customers: store,
                description: "memory (secrets are lost on restart)".into(),
            })
        }
        _ => bail!("unsupported database URL scheme in {:?}: use memory://", redact(url)),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://…@{}", &url[..start], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
