//! What the machine allows, measured in the same run: a bare poem handler, pgbench running
//! ots's own SQL and the least SQL a pair needs, a raw SQLite loop, and the disk's own fsync.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::load::{self, Report};
use crate::server::{free_port, CpuMark, CpuPerOp, Get};

/// A bare poem handler answering constant JSON, on a two-worker runtime of its own (as ots
/// runs), driven like `/api/v1/status`.
pub async fn bare_poem(clients: usize, seconds: f64) -> Report {
    let port = free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the bare poem server");
        runtime.block_on(async move {
            let app = poem::Route::new().at(
                "/",
                poem::endpoint::make_sync(|_| {
                    poem::Response::builder()
                        .content_type("application/json")
                        .body(r#"{"status":"nominal"}"#)
                }),
            );
            let _ = poem::Server::new(poem::listener::TcpListener::bind(format!(
                "127.0.0.1:{port}"
            )))
            .run_with_graceful_shutdown(
                app,
                async move {
                    let _ = stopped.await;
                },
                Some(Duration::from_secs(1)),
            )
            .await;
        });
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = load::closed(
        "bare poem, constant JSON",
        &format!("127.0.0.1:{port}"),
        clients,
        seconds,
        Get::new("/"),
    )
    .await;
    let _ = stop.send(());
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    report
}

/// What ots sends for one share and one reveal without a passphrase when each comes alone
/// (ots-store-sql's `merged`): one `WITH` each, its rows bound as arrays, every column ots
/// writes. Under load ots puts many shares and reveals into one such statement; pgbench runs
/// them one pair at a time.
pub const PGBENCH_OTS_SQL: &str = r#"\set n random(1, 1000000000)
WITH m AS (INSERT INTO metadata (key, custid, secret_key, sealed_key, ttl, state, created, updated, received, burned, recipients, passphrase_required, secret_expires_at, expires_at) SELECT * FROM unnest(ARRAY['m' || :client_id || '-' || :n]::text[], ARRAY['anon']::text[], ARRAY['0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243444546474849']::text[], ARRAY[NULL]::text[], ARRAY[3600]::int8[], ARRAY['new']::text[], ARRAY[1700000000]::int8[], ARRAY[1700000000]::int8[], ARRAY[NULL]::int8[], ARRAY[NULL]::int8[], ARRAY['']::text[], ARRAY[false]::bool[], ARRAY[1900000000]::int8[], ARRAY[1900003600]::int8[])), s AS (INSERT INTO secrets (key, metadata_key, ciphertext, nonce, salt, scheme, key_id, passphrase_cost, passphrase_salt, passphrase_hash, legacy_aad, failed_tries, created, expires_at) SELECT * FROM unnest(ARRAY['s' || :client_id || '-' || :n]::text[], ARRAY['m' || :client_id || '-' || :n]::text[], ARRAY['\x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829']::bytea[], ARRAY['\x0102030405060708090a0b0c']::bytea[], ARRAY['\x0102030405060708090a0b0c0d0e0f10']::bytea[], ARRAY[2]::int8[], ARRAY['a1b2c3d4']::text[], ARRAY[NULL]::int8[], ARRAY[NULL]::bytea[], ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[0]::int8[], ARRAY[1700000000]::int8[], ARRAY[1900000000]::int8[])) SELECT 1 WHERE false;
WITH d AS (DELETE FROM secrets WHERE key = ANY(ARRAY['s' || :client_id || '-' || :n]::text[]) AND expires_at > 1700000001 AND scheme = 2 AND passphrase_cost IS NULL AND key_id = ANY(ARRAY['a1b2c3d4']::text[]) RETURNING key, metadata_key, ciphertext, nonce, salt, scheme, key_id, passphrase_cost, passphrase_salt, passphrase_hash, legacy_aad, failed_tries, created, expires_at), u AS (UPDATE metadata SET state = 'received', secret_key = NULL, received = 1700000001, updated = 1700000001 WHERE key IN (SELECT metadata_key FROM d)) SELECT key, metadata_key, ciphertext, nonce, salt, scheme, key_id, passphrase_cost, passphrase_salt, passphrase_hash, legacy_aad, failed_tries, created, expires_at FROM d;
"#;

/// The least SQL a pair needs, on tables with only what a store must keep and index (the
/// keys, the owner for recent, expiry for the sweep): one statement to share, one to reveal.
pub const PGBENCH_MIN_SCHEMA: &str = "
DROP TABLE IF EXISTS min_secrets; DROP TABLE IF EXISTS min_metadata;
CREATE TABLE min_metadata (key TEXT PRIMARY KEY, custid TEXT NOT NULL, state TEXT NOT NULL,
  received BIGINT, expires_at BIGINT NOT NULL);
CREATE INDEX min_metadata_custid ON min_metadata (custid);
CREATE INDEX min_metadata_expiry ON min_metadata (expires_at);
CREATE TABLE min_secrets (key TEXT PRIMARY KEY,
  metadata_key TEXT NOT NULL REFERENCES min_metadata (key) ON DELETE CASCADE,
  ciphertext BYTEA NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX min_secrets_expiry ON min_secrets (expires_at);
CREATE INDEX min_secrets_metadata ON min_secrets (metadata_key);
";

pub const PGBENCH_MIN_SQL: &str = r#"\set n random(1, 1000000000)
WITH m AS (INSERT INTO min_metadata VALUES ('m' || :client_id || '-' || :n, 'anon', 'new', NULL, 1900003600)), s AS (INSERT INTO min_secrets VALUES ('s' || :client_id || '-' || :n, 'm' || :client_id || '-' || :n, '\x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829', 1900000000)) SELECT 1;
WITH s AS (DELETE FROM min_secrets WHERE key = 's' || :client_id || '-' || :n RETURNING metadata_key, ciphertext), m AS (UPDATE min_metadata SET state = 'received', received = 1700000001 WHERE key = (SELECT metadata_key FROM s)) SELECT ciphertext FROM s;
"#;

/// Pairs a second: pgbench runs `script` (one transaction = one pair), prepared, as ots's
/// statements are, for `seconds` rounded up to whole seconds; with the CPU each side and the
/// machine spent per pair. The report has no latencies.
pub fn pgbench(
    url: &str,
    script_sql: &str,
    clients: usize,
    seconds: f64,
    dir: &Path,
) -> Result<(Report, CpuPerOp)> {
    let script = dir.join("pair.sql");
    std::fs::write(&script, script_sql)?;
    let mark = CpuMark::now(None);
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &(seconds.ceil() as u64).to_string(),
            url,
        ])
        .output()
        .context("running pgbench (apt-get install postgresql-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let said = || {
        format!(
            "pgbench said: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let field = |starts: &str, nth: usize| {
        text.lines()
            .find(|l| l.starts_with(starts))
            .and_then(|l| l.split_whitespace().nth(nth))
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let tps = field("tps", 2).with_context(said)?;
    let done = field("number of transactions actually processed", 5).with_context(said)?;
    let report = Report {
        name: "pgbench".into(),
        ops_per_sec: tps,
        count: done as usize,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        failed: 0,
        sent_late: None,
    };
    Ok((report, mark.per_op(done as usize)))
}

/// Pairs a second that SQLite itself allows with ots's durability: one loop, no server, the
/// same file settings (WAL, `synchronous = FULL`, `secure_delete`), ots's schema and rows,
/// one transaction per write (the share's two inserts; the reveal's delete and update).
pub fn raw_sqlite(path: &Path, seconds: f64) -> Result<f64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut pairs = 0u64;
    let ciphertext = [7u8; 42];
    while Instant::now() < deadline {
        let (m, s) = (format!("m{pairs:060}"), format!("s{pairs:060}"));
        conn.execute_batch("BEGIN")?;
        conn.prepare_cached(
            "INSERT INTO metadata (key, custid, secret_key, sealed_key, ttl, state, created, \
             updated, received, burned, recipients, passphrase_required, secret_expires_at, \
             expires_at) VALUES (?1, 'anon', ?2, NULL, 3600, 'new', 1700000000, 1700000000, \
             NULL, NULL, '', 0, 1900000000, 1900003600)",
        )?
        .execute(rusqlite::params![
            m,
            "0a0b0c0d0e0f1011121314151617181920212223242526272829"
        ])?;
        conn.prepare_cached(
            "INSERT INTO secrets (key, metadata_key, ciphertext, nonce, salt, scheme, key_id, \
             passphrase_cost, passphrase_salt, passphrase_hash, legacy_aad, failed_tries, \
             created, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, 2, 'a1b2c3d4', NULL, NULL, NULL, \
             NULL, 0, 1700000000, 1900000000)",
        )?
        .execute(rusqlite::params![
            s,
            m,
            &ciphertext[..],
            &[1u8; 12][..],
            &[2u8; 16][..]
        ])?;
        conn.execute_batch("COMMIT")?;
        conn.execute_batch("BEGIN")?;
        conn.prepare_cached(
            "DELETE FROM secrets WHERE key = ?1 AND expires_at > 1700000001 RETURNING metadata_key",
        )?
        .query_row([&s], |row| row.get::<_, String>(0))?;
        conn.prepare_cached(
            "UPDATE metadata SET state = 'received', secret_key = NULL, received = 1700000001, \
             updated = 1700000001 WHERE key = ?1",
        )?
        .execute([&m])?;
        conn.execute_batch("COMMIT")?;
        pairs += 1;
    }
    Ok(pairs as f64 / started.elapsed().as_secs_f64())
}

/// The disk under both SQL stores: 8 KiB appended and `fdatasync`ed in a loop, one at a time.
/// Every durable commit waits for one such flush, so its tail bounds a store's: a single
/// 50 ms flush at 2,000 pairs/s holds up 100 pairs, 1% of a 5 s run, whatever the server does.
pub struct Fsyncs {
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Flushes over 10 ms.
    pub slow: usize,
}

pub fn disk_fsync(dir: &Path, seconds: f64) -> Result<Fsyncs> {
    use std::io::Write;
    let path = dir.join("fsync.bin");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5a_u8; 8192];
    let mut samples = load::Samples::default();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        file.write_all(&block)?;
        let t = Instant::now();
        file.sync_data()?;
        samples.0.push(t.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    let slow = samples
        .0
        .iter()
        .filter(|d| **d > Duration::from_millis(10))
        .count();
    Ok(Fsyncs {
        per_sec: samples.0.len() as f64 / elapsed,
        p50: samples.pct(0.50),
        p99: samples.pct(0.99),
        max: samples.pct(1.0),
        slow,
    })
}

/// What the machine's kernel charges for what every request crosses, whatever the server
/// does: a system call, and a byte sent over loopback TCP to another thread and back (two
/// sends, two receives and two wake-ups, as a request and its answer). A machine on which
/// these cost several times more serves every route, ots's and the bare handler's alike,
/// several times slower; the ratios stay comparable, the absolute numbers do not. The round
/// trip is taken twice: with both ends asleep in `read`, and with both spinning, which
/// leaves out the wake-ups; on a virtual machine a wake-up from idle can cost most of it,
/// and a busy server, whose threads seldom sleep, pays the second more than the first.
pub struct Kernel {
    pub syscall: Duration,
    pub round_trip_p50: Duration,
    pub round_trip_p99: Duration,
    pub spinning_p50: Duration,
}

pub fn kernel_costs(dir: &Path, seconds: f64) -> Result<Kernel> {
    // `fstat` on an open file: a system call with nothing to look up or copy.
    let file = std::fs::File::open(dir)?;
    let calls = 100_000;
    let started = Instant::now();
    for _ in 0..calls {
        file.metadata()?;
    }
    let syscall = started.elapsed() / calls;

    let mut asleep = round_trip(seconds / 2.0, false)?;
    let mut spinning = round_trip(seconds / 2.0, true)?;
    Ok(Kernel {
        syscall,
        round_trip_p50: asleep.pct(0.50),
        round_trip_p99: asleep.pct(0.99),
        spinning_p50: spinning.pct(0.50),
    })
}

/// A byte over loopback TCP to an echoing thread and back, for `seconds`: each end waiting
/// in `read` (asleep, woken by the kernel), or with `spin`, both polling a non-blocking
/// socket, so that neither sleeps and no wake-up is paid.
fn round_trip(seconds: f64, spin: bool) -> Result<load::Samples> {
    use std::io::{ErrorKind, Read, Write};
    // One byte read into `byte`, polling while none has come when the socket does not block;
    // `false` at the end of the stream.
    fn read_byte(stream: &mut std::net::TcpStream, byte: &mut [u8; 1]) -> std::io::Result<bool> {
        loop {
            match stream.read(byte) {
                Ok(n) => return Ok(n == 1),
                Err(err) if err.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut peer, _) = listener.accept()?;
        peer.set_nodelay(true)?;
        peer.set_nonblocking(spin)?;
        let mut byte = [0u8; 1];
        while read_byte(&mut peer, &mut byte)? {
            peer.write_all(&byte)?;
        }
        Ok(())
    });
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    conn.set_nonblocking(spin)?;
    let mut samples = load::Samples::default();
    let mut byte = [7u8; 1];
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds && samples.0.len() < 50_000 {
        let t = Instant::now();
        conn.write_all(&byte)?;
        if !read_byte(&mut conn, &mut byte)? {
            anyhow::bail!("the echo thread hung up");
        }
        samples.0.push(t.elapsed());
    }
    drop(conn);
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    /// Both ways of waiting get every byte back, the spinning one through the reads that
    /// find nothing yet.
    #[test]
    fn a_byte_comes_back_asleep_and_spinning() {
        for spin in [false, true] {
            let samples = super::round_trip(0.05, spin).expect("the echo answers");
            assert!(!samples.0.is_empty(), "no round trip with spin = {spin}");
        }
    }
}
