//! `just bench`: starts the release `ots` binary on each store and drives share+reveal pairs
//! from concurrent keep-alive clients, beside each store's ceiling measured in the same run:
//! `/api/v1/status` and a bare poem handler (memory), a raw SQLite loop with ots's
//! durability (SQLite), and pgbench with ots's own SQL and with the least SQL a pair needs
//! (Postgres). Then each store at half its peak rate on a fixed schedule (p99), plain
//! requests beside bcrypt, and resident memory. First, what the machine's kernel charges
//! for a system call and a loopback round trip, which every request on every route pays.
//!
//! Settings (environment): BENCH_SECONDS (default 5), BENCH_CLIENTS (default 32),
//! BENCH_ROUNDS and BENCH_ROUND_SECONDS (default 9 and 1: the in-memory store's pairs runs,
//! each between two `status` runs on the same process),
//! BENCH_STORES (default `memory,sqlite,postgres`),
//! BENCH_TIMELINE (set: every fixed-rate run prints each 50 ms window in which a pair took
//! over 10 ms, to tell one stall from a spread of slow pairs, the unix time their
//! schedule started, to line the windows up with Postgres's log or a trace, each process
//! the machine started meanwhile, each of the disk probe's flushes over 10 ms and each 50 ms
//! in which the host took the cores away (steal); a run
//! whose p99 is over 10 ms prints them unasked),
//! BENCH_PG_URL (an admin URL such as postgres://postgres@127.0.0.1:5432/test; Postgres runs
//! are skipped without it). Loopback only; every loop is bounded in time.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

mod ceilings;
mod http1;
mod load;
mod server;
mod spawns;
mod timer;

use load::Report;
use server::{
    quantile, rss_kib, slowest, start_ots, write_batches, writes_per_batch, CpuPerOp, Get, Pair,
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh database on the Postgres of `admin_url`, with ots's schema.
async fn bench_database(admin_url: &str, dir: &std::path::Path) -> Result<String> {
    let name = format!("ots_bench_{}", std::process::id());
    psql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )?;
    psql(admin_url, &format!("CREATE DATABASE {name}"))?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    let url = format!("{base}/{name}");
    // ots applies its migrations at start; run it once for the schema.
    drop(start_ots(&url, &dir.join("schema"), 4).await?);
    Ok(url)
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql").args([url, "-qAtc", sql]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Bytes the in-memory store holds for one revealed pair's metadata (data, not overhead): its
/// slot in the store's chunks (insertion number, its secret's id and record), its entry in the index of slot
/// numbers at hashbrown's 7/8 load, and the heap block of its custid ("anon"), as the ots
/// binary's allocator, mimalloc, sizes it (8 bytes). Its secret key derives from the metadata
/// key, so the record holds nothing of it (an empty `Vec` allocates nothing).
fn memory_bytes_per_metadata() -> u64 {
    let slot =
        std::mem::size_of::<Option<(u64, Option<ots_domain::SecretId>, ots_domain::Metadata)>>();
    let entry = std::mem::size_of::<(ots_domain::MetadataId, u32)>();
    (slot + entry * 8 / 7 + 8) as u64
}

/// What one store did, for the summary.
struct StoreRun {
    name: &'static str,
    pairs: Report,
    half: Report,
    /// How late a sleeping thread woke during the half-peak run.
    wakes: load::Wakes,
    /// The disk's flushes during the half-peak run (a store on disk).
    flushes: Option<load::Flushes>,
    /// The processes the machine started during the half-peak run (Linux).
    spawns: Option<spawns::Spawns>,
    idle_kib: u64,
    peak_kib: u64,
    /// Metadata records the process holds as data at the peak (in-memory store only).
    data_kib: u64,
    ceilings: Vec<(String, f64)>,
    /// What a ceiling run spent per pair, where it was measured (pgbench).
    ceiling_cpu: Vec<(String, CpuPerOp)>,
    /// CPU per pair in the closed loop, and per request of `/api/v1/status` (memory).
    cpu: CpuPerOp,
    /// CPU per pair in the half-peak run.
    half_cpu: CpuPerOp,
    /// CPU per operation of the framing ceiling's runs: per `status` request (memory), per
    /// pgbench pair (Postgres).
    frame_cpu: Option<CpuPerOp>,
    /// The rounds against the framing ceiling (memory: `/api/v1/status`; Postgres: pgbench on
    /// the least SQL).
    rounds: Option<Rounds>,
    /// Writes per batch (one statement or one transaction each) at full speed and at half
    /// the peak, for a store that merges writes.
    batched: [Option<f64>; 2],
    /// How long a batch took to run and commit (ots's `ots_store_batch_seconds`), at full
    /// speed and at half the peak.
    took: [Option<Spread>; 2],
    /// How long a write took from its queue to its answer, likewise
    /// (`ots_store_write_seconds`).
    answered: [Option<Spread>; 2],
    /// How long ots's handlers took for a pair's requests, likewise
    /// (`ots_http_request_duration_seconds`, share and reveal).
    handled: [Option<Spread>; 2],
}

/// What one of ots's histograms counted during a run, in seconds: p50, p99, and the bucket
/// the slowest fell in.
#[derive(Clone, Copy)]
struct Spread {
    p50: f64,
    p99: f64,
    slowest: (f64, f64),
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (lower, upper) = self.slowest;
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, the slowest ",
            self.p50 * 1e3,
            self.p99 * 1e3
        )?;
        if upper.is_finite() {
            write!(f, "{:.1}–{:.1} ms", lower * 1e3, upper * 1e3)
        } else {
            write!(f, "over {:.1} ms", lower * 1e3)
        }
    }
}

