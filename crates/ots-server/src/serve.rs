//! `ots serve`: wires the chosen adapters to the use cases, serves HTTP, and runs the
//! background workers (mail delivery, the sweep) until a signal stops it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};

use ots_domain::{
    Clock, CustomerRepository, EventSink, Keyring, LogEvents, Mailer, MasterCheck, OtsError,
    Policy, Rng, SecretStore, Service, SystemClock, SystemRng,
};
use ots_http::HttpConfig;

use crate::settings::Settings;
use crate::store::{self, Stores};
use crate::workers::{self, Workers};

/// The use cases with the adapters chosen at run time.
pub type AppService = Service<
    Arc<dyn SecretStore>,
    Arc<dyn CustomerRepository>,
    Arc<dyn Mailer>,
    Arc<dyn Clock>,
    Arc<dyn Rng>,
>;

/// The use cases over the stores, with the real clock and randomness.
pub fn service(
    stores: &Stores,
    mailer: Arc<dyn Mailer>,
    keyring: Keyring,
    policy: Policy,
) -> AppService {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rng: Arc<dyn Rng> = Arc::new(SystemRng::new());
    AppService::new(
        stores.secrets.clone(),
        stores.customers.clone(),
        mailer,
        clock,
        rng,
        keyring,
        policy,
    )
}

/// Before anything is served: a master secret that opens nothing stops here; records a
/// previous release wrote with keys in the clear are upgraded; the store's check value is
/// sealed, or resealed after a rotation.
pub async fn prepare_store(svc: &AppService) -> Result<()> {
    if let Some(None) = svc.peek_master().await? {
        return Err(OtsError::WrongMasterSecret.into());
    }
    svc.upgrade_legacy_records().await?;
    match svc.check_master().await? {
        MasterCheck::FirstUse => info!("the store is now sealed under this master secret"),
        MasterCheck::Current => {}
        MasterCheck::Previous(n) => warn!(
            previous = n,
            "the store was sealed under a previous master secret; new rows use the current \
             one, and OTS_SECRET_PREVIOUS must keep the old one while its rows live"
        ),
    }
    Ok(())
}

pub async fn serve(settings: Settings) -> Result<()> {
    let keyring = settings.master.keyring()?;
    let stores = store::open(&settings.store, settings.migrate).await?;
    // Bound before the links are made: without a public URL they name the bound address.
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let public_url = settings.public_url(local);
    if settings.public_url.is_none() && local.ip().is_unspecified() {
        warn!(
            public_url = %public_url,
            "OTS_PUBLIC_URL is not set: links in mail and pages name this machine's loopback \
             address; set it to the address people reach"
        );
    }
    let metrics = Arc::new(ots_http::Metrics::new());
    let events: Vec<Arc<dyn EventSink>> = vec![metrics.clone(), Arc::new(LogEvents)];
    let svc = service(
        &stores,
        mailer(&settings, &public_url)?,
        keyring,
        settings.policy.clone(),
    )
    .with_events(Arc::new(events));
    prepare_store(&svc).await?;
    let svc = Arc::new(svc);

    let postman = tokio::spawn(deliver_forever(svc.clone(), settings.mail.poll));
    let sweeper = tokio::spawn(sweep_forever(svc.clone(), settings.sweep_interval));
    let http = HttpConfig {
        metrics,
        body_limit: settings.body_limit,
        rate_limits: settings.plans.rate_limits.clone(),
        trusted_proxy_header: settings.plans.trusted_proxy_header.clone(),
        public_url: public_url.clone(),
    };
    let app = ots_http::app(svc.clone(), &http);
    let mut workers = Workers::start(settings.workers, app, local, settings.shutdown_grace)?;
    info!(listen = ?local, store = %stores.description, public_url = %public_url, "ots is serving");
    workers::accept_until(listener, &mut workers, shutdown_signal()).await;
    sweeper.abort();
    postman.abort();
    workers.stop(svc.close()).await;
    info!("ots stopped");
    Ok(())
}

/// Deletes expired rows every `every`; the use case reports what went as an event.
async fn sweep_forever(svc: Arc<AppService>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if let Err(err) = svc.sweep_expired(1000).await {
            warn!(error = %err, "sweep failed; will retry");
        }
    }
}

/// SMTP when configured, else log-only, its links under `public_url`. Builds the transport
/// without connecting.
pub fn mailer(settings: &Settings, public_url: &str) -> Result<Arc<dyn Mailer>> {
    let (Some(url), Some(from)) = (&settings.mail.smtp_url, &settings.mail.from) else {
        info!("no SMTP configured: recipient mail is logged, not sent");
        return Ok(Arc::new(ots_mail::LogMailer));
    };
    let smtp = ots_mail::SmtpMailer::new(url, from, public_url).map_err(anyhow::Error::msg)?;
    info!(server = %store::redact(url), "recipient mail goes out by SMTP");
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
