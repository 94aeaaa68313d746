//! `ots serve`: wires the chosen adapters to the use cases, serves HTTP, and runs the
//! background workers (mail delivery, the sweep) until a signal stops it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};

use ots_domain::{
    Cipher, Clock, CustomerRepository, EventSink, LogEvents, Mailer, Rng, SecretStore, Service,
    SystemClock, SystemRng,
};
use ots_http::HttpConfig;

use crate::settings::Settings;
use crate::store;

/// The use cases with the adapters chosen at run time.
pub type AppService = Service<
    Arc<dyn SecretStore>,
    Arc<dyn CustomerRepository>,
    Arc<dyn Mailer>,
    Arc<dyn Clock>,
    Arc<dyn Rng>,
>;

pub async fn serve(settings: Settings) -> Result<()> {
    let master = settings.master.resolve()?;
    let cipher = Cipher::new(master.as_bytes()).context("the master secret is too short")?;
    drop(master);
    let stores = store::open(&settings.store, settings.migrate).await?;
    let mailer = mailer(&settings)?;
    let metrics = Arc::new(ots_http::Metrics::new());
    let events: Vec<Arc<dyn EventSink>> = vec![metrics.clone(), Arc::new(LogEvents)];
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rng: Arc<dyn Rng> = Arc::new(SystemRng::new());
    let svc = Arc::new(
        AppService::new(
            stores.secrets,
            stores.customers,
            mailer,
            clock,
            rng,
            cipher,
            settings.policy.clone(),
        )
        .with_events(Arc::new(events)),
    );

    let postman = tokio::spawn(deliver_forever(svc.clone(), settings.mail.poll));
    let sweeper = tokio::spawn(sweep_forever(svc.clone(), settings.sweep_interval));
    let http = HttpConfig {
        metrics,
        body_limit: settings.body_limit,
        rate_limits: settings.plans.rate_limits.clone(),
        trusted_proxy_header: settings.plans.trusted_proxy_header.clone(),
        public_url: settings.public_url.clone(),
    };
    let app = ots_http::app(svc.clone(), &http);
    let listener = poem::listener::TcpListener::bind(settings.listen);
    let acceptor = poem::listener::Listener::into_acceptor(listener)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let local = poem::listener::Acceptor::local_addr(&acceptor)
        .first()
        .and_then(|a| a.as_socket_addr().copied());
    info!(listen = ?local, store = %stores.description, public_url = %settings.public_url, "ots is serving");
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown_signal(), Some(settings.shutdown_grace))
        .await
        .context("serving")?;
    sweeper.abort();
    postman.abort();
    svc.close().await;
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

/// SMTP when configured, else log-only. Builds the transport without connecting.
pub fn mailer(settings: &Settings) -> Result<Arc<dyn Mailer>> {
    let (Some(url), Some(from)) = (&settings.mail.smtp_url, &settings.mail.from) else {
        info!("no SMTP configured: recipient mail is logged, not sent");
        return Ok(Arc::new(ots_mail::LogMailer));
    };
    let smtp =
        ots_mail::SmtpMailer::new(url, from, &settings.public_url).map_err(anyhow::Error::msg)?;
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