/// The closed-loop rounds of the in-memory store: each pairs run is framed by `status` runs
/// on the same process, so the two are measured under the same conditions.
struct Rounds {
    /// Per round: pairs' requests a second, the mean of the `status` runs before and after.
    each: Vec<(f64, f64)>,
    /// The round whose ratio is the median.
    median: usize,
}

impl Rounds {
    fn ratio(&self, i: usize) -> f64 {
        let (pairs, status) = self.each[i];
        pairs / status
    }
}

/// The ceiling run that frames each round of pairs, on the same machine just before and
/// just after it.
enum Frame<'a> {
    /// `/api/v1/status` on the same ots process (requests a second; a pair is two).
    Status,
    /// pgbench on the least SQL, on the same Postgres beside the same ots (pairs a second).
    Pgbench {
        url: &'a str,
        dir: &'a std::path::Path,
        clients: usize,
    },
}

impl Frame<'_> {
    /// One run of the ceiling, printed, with its CPU per operation.
    async fn run(
        &self,
        label: &str,
        (pid, addr): (u32, &str),
        clients: usize,
        seconds: f64,
    ) -> Result<(Report, CpuPerOp)> {
        Ok(match self {
            Frame::Status => {
                let get = Get::new("/api/v1/status");
                let run = load::closed(label, addr, clients, seconds, get);
                let run = CpuPerOp::measure(pid, run).await;
                run.0.print("req");
                run
            }
            Frame::Pgbench { url, dir, clients } => {
                let sql = ceilings::PGBENCH_MIN_SQL;
                let run = ceilings::pgbench(url, sql, *clients, seconds, dir)?;
                println!("{label:<40} {:>9.0} pair/s", run.0.ops_per_sec);
                run
            }
        })
    }

    /// A pairs run's rate in the frame's unit.
    fn pairs_in_unit(&self, pairs_per_sec: f64) -> f64 {
        match self {
            Frame::Status => pairs_per_sec * 2.0,
            Frame::Pgbench { .. } => pairs_per_sec,
        }
    }
}

