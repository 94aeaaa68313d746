//! `ots-client`: the terminal commands of the generated client, against any ots (or
//! OneTimeSecret v1) server. Values come from stdin and go to stdout, so they never appear
//! in the process list or the shell history; credentials and passphrases come from the
//! environment.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ots_client::{connect, error_message, parse_link, types, Client, Login};

#[derive(Parser)]
#[command(
    name = "ots-client",
    version,
    about = "Share and reveal one-time secrets from the terminal"
)]
struct Cli {
    /// The server (scheme, host and port). A link given to a command names its own server.
    #[arg(
        long,
        env = "OTS_SERVER",
        default_value = "http://127.0.0.1:7143",
        global = true
    )]
    server: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Share the value read from stdin; prints the link to share, and the private link (to
    /// see or burn it) on stderr. The passphrase, if any, comes from OTS_PASSPHRASE.
    Share {
        /// Seconds the secret lives (the server clamps it to the plan).
        #[arg(long)]
        ttl: Option<i64>,
        /// An address the server mails the link to.
        #[arg(long)]
        recipient: Option<String>,
    },
    /// Generate a value on the server, print it, and print its link on stderr.
    Generate {
        #[arg(long)]
        ttl: Option<i64>,
        #[arg(long)]
        recipient: Option<String>,
    },
    /// Reveal a secret (a link or a key), once, and print its value. The passphrase, if
    /// any, comes from OTS_PASSPHRASE.
    Reveal { link: String },
    /// Show a secret's metadata (a private link or a metadata key) as JSON.
    Metadata { link: String },
    /// Burn an unread secret (a private link or a metadata key); prints its metadata.
    Burn { link: String },
    /// The customer's recent metadata as JSON, newest first (needs credentials).
    Recent {
        /// At most this many (1 to 100).
        #[arg(long)]
        limit: Option<std::num::NonZeroU64>,
    },
}

/// Credentials from OTS_CUSTID and OTS_APITOKEN, when both are set.
fn login() -> Option<Login> {
    let custid = std::env::var("OTS_CUSTID").ok().filter(|v| !v.is_empty())?;
    let apitoken = std::env::var("OTS_APITOKEN")
        .ok()
        .filter(|v| !v.is_empty())?;
    Some(Login { custid, apitoken })
}

fn passphrase() -> Option<String> {
    std::env::var("OTS_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
}

struct Failed(String, u8);

fn usage(message: impl Into<String>) -> Failed {
    Failed(message.into(), 2)
}

/// `--recipient`, checked against the spec's pattern before anything is sent.
fn parse_recipient<T>(raw: Option<String>) -> Result<Option<T>, Failed>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    raw.map(|r| r.parse())
        .transpose()
        .map_err(|e| usage(format!("recipient is not an email address: {e}")))
}

fn api(err: ots_client::Error<types::Error>) -> Failed {
    Failed(error_message(&err), 1)
}

fn client_for(server: &str) -> Result<Client, Failed> {
    connect(server, login().as_ref()).map_err(|e| Failed(e.to_string(), 1))
}

/// The server and key of `link`: the link's own server when it names one.
fn target(cli_server: &str, link: &str, kind: &str) -> Result<(Client, String), Failed> {
    let (server, key) =
        parse_link(link, kind).ok_or_else(|| usage(format!("not a {kind} link or key: {link}")))?;
    let server = server.unwrap_or_else(|| cli_server.trim_end_matches('/').to_owned());
    Ok((client_for(&server)?, key))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failed> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failed(e.to_string(), 1))?;
    println!("{text}");
    Ok(())
}

fn announce(server: &str, metadata: &types::Metadata) {
    let server = server.trim_end_matches('/');
    if let Some(key) = &metadata.secret_key {
        println!("{server}/secret/{key}");
    }
    eprintln!(
        "private link (see or burn it): {server}/private/{}",
        metadata.metadata_key
    );
}

async fn run(cli: Cli) -> Result<(), Failed> {
    let server = cli.server.trim_end_matches('/').to_owned();
    match cli.command {
        Command::Share { ttl, recipient } => {
            let mut value = String::new();
            if std::io::stdin().is_terminal() {
                eprintln!("Type the secret, then Ctrl-D:");
            }
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| Failed(format!("cannot read stdin: {e}"), 1))?;
            // One trailing newline is the terminal's or echo's, not the secret's.
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(usage("nothing to share: stdin was empty"));
            }
            let body = types::ShareParams {
                secret: value.parse().map_err(|e| usage(format!("secret: {e}")))?,
                passphrase: passphrase(),
                ttl,
                recipient: parse_recipient(recipient)?,
            };
            let shared = client_for(&server)?
                .share_secret(&body)
                .await
                .map_err(api)?
                .into_inner();
            announce(&server, &shared);
        }
        Command::Generate { ttl, recipient } => {
            let body = types::GenerateParams {
                passphrase: passphrase(),
                ttl,
                recipient: parse_recipient(recipient)?,
            };
            let generated = client_for(&server)?
                .generate_secret(&body)
                .await
                .map_err(api)?
                .into_inner();
            if let Some(value) = &generated.value {
                eprintln!("generated value (shown once):");
                println!("{value}");
            }
            let mut link = std::io::stderr();
            if let Some(key) = &generated.secret_key {
                let _ = writeln!(link, "link: {server}/secret/{key}");
            }
            let _ = writeln!(
                link,
                "private link: {server}/private/{}",
                generated.metadata_key
            );
        }
        Command::Reveal { link } => {
            let (client, key) = target(&server, &link, "secret")?;
            let body = types::RevealParams {
                passphrase: passphrase(),
            };
            let secret = client.reveal_secret(&key, &body).await.map_err(api)?;
            let mut out = std::io::stdout();
            let _ = out.write_all(secret.value.as_bytes());
            if out.is_terminal() {
                let _ = out.write_all(b"\n");
            }
        }
        Command::Metadata { link } => {
            let (client, key) = target(&server, &link, "private")?;
            print_json(&client.get_metadata(&key).await.map_err(api)?.into_inner())?;
        }
        Command::Burn { link } => {
            let (client, key) = target(&server, &link, "private")?;
            print_json(&client.burn_secret(&key).await.map_err(api)?.into_inner())?;
        }
        Command::Recent { limit } => {
            if login().is_none() {
                return Err(usage("recent needs OTS_CUSTID and OTS_APITOKEN"));
            }
            let items = client_for(&server)?
                .list_recent(limit)
                .await
                .map_err(api)?
                .into_inner();
            print_json(&items)?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed(message, code)) => {
            eprintln!("ots-client: {message}");
            ExitCode::from(code)
        }
    }
}
