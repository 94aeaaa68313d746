//! Fresh Postgres databases for tests.
//!
//! Where Postgres comes from: `TEST_DATABASE_URL` (or `DATABASE_URL`) when set; otherwise a
//! testcontainers Postgres when a Docker engine answers (one container per test database,
//! removed with it); otherwise the test is skipped with a loud line, and
//! `OTS_REQUIRE_POSTGRES=1` turns that skip into a failure.

use sqlx::{Connection, PgConnection};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::ContainerAsync;

use ots_domain::{random_string, SystemRng, KEY_ALPHABET};

/// A database that exists for one test; [`TestDatabase::drop_database`] removes it.
pub struct TestDatabase {
    /// URL of the fresh database.
    pub url: String,
    admin_url: String,
    name: String,
    _container: Option<ContainerAsync<Postgres>>,
}

fn with_database(url: &str, database: &str) -> String {
    // Replace the path of `postgres://user@host:port/db?params` with `database`.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn admin_url() -> Result<(String, Option<ContainerAsync<Postgres>>), String> {
    if let Some(url) = ["TEST_DATABASE_URL", "DATABASE_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
    {
        return Ok((url, None));
    }
    let container = Postgres::default().start().await.map_err(|e| {
        format!("no TEST_DATABASE_URL and no Docker engine for testcontainers ({e})")
    })?;
    let host = container.get_host().await.map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("postgres://postgres:postgres@{host}:{port}/postgres");
    Ok((url, Some(container)))
}

/// A fresh, empty database, or `None` (after a loud line on stderr) when no Postgres can be
/// had here. Panics instead of skipping when `OTS_REQUIRE_POSTGRES=1`.
pub async fn fresh_database() -> Option<TestDatabase> {
    match try_fresh_database().await {
        Ok(db) => Some(db),
        Err(why) => {
            if std::env::var("OTS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("OTS_REQUIRE_POSTGRES=1 but Postgres is not available: {why}");
            }
            announce_skip(&format!(
                "Postgres test not run: {why}. Set TEST_DATABASE_URL (and \
                 OTS_REQUIRE_POSTGRES=1 to fail instead of skipping)"
            ));
            None
        }
    }
}

/// Says loudly that a test did not run, on the process's real stderr: cargo's test harness
/// captures `eprintln!` (and shows it only for failures), not writes to the stream itself, so
/// a skipped test shows in the terminal of whoever ran the tests.
pub fn announce_skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {what} !!!!!\n");
}

async fn try_fresh_database() -> Result<TestDatabase, String> {
    let (admin_url, container) = admin_url().await?;
    let name = format!(
        "ots_test_{}",
        random_string(&SystemRng::new(), 16, KEY_ALPHABET)?
    );
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(&admin_url)))?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("cannot create a test database: {e}"))?;
    let _ = admin.close().await;
    Ok(TestDatabase {
        url: with_database(&admin_url, &name),
        admin_url,
        name,
        _container: container,
    })
}

impl TestDatabase {
    /// Drops the database (closing whatever still uses it).
    pub async fn drop_database(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            if let Err(e) = sqlx::query(&sql).execute(&mut admin).await {
                eprintln!("could not drop test database {}: {e}", self.name);
            }
            let _ = admin.close().await;
        }
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn swaps_the_database_in_a_url() {
        assert_eq!(
            super::with_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