async fn run_store(
    name: &'static str,
    url: &str,
    dir: &std::path::Path,
    clients: usize,
    seconds: f64,
    frame: Option<(Frame<'_>, usize, f64)>,
) -> Result<StoreRun> {
    // One pairs run of `seconds`, or the rounds' shorter runs, each framed by ceiling runs.
    let (status_rounds, loop_seconds) = match &frame {
        Some((_, rounds, round_seconds)) => (*rounds, *round_seconds),
        None => (0, seconds),
    };
    let server = start_ots(url, &dir.join(name), 12).await?;
    let addr = server.addr.clone();
    let pid = server.child.id();
    // Let the allocator and the pools settle before reading the idle size.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(idle_kib));
    let watcher = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let frame_label = match &frame {
        Some((Frame::Status, ..)) => format!("ots {name}: /api/v1/status"),
        _ => "pgbench, the least SQL".to_owned(),
    };
    let frame_run = || async {
        match &frame {
            Some((frame, ..)) => {
                let run = frame.run(&frame_label, (pid, &addr), clients, loop_seconds);
                run.await.map(Some)
            }
            None => Ok(None),
        }
    };
    // ceiling, pairs, ceiling, pairs, …, ceiling: a drift of the machine's speed over the
    // rounds moves a pairs run and the two ceiling runs around it alike.
    let mut statuses = Vec::new();
    let mut pair_runs = Vec::new();
    let tally_before = write_batches(&addr).await;
    for round in 0..status_rounds.max(1) {
        statuses.extend(frame_run().await?);
        let label = match status_rounds {
            0 | 1 => format!("ots {name}: share+reveal pairs"),
            n => format!("ots {name}: share+reveal pairs, {}/{n}", round + 1),
        };
        let run = CpuPerOp::measure(
            pid,
            load::closed(&label, &addr, clients, loop_seconds, Pair::new(false)),
        )
        .await;
        run.0.print("pair");
        pair_runs.push(run);
    }
    let tally_full = write_batches(&addr).await;
    statuses.extend(frame_run().await?);
    let rounds = frame.as_ref().map(|(frame, ..)| {
        let each: Vec<(f64, f64)> = pair_runs
            .iter()
            .enumerate()
            .map(|(i, (pairs, _))| {
                let status = (statuses[i].0.ops_per_sec + statuses[i + 1].0.ops_per_sec) / 2.0;
                (frame.pairs_in_unit(pairs.ops_per_sec), status)
            })
            .collect();
        let mut order: Vec<usize> = (0..each.len()).collect();
        order.sort_by(|&a, &b| (each[a].0 / each[a].1).total_cmp(&(each[b].0 / each[b].1)));
        Rounds {
            median: order[order.len() / 2],
            each,
        }
    });
    let all_pairs: f64 = pair_runs.iter().map(|(p, _)| p.ops_per_sec).sum();
    let cpu = CpuPerOp::mean(&pair_runs);
    let frame_cpu = (!statuses.is_empty()).then(|| CpuPerOp::mean(&statuses));
    let pairs = match &rounds {
        Some(r) => pair_runs.swap_remove(r.median).0,
        None => pair_runs.swap_remove(0).0,
    };
    let probe = load::WakeProbe::start();
    let spawn_probe = spawns::SpawnProbe::start();
    // A store on disk: its disk's flushes beside the run, to line up with the pairs' stalls.
    let flush_probe = match name {
        "memory" => None,
        _ => Some(load::FlushProbe::start(dir)?),
    };
    let (half, half_cpu) = CpuPerOp::measure(
        pid,
        load::fixed_rate(
            &format!("ots {name}: pairs at half that, fixed"),
            &addr,
            pairs.ops_per_sec / 2.0,
            seconds,
            clients,
            Pair::new(false),
        ),
    )
    .await;
    let wakes = probe.stop();
    let spawns = spawn_probe.map(spawns::SpawnProbe::stop);
    let flushes = flush_probe.map(load::FlushProbe::stop).transpose()?;
    half.print("pair");
    let timeline = load::timeline_wanted(&half);
    if let (Some(spawns), true) = (&spawns, timeline) {
        for s in &spawns.named {
            eprintln!(
                "  the machine: {} (pid {}) started by {:>5} ms",
                s.name,
                s.pid,
                s.at.as_millis()
            );
        }
    }
    if timeline {
        for (at, stolen) in &wakes.stolen_in {
            eprintln!(
                "  the host: took {:.0} ms of the cores in the 50 ms from {:>5} ms",
                stolen.as_secs_f64() * 1e3,
                at.as_millis()
            );
        }
    }
    if let (Some(flushes), true) = (&flushes, timeline) {
        for (at, took) in &flushes.slow {
            eprintln!(
                "  the disk: a 4 KiB flush begun at {:>5} ms took {:.1} ms",
                at.as_millis(),
                took.as_secs_f64() * 1e3
            );
        }
    }
    let tally_half = write_batches(&addr).await;
    let batched = [
        writes_per_batch(tally_before.as_ref(), tally_full.as_ref()),
        writes_per_batch(tally_full.as_ref(), tally_half.as_ref()),
    ];
    // p50, p99 and the slowest of one of ots's histograms at full speed, then at half the peak.
    let quantiles = |of: fn(&server::Tally) -> &server::Histogram| {
        let [before, full, half] =
            [&tally_before, &tally_full, &tally_half].map(|t| t.as_ref().map(of));
        let both = |before, after| {
            Some(Spread {
                p50: quantile(before, after, 0.5)?,
                p99: quantile(before, after, 0.99)?,
                slowest: slowest(before, after)?,
            })
        };
        [both(before, full), both(full, half)]
    };
    let took = quantiles(|t| &t.took);
    let answered = quantiles(|t| &t.answered);
    let handled = quantiles(|t| &t.handled);
    watcher.abort();
    let peak_kib = peak.load(Ordering::Relaxed);
    let data_kib = if name == "memory" {
        let records = all_pairs * loop_seconds + half.ops_per_sec * seconds;
        (records as u64 * memory_bytes_per_metadata()) / 1024
    } else {
        0
    };

    // Plain requests while bcrypt (cost 12) passphrase pairs run beside them.
    let bcrypt_clients = (clients / 4).max(2);
    let bcrypt = tokio::spawn({
        let addr = addr.clone();
        async move {
            load::closed(
                "  bcrypt pairs (cost 12)",
                &addr,
                bcrypt_clients,
                seconds,
                Pair::new(true),
            )
            .await
        }
    });
    let plain = load::closed(
        &format!("ots {name}: status beside bcrypt"),
        &addr,
        clients,
        seconds,
        Get::new("/api/v1/status"),
    )
    .await;
    plain.print("req");
    if let Ok(b) = bcrypt.await {
        b.print("pair");
    }
    drop(server);
    Ok(StoreRun {
        name,
        pairs,
        half,
        half_cpu,
        wakes,
        flushes,
        spawns,
        idle_kib,
        peak_kib,
        data_kib,
        ceilings: Vec::new(),
        ceiling_cpu: Vec::new(),
        cpu,
        frame_cpu,
        rounds,
        batched,
        took,
        answered,
        handled,
    })
}

/// The load generator is one thread, as `wrk -t1` and pgbench's client are small: what it
/// spends, ots cannot (a bare poem ceiling runs on a runtime of its own, see `ceilings`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let seconds: f64 = env_or("BENCH_SECONDS", 5.0);
    let clients: usize = env_or("BENCH_CLIENTS", 32);
    let rounds: usize = env_or("BENCH_ROUNDS", 9).max(1);
    let round_seconds: f64 = env_or("BENCH_ROUND_SECONDS", 1.0);
    let pg_admin = std::env::var("BENCH_PG_URL").ok().filter(|u| !u.is_empty());
    let dir = std::env::temp_dir().join(format!("ots-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "ots benchmark: {clients} clients, {seconds} s per run, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let kernel = ceilings::kernel_costs(&dir, 1.0)?;
    println!(
        "{:<40} {:>9.2} µs a system call; loopback TCP round trip p50 {:.1} µs, p99 {:.1} µs \
         (asleep), p50 {:.1} µs (spinning)\n",
        "machine:",
        kernel.syscall.as_secs_f64() * 1e6,
        kernel.round_trip_p50.as_secs_f64() * 1e6,
        kernel.round_trip_p99.as_secs_f64() * 1e6,
        kernel.spinning_p50.as_secs_f64() * 1e6,
    );
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "memory,sqlite,postgres".into());
    let wanted = |store: &str| stores.split(',').any(|s| s.trim() == store);
    let mut runs = Vec::new();

    // In memory: the ceiling is ots's own cheapest route, and a bare poem handler.
    if wanted("memory") {
        let poem = ceilings::bare_poem(clients, seconds).await;
        poem.print("req");
        let mut run = run_store(
            "memory",
            "memory://",
            &dir,
            clients,
            seconds,
            Some((Frame::Status, rounds, round_seconds)),
        )
        .await?;
        let status = run.rounds.as_ref().map_or(0.0, |r| r.each[r.median].1);
        run.ceilings = vec![
            ("/api/v1/status".into(), status),
            ("bare poem".into(), poem.ops_per_sec),
        ];
        runs.push(run);
        println!();
    }

    // The disk both SQL stores flush to.
    let disk = if wanted("sqlite") || (wanted("postgres") && pg_admin.is_some()) {
        let fsyncs = {
            let (dir, secs) = (dir.clone(), seconds);
            tokio::task::spawn_blocking(move || ceilings::disk_fsync(&dir, secs)).await??
        };
        println!(
            "{:<40} {:>9.0} fsync/s  p50 {:>7.2} ms   p99 {:>7.2} ms   max {:.1} ms, {} over 10 ms\n",
            "disk: 8 KiB write + fdatasync",
            fsyncs.per_sec,
            fsyncs.p50.as_secs_f64() * 1e3,
            fsyncs.p99.as_secs_f64() * 1e3,
            fsyncs.max.as_secs_f64() * 1e3,
            fsyncs.slow
        );
        Some(fsyncs)
    } else {
        None
    };

    // SQLite: the raw loop on a file with ots's schema.
    if wanted("sqlite") {
        let raw_path = dir.join("raw").join("ots.db");
        drop(
            start_ots(
                &format!("sqlite://{}", raw_path.display()),
                &dir.join("raw"),
                4,
            )
            .await?,
        );
        let raw = {
            let (path, secs) = (raw_path.clone(), seconds);
            tokio::task::spawn_blocking(move || ceilings::raw_sqlite(&path, secs)).await??
        };
        println!(
            "{:<40} {raw:>9.0} pair/s",
            "raw SQLite loop, 1 transaction/write"
        );
        let sqlite_url = format!("sqlite://{}/bench.db", dir.join("sqlite").display());
        let mut run = run_store("sqlite", &sqlite_url, &dir, clients, seconds, None).await?;
        run.ceilings = vec![("raw SQLite loop".into(), raw)];
        runs.push(run);
        println!();
    }

    // Postgres: pgbench with ots's SQL and with the least SQL, on the same server.
    let pg_url = match pg_admin.as_ref().filter(|_| wanted("postgres")) {
        Some(admin) => Some(bench_database(admin, &dir).await?),
        None => {
            println!("(set BENCH_PG_URL to include Postgres and pgbench)");
            None
        }
    };
    if let Some(url) = &pg_url {
        let pg_clients = clients.min(16);
        let (ots_sql, ots_sql_cpu) =
            ceilings::pgbench(url, ceilings::PGBENCH_OTS_SQL, pg_clients, seconds, &dir)?;
        let ots_sql = ots_sql.ops_per_sec;
        println!("{:<40} {ots_sql:>9.0} pair/s", "pgbench, ots's SQL");
        psql(url, ceilings::PGBENCH_MIN_SCHEMA)?;
        // pgbench on the least SQL frames each round of ots's pairs, as `status` does in
        // memory: the machine's speed drifts by more than the ratio's margins within a run.
        let frame = Frame::Pgbench {
            url,
            dir: &dir,
            clients: pg_clients,
        };
        let pg_round_seconds = round_seconds.ceil().max(1.0);
        let frame = Some((frame, rounds, pg_round_seconds));
        let mut run = run_store("postgres", url, &dir, clients, seconds, frame).await?;
        let min_sql = run.rounds.as_ref().map_or(0.0, |r| r.each[r.median].1);
        let min_sql_cpu = run.frame_cpu.take().unwrap_or_default();
        run.ceilings = vec![
            ("pgbench, the least SQL".into(), min_sql),
            ("pgbench, ots's SQL".into(), ots_sql),
        ];
        run.ceiling_cpu = vec![
            ("pgbench, the least SQL".into(), min_sql_cpu),
            ("pgbench, ots's SQL".into(), ots_sql_cpu),
        ];
        runs.push(run);
        if let Some(admin) = &pg_admin {
            let name = url.rsplit('/').next().unwrap_or_default();
            let _ = psql(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
        println!();
    }

    println!("summary (a pair is 2 requests; memory's ceilings are requests a second)");
    for run in &runs {
        let pairs = run.pairs.ops_per_sec;
        for (name, ceiling) in &run.ceilings {
            let (mine, unit) = if run.name == "memory" {
                (pairs * 2.0, "req/s")
            } else {
                (pairs, "pair/s")
            };
            println!(
                "  {:<9} {mine:>8.0} {unit} = {:>6.1}% of {name} ({ceiling:.0})",
                run.name,
                mine / ceiling * 100.0
            );
        }
        if let Some(rounds) = &run.rounds {
            let each: Vec<String> = (0..rounds.each.len())
                .map(|i| format!("{:.1}%", rounds.ratio(i) * 100.0))
                .collect();
            println!(
                "  {:<9} each round's pairs against the mean of the ceiling runs before and after: {}; the median is the one above",
                run.name,
                each.join(", ")
            );
        }
        println!(
            "  {:<9} at {:.0} pair/s (half the peak) on a fixed schedule: p50 {:.2} ms, p99 {:.2} ms per pair",
            run.name,
            run.half.ops_per_sec,
            run.half.p50.as_secs_f64() * 1e3,
            run.half.p99.as_secs_f64() * 1e3
        );
        if let Some([p50, p99, max]) = run.half.sent_late {
            println!(
                "  {:<9} the generator sent a pair on a free connection late by p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms (counted in the latency)",
                run.name,
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            );
        }
        println!(
            "  {:<9} meanwhile a thread sleeping 1 ms woke late by p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; {:.1}% of its wakes over 4 ms; the host took {:.0} ms of the cores (steal)",
            run.name,
            run.wakes.p50.as_secs_f64() * 1e3,
            run.wakes.p99.as_secs_f64() * 1e3,
            run.wakes.max.as_secs_f64() * 1e3,
            run.wakes.over_4ms * 100.0,
            run.wakes.stolen.as_secs_f64() * 1e3
        );
        if let Some(spawns) = &run.spawns {
            println!(
                "  {:<9} and the machine started {}",
                run.name,
                spawns::sentence(spawns)
            );
        }
        if let Some(flushes) = &run.flushes {
            println!(
                "  {:<9} and a 4 KiB flush every 10 ms took p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; {} over 10 ms",
                run.name,
                flushes.p50.as_secs_f64() * 1e3,
                flushes.p99.as_secs_f64() * 1e3,
                flushes.max.as_secs_f64() * 1e3,
                flushes.slow.len()
            );
        }
        if let [Some(full), half] = run.batched {
            println!(
                "  {:<9} writes per commit: {full:.1} at full speed, {} at half the peak",
                run.name,
                half.map_or("-".into(), |h| format!("{h:.1}"))
            );
        }
        for (what, times) in [
            ("a batch took to run and commit", run.took),
            ("a write took from its queue to its answer", run.answered),
            ("a request took in ots's handlers", run.handled),
        ] {
            if let [Some(full), half] = times {
                println!(
                    "  {:<9} {what}: {} at full speed, {} at half the peak",
                    run.name,
                    full,
                    half.map_or("-".into(), |h| h.to_string())
                );
            }
        }
        if let (Some(disk), true) = (&disk, run.name != "memory") {
            println!(
                "  {:<9} each pair waits for 2 flushes or more; the disk's own: p99 {:.2} ms, max {:.1} ms",
                run.name,
                disk.p99.as_secs_f64() * 1e3,
                disk.max.as_secs_f64() * 1e3
            );
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "  {:<9} ots's threads went off a core {:.1} times a pair at full speed, {:.1} at half the peak",
            run.name,
            run.cpu.total_switches(),
            run.half_cpu.total_switches()
        );
        println!(
            "  {:<9} at half the peak, by thread (asleep + gave way a pair): {}",
            run.name,
            run.half_cpu
                .switches
                .iter()
                .filter(|t| t.slept + t.gave_way >= 0.05)
                .map(|t| format!("{} {:.1} + {:.1}", t.name, t.slept, t.gave_way))
                .collect::<Vec<_>>()
                .join(", ")
        );
        match run.frame_cpu.as_ref().filter(|_| run.name == "memory") {
            Some(status) => println!(
                "  {:<9} CPU per request: ots {:.1} µs, load generator {:.1} µs; /api/v1/status: ots {:.1} µs, load generator {:.1} µs",
                run.name,
                us(run.cpu.server) / 2.0,
                us(run.cpu.generator) / 2.0,
                us(status.server),
                us(status.generator)
            ),
            None => println!(
                "  {:<9} CPU per pair: ots {:.0} µs, load generator {:.0} µs, Postgres {:.0} µs; the machine {:.0} µs",
                run.name,
                us(run.cpu.server),
                us(run.cpu.generator),
                us(run.cpu.postgres),
                us(run.cpu.machine)
            ),
        }
        // Half the peak's rate is not half the machine's work: smaller batches, and more
        // wake-ups a pair, at a lower rate cost more a pair.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!(
            "  {:<9} at half the peak, CPU per pair: ots {:.0} µs, load generator and probes {:.0} µs, Postgres {:.0} µs; the machine {:.0} µs, busy {:.0}% of its {cores} cores",
            run.name,
            us(run.half_cpu.server),
            us(run.half_cpu.generator),
            us(run.half_cpu.postgres),
            us(run.half_cpu.machine),
            us(run.half_cpu.machine) * run.half.ops_per_sec / 1e6 / cores * 100.0
        );
        for (name, cpu) in &run.ceiling_cpu {
            // Where the cores are saturated, a rate is the cores' time over the machine's
            // CPU per pair: this is the ratio ots could reach at most, at its own CPU cost.
            println!(
                "  {:<9} {name}, CPU per pair: pgbench {:.0} µs, Postgres {:.0} µs; the machine {:.0} µs, so on CPU alone ots reaches at most {:.1}% of it",
                run.name,
                us(cpu.generator),
                us(cpu.postgres),
                us(cpu.machine),
                us(cpu.machine) / us(run.cpu.machine).max(1.0) * 100.0
            );
        }
        let beyond = run.peak_kib.saturating_sub(run.idle_kib + run.data_kib);
        println!(
            "  {:<9} RSS idle {:.1} MiB; under load {:.1} MiB, of which data {:.1} MiB, beyond data and idle {:.1} MiB",
            run.name,
            run.idle_kib as f64 / 1024.0,
            run.peak_kib as f64 / 1024.0,
            run.data_kib as f64 / 1024.0,
            beyond as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
