//! `ots customer …` and `ots token …`: account administration on the configured store.
//!
//! Exit codes scripts can test: 0 done, 1 failure, 2 usage, 3 unknown customer, 4 already
//! exists, 5 invalid input.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;

use ots_domain::{
    Accounts, Clock, CustomerRepository, OtsError, Rng, SecretRepository, SystemClock, SystemRng,
};

use crate::cli::StoreArgs;
use crate::store;

#[derive(Subcommand, Debug)]
pub enum CustomerAction {
    /// Create a customer.
    Add {
        custid: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        plan: Option<String>,
    },
    /// List customers: custid, plan, email.
    List,
    /// Move a customer to another plan.
    Plan { custid: String, plan: String },
    /// Remove a customer; its unread secrets are burned.
    Remove { custid: String },
}

#[derive(Subcommand, Debug)]
pub enum TokenAction {
    /// Issue a new API token and print it (once: only its hash is kept).
    Issue { custid: String },
    /// Register an existing token, read from standard input (moving from another
    /// OneTimeSecret deployment keeps scripts working).
    Import { custid: String },
    /// Revoke the tokens that start with TOKEN_PREFIX (at least 4 characters).
    Revoke {
        custid: String,
        token_prefix: String,
    },
}

type DynAccounts =
    Accounts<Arc<dyn SecretRepository>, Arc<dyn CustomerRepository>, Arc<dyn Clock>, Arc<dyn Rng>>;

async fn accounts(args: &StoreArgs) -> Result<DynAccounts> {
    let plans = crate::config::FileConfig::load(args.config.as_deref())?.plans()?;
    let stores = store::open(args, true).await?;
    Ok(Accounts::new(
        stores.secrets,
        stores.customers,
        Arc::new(SystemClock),
        Arc::new(SystemRng::new()),
        crate::settings::policy_of(&plans),
    ))
}

pub async fn customer(args: &StoreArgs, action: CustomerAction) -> Result<()> {
    let accounts = accounts(args).await?;
    match action {
        CustomerAction::Add {
            custid,
            email,
            plan,
        } => {
            let c = accounts
                .add_customer(&custid, email.as_deref(), plan.as_deref())
                .await?;
            println!("added {} on plan {}", c.custid, c.plan);
        }
        CustomerAction::List => {
            for c in accounts.list_customers().await? {
                println!("{}\t{}\t{}", c.custid, c.plan, c.email.unwrap_or_default());
            }
        }
        CustomerAction::Plan { custid, plan } => {
            accounts.set_plan(&custid, &plan).await?;
            println!("{custid} is on plan {plan}");
        }
        CustomerAction::Remove { custid } => {
            let burned = accounts.remove_customer(&custid).await?;
            println!("removed {custid}; {burned} secrets and metadata records burned");
        }
    }
    Ok(())
}

pub async fn token(args: &StoreArgs, action: TokenAction) -> Result<()> {
    let accounts = accounts(args).await?;
    match action {
        TokenAction::Issue { custid } => {
            let token = accounts.issue_token(&custid).await?;
            println!("{token}");
            eprintln!("This token is shown once; only its hash is stored.");
        }
        TokenAction::Import { custid } => {
            let mut token = String::new();
            std::io::stdin()
                .read_to_string(&mut token)
                .context("reading the token from standard input")?;
            accounts.import_token(&custid, token.trim()).await?;
            println!("imported a token for {custid}");
        }
        TokenAction::Revoke {
            custid,
            token_prefix,
        } => {
            let n = accounts.revoke_tokens(&custid, &token_prefix).await?;
            println!("revoked {n} token(s) of {custid}");
            if n == 0 {
                anyhow::bail!(OtsError::Invalid(format!(
                    "no token of {custid} starts with {token_prefix:?}"
                )));
            }
        }
    }
    Ok(())
}

/// The exit code for an error: scripts tell "unknown" from "duplicate" from "failed".
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<OtsError>() {
        Some(OtsError::UnknownCustomer) => 3,
        Some(OtsError::Conflict(_)) => 4,
        Some(OtsError::Invalid(_) | OtsError::InvalidRecipient) => 5,
        _ => 1,
    }
}
