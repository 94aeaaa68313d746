//! The release `ots` binary as the benchmark runs it, and the requests it is driven with.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::http1::{self, Conn};
use crate::load::Op;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(7199)
}

/// Resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Fields of `/proc/{pid}/stat` after the parenthesised command name, from the third
/// (state) on; `None` when the process is gone.
fn stat_fields(pid: &str) -> Option<(String, Vec<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(').map_or("", |(_, c)| c).to_owned();
    // The state is not a number; keep the positions by parsing it as 0.
    let fields = rest
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .collect();
    Some((comm, fields))
}

fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * 10)
}

/// CPU time (user and system) `pid` has used so far, from `/proc` in 10 ms ticks; with
/// `children`, also that of its children it has waited for (how pgbench's time is counted
/// once it has exited, and a backend's once the postmaster has reaped it).
fn process_cpu(pid: &str, children: bool) -> Duration {
    // utime, stime, cutime, cstime are the 14th to 17th fields, 11th to 14th from the state.
    let take = if children { 4 } else { 2 };
    stat_fields(pid).map_or(Duration::ZERO, |(_, f)| {
        ticks(f.iter().skip(11).take(take).sum())
    })
}

pub fn cpu_time(pid: u32) -> Duration {
    process_cpu(&pid.to_string(), false)
}

/// CPU time of the children this process has waited for (pgbench, once it has exited).
pub fn children_cpu_time() -> Duration {
    process_cpu("self", true).saturating_sub(process_cpu("self", false))
}

/// CPU time of every process named `postgres` on the machine (the postmaster with the
/// backends it has reaped, the live backends, the WAL writer and checkpointer).
pub fn postgres_cpu_time() -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| stat_fields(&pid))
        .filter(|(comm, _)| comm == "postgres")
        .map(|(_, f)| ticks(f.iter().skip(11).take(4).sum()))
        .sum()
}

/// The machine's CPU time over all cores so far (`/proc/stat`'s first line, 10 ms ticks):
/// user, nice, system, idle, iowait, irq, softirq, steal, in that order.
fn machine_ticks() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// CPU time every process on the machine has used, over all cores (`/proc/stat`: user,
/// nice, system, irq, softirq, steal), and the wall time the cores had.
pub fn machine_cpu_time() -> Duration {
    let fields = machine_ticks();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    ticks(busy)
}

/// The time the host has taken the machine's cores away from it so far, over all cores
/// (`steal`: a virtual CPU ready to run while the host ran something else).
pub fn stolen_time() -> Duration {
    ticks(machine_ticks().get(7).copied().unwrap_or(0))
}

/// How many times each thread of a process has been switched off a core, by thread id: its
/// name, how often it went to sleep (waiting for a request, a write's answer) and how often
/// it was made to give way (a thread it woke took its core). Each is a wake-up later, which
/// on a virtual machine costs far more than the work it waits for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Switches(BTreeMap<u32, (String, u64, u64)>);

/// One kind of thread's switches (its threads' names without their numbers), per operation.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadSwitches {
    pub name: String,
    pub slept: f64,
    pub gave_way: f64,
}

/// The switches of `pid`'s threads now; none where `/proc` cannot tell.
pub fn thread_switches(pid: u32) -> Switches {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Switches::default();
    };
    Switches(
        tasks
            .filter_map(|t| t.ok())
            .filter_map(|t| {
                let tid = t.file_name().to_str()?.parse().ok()?;
                let status = std::fs::read_to_string(t.path().join("status")).ok()?;
                Some((tid, switches_in_status(&status)))
            })
            .collect(),
    )
}

/// A thread's name and switches (voluntary, then not) from its `/proc/…/status`.
fn switches_in_status(status: &str) -> (String, u64, u64) {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    let count = |key| field(key).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        field("Name").unwrap_or("?").to_owned(),
        count("voluntary_ctxt_switches"),
        count("nonvoluntary_ctxt_switches"),
    )
}

impl Switches {
    /// What rose since `before`, per operation of `ops`, by kind of thread, most first. A
    /// thread that ended in between is left out (its count went with it); one that started
    /// counts whole.
    pub fn since(&self, before: &Switches, ops: f64) -> Vec<ThreadSwitches> {
        let mut kinds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (tid, (name, slept, gave_way)) in &self.0 {
            let (was_slept, was_gave_way) = before.0.get(tid).map_or((0, 0), |b| (b.1, b.2));
            let kind = kinds
                .entry(name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-'))
                .or_default();
            kind.0 += slept.saturating_sub(was_slept);
            kind.1 += gave_way.saturating_sub(was_gave_way);
        }
        let ops = ops.max(1.0);
        let mut kinds: Vec<ThreadSwitches> = kinds
            .into_iter()
            .filter(|(_, (s, g))| s + g > 0)
            .map(|(name, (s, g))| ThreadSwitches {
                name: name.to_owned(),
                slept: s as f64 / ops,
                gave_way: g as f64 / ops,
            })
            .collect();
        kinds.sort_by(|a, b| (b.slept + b.gave_way).total_cmp(&(a.slept + a.gave_way)));
        kinds
    }
}

/// CPU time spent per operation of a run: by the server, the load generator (this process
/// or pgbench), the Postgres processes and the whole machine. On a shared machine a rate
/// moves with the neighbours, what each side spends on an operation much less; and where
/// the cores are saturated, a run can go no faster than the machine's CPU per operation
/// allows.
#[derive(Clone, Default)]
pub struct CpuPerOp {
    pub server: Duration,
    pub generator: Duration,
    pub postgres: Duration,
    pub machine: Duration,
    /// How many times the server's threads were switched off a core, per operation, by
    /// kind of thread, most first.
    pub switches: Vec<ThreadSwitches>,
}

/// Counters read before a run, to take the differences of after it.
pub struct CpuMark {
    server: Option<u32>,
    server_cpu: Duration,
    server_switches: Switches,
    generator: Duration,
    children: Duration,
    postgres: Duration,
    machine: Duration,
}

impl CpuMark {
    /// Marks the counters now; `server` is the ots process, if one runs.
    pub fn now(server: Option<u32>) -> Self {
        Self {
            server,
            server_cpu: server.map_or(Duration::ZERO, cpu_time),
            server_switches: server.map_or_else(Switches::default, thread_switches),
            generator: cpu_time(std::process::id()),
            children: children_cpu_time(),
            postgres: postgres_cpu_time(),
            machine: machine_cpu_time(),
        }
    }

    /// What was spent since the mark, per operation of `ops`. The load generator is this
    /// process and, once they have exited, its children (pgbench).
    pub fn per_op(&self, ops: usize) -> CpuPerOp {
        let ops = ops.max(1) as u32;
        let since = |now: Duration, then: Duration| now.saturating_sub(then) / ops;
        CpuPerOp {
            server: self
                .server
                .map_or(Duration::ZERO, |pid| since(cpu_time(pid), self.server_cpu)),
            generator: since(cpu_time(std::process::id()), self.generator)
                + since(children_cpu_time(), self.children),
            postgres: since(postgres_cpu_time(), self.postgres),
            machine: since(machine_cpu_time(), self.machine),
            switches: self.server.map_or_else(Vec::new, |pid| {
                thread_switches(pid).since(&self.server_switches, f64::from(ops))
            }),
        }
    }
}

impl CpuPerOp {
    /// The CPU per operation over several runs, each weighted by the operations it did.
    pub fn mean(runs: &[(crate::load::Report, Self)]) -> Self {
        let ops: u32 = runs.iter().map(|(r, _)| r.count as u32).sum::<u32>().max(1);
        let total = |part: fn(&Self) -> Duration| {
            runs.iter()
                .map(|(r, cpu)| part(cpu) * r.count as u32)
                .sum::<Duration>()
                / ops
        };
        Self {
            server: total(|c| c.server),
            generator: total(|c| c.generator),
            postgres: total(|c| c.postgres),
            machine: total(|c| c.machine),
            switches: mean_switches(runs, ops),
        }
    }

    /// Switches off a core per operation, all of the server's threads.
    pub fn total_switches(&self) -> f64 {
        self.switches.iter().map(|t| t.slept + t.gave_way).sum()
    }

    /// Measures `run` (which returns how many operations succeeded) on server `pid`.
    pub async fn measure<F: std::future::Future<Output = crate::load::Report>>(
        pid: u32,
        run: F,
    ) -> (crate::load::Report, Self) {
        let mark = CpuMark::now(Some(pid));
        let report = run.await;
        let cpu = mark.per_op(report.count);
        (report, cpu)
    }
}

/// Each kind of thread's switches over several runs, weighted by the operations of each.
fn mean_switches(runs: &[(crate::load::Report, CpuPerOp)], ops: u32) -> Vec<ThreadSwitches> {
    let mut kinds: Vec<ThreadSwitches> = Vec::new();
    for (report, cpu) in runs {
        let weight = report.count as f64 / f64::from(ops.max(1));
        for t in &cpu.switches {
            match kinds.iter_mut().find(|k| k.name == t.name) {
                Some(k) => {
                    k.slept += t.slept * weight;
                    k.gave_way += t.gave_way * weight;
                }
                None => kinds.push(ThreadSwitches {
                    slept: t.slept * weight,
                    gave_way: t.gave_way * weight,
                    ..t.clone()
                }),
            }
        }
    }
    kinds.sort_by(|a, b| (b.slept + b.gave_way).total_cmp(&(a.slept + a.gave_way)));
    kinds
}

pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the release binary on `database_url`, with rate limits out of the way, and waits
/// until it is ready.
pub async fn start_ots(database_url: &str, dir: &Path, bcrypt_cost: u32) -> Result<Server> {
    let bin = workspace().join("target/release/ots");
    if !bin.exists() {
        bail!(
            "no release binary at {}: run `cargo build --release -p ots-server`",
            bin.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        "[plans.anonymous.rate_limits]\ncreate = { burst = 10000000, per_minute = 100000000 }\n\
         reveal = { burst = 10000000, per_minute = 100000000 }\nother = { burst = 10000000, per_minute = 100000000 }\n",
    )?;
    let port = free_port();
    let child = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OTS_DATABASE_URL", database_url)
        .env("OTS_DATA_DIR", dir)
        .env("OTS_CONFIG", &config)
        .env("OTS_SECRET", "benchmark-master-secret-0123456789abcdef")
        .env("OTS_BCRYPT_COST", bcrypt_cost.to_string())
        .env("OTS_LOG", "warn")
        .env(
            "OTS_DB_MAX_CONNECTIONS",
            std::env::var("BENCH_PG_POOL").unwrap_or_else(|_| "16".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ots")?;
    let server = Server {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    let ready = Get::new("/readyz");
    for _ in 0..200 {
        if let Ok(mut conn) = Conn::open(&server.addr).await {
            if ready.run(&mut conn).await {
                return Ok(server);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("ots did not become ready on {database_url}")
}

/// The share's body, urlencoded as OneTimeSecret clients send it, with and without a
/// passphrase. Fixed bytes, so the load generator spends its share of the two cores on what
/// a wrk script would (sending, reading one field), not on encoding the same form each time.
const SHARE: &str = "secret=benchmark+value+0123456789&ttl=3600";
const SHARE_WITH_PASSPHRASE: &str =
    "secret=benchmark+value+0123456789&ttl=3600&passphrase=bench+passphrase";
const REVEAL_WITH_PASSPHRASE: &str = "passphrase=bench+passphrase";

/// One share and one reveal of what was shared, as OneTimeSecret clients send them
/// (urlencoded); it succeeds when both did.
#[derive(Clone)]
pub struct Pair {
    share: Arc<Vec<u8>>,
    reveal_body: &'static str,
}

impl Pair {
    pub fn new(passphrase: bool) -> Self {
        let (share, reveal_body) = if passphrase {
            (SHARE_WITH_PASSPHRASE, REVEAL_WITH_PASSPHRASE)
        } else {
            (SHARE, "")
        };
        Self {
            share: Arc::new(http1::request("POST", "/api/v1/share", Some(share))),
            reveal_body,
        }
    }
}

/// The store's batches of writes so far, from ots's `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub batches: u64,
    pub writes: u64,
    /// How long the batches took to run and commit (`ots_store_batch_seconds`).
    pub took: Histogram,
    /// How long each write took from its queue to its answer (`ots_store_write_seconds`).
    pub answered: Histogram,
    /// How long ots's handlers took for the pairs' requests, from the request's head read to
    /// its answer made (`ots_http_request_duration_seconds` of the share and reveal routes,
    /// added): what a request spent in ots, the store's part included, and not its wait for
    /// a worker to read it or to write the answer.
    pub handled: Histogram,
}

/// The routes a pair's two requests take, as `/metrics` labels them.
const PAIR_ROUTES: [&str; 2] = ["/api/v1/share", "/api/v1/secret/:key"];

/// A histogram from `/metrics`: (upper bound in seconds, how many took at most that long),
/// cumulative, the last bound infinite.
pub type Histogram = Vec<(f64, u64)>;

/// The store's batches so far (none for a store that writes each request alone) and the
/// handlers' times; `None` when `/metrics` does not answer.
pub async fn write_batches(addr: &str) -> Option<Tally> {
    let mut conn = Conn::open(addr).await.ok()?;
    let answer = conn
        .send(&http1::request("GET", "/metrics", None))
        .await
        .ok()?;
    Some(parse_tally(std::str::from_utf8(conn.body(&answer)).ok()?))
}

/// The buckets of `name` whose labels, before `le`, are `labels` (`name_bucket{labelsle="…"} n`).
fn buckets<'t>(text: &'t str, name: &str, labels: &str) -> impl Iterator<Item = (f64, u64)> + 't {
    let prefix = format!("{name}_bucket{{{labels}le=\"");
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(&prefix)?;
        let (bound, n) = rest.split_once("\"} ")?;
        let bound = match bound {
            "+Inf" => f64::INFINITY,
            b => b.parse().ok()?,
        };
        Some((bound, n.parse().ok()?))
    })
}

fn parse_tally(text: &str) -> Tally {
    let counter = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let histogram = |name: &str| -> Histogram { buckets(text, name, "").collect() };
    // The two routes' buckets added bound by bound: one family, so the same bounds in order.
    let mut handled: Histogram = Vec::new();
    for route in PAIR_ROUTES {
        let labels = format!("route=\"{route}\",");
        let route = buckets(text, "ots_http_request_duration_seconds", &labels);
        for (i, (bound, n)) in route.enumerate() {
            match handled.get_mut(i) {
                Some((_, sum)) => *sum += n,
                None => handled.push((bound, n)),
            }
        }
    }
    Tally {
        batches: counter("ots_store_write_batches_total").unwrap_or_default(),
        writes: counter("ots_store_batched_writes_total").unwrap_or_default(),
        took: histogram("ots_store_batch_seconds"),
        answered: histogram("ots_store_write_seconds"),
        handled,
    }
}

/// Writes per batch between two readings of [`write_batches`].
pub fn writes_per_batch(before: Option<&Tally>, after: Option<&Tally>) -> Option<f64> {
    let (before, after) = (before.cloned().unwrap_or_default(), after?);
    (after.batches > before.batches)
        .then(|| (after.writes - before.writes) as f64 / (after.batches - before.batches) as f64)
}

/// The `q` quantile, in seconds, of what a histogram counted between two readings,
/// interpolated within its bucket as Prometheus's `histogram_quantile` does (the largest
/// finite bound when it falls beyond it); `None` when nothing was counted between them.
pub fn quantile(before: Option<&Histogram>, after: Option<&Histogram>, q: f64) -> Option<f64> {
    let after = after?;
    let earlier = |i: usize| before.and_then(|b| b.get(i)).map_or(0, |&(_, n)| n);
    let took: Vec<(f64, u64)> = (after.iter().enumerate())
        .map(|(i, &(bound, n))| (bound, n.saturating_sub(earlier(i))))
        .collect();
    let total = took.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for (bound, n) in took {
        if n as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let within = (rank - below as f64) / (n - below).max(1) as f64;
            return Some(lower + (bound - lower) * within);
        }
        (lower, below) = (bound, n);
    }
    None
}

/// The bucket the slowest of what a histogram counted between two readings fell in: (its
/// lower bound, its upper bound) in seconds, the upper infinite beyond the largest finite
/// bound; `None` when nothing was counted between them. At a fixed rate over a few
/// connections, a stall holds only the requests in flight (one a connection) while the
/// pairs due meanwhile wait for a connection: it shows here, not in a quantile.
pub fn slowest(before: Option<&Histogram>, after: Option<&Histogram>) -> Option<(f64, f64)> {
    let after = after?;
    let earlier = |i: usize| before.and_then(|b| b.get(i)).map_or(0, |&(_, n)| n);
    let total = after.last()?.1.saturating_sub(earlier(after.len() - 1));
    let mut lower = 0.0;
    for (i, &(bound, n)) in after.iter().enumerate() {
        if total > 0 && n.saturating_sub(earlier(i)) == total {
            return Some((lower, bound));
        }
        lower = bound;
    }
    None
}

/// The value of `"field":"…"` in a JSON body (a key: no escapes).
fn json_str<'b>(body: &'b [u8], field: &str) -> Option<&'b str> {
    let name = format!("\"{field}\":\"");
    let at = body
        .windows(name.len())
        .position(|w| w == name.as_bytes())?
        + name.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[at..at + len]).ok()
}

impl Op for Pair {
    fn run<'c>(&'c self, conn: &'c mut Conn) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>> {
        Box::pin(async move {
            let Ok(shared) = conn.send(&self.share).await else {
                return false;
            };
            if shared.status != 200 {
                return false;
            }
            let Some(key) = json_str(conn.body(&shared), "secret_key") else {
                return false;
            };
            let reveal = http1::request(
                "POST",
                &format!("/api/v1/secret/{key}"),
                Some(self.reveal_body),
            );
            matches!(conn.send(&reveal).await, Ok(a) if a.status == 200)
        })
    }
}

/// One GET that must answer 200.
#[derive(Clone)]
pub struct Get(Arc<Vec<u8>>);

impl Get {
    pub fn new(path: &str) -> Self {
        Self(Arc::new(http1::request("GET", path, None)))
    }
}

impl Op for Get {
    fn run<'c>(&'c self, conn: &'c mut Conn) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>> {
        Box::pin(async move { matches!(conn.send(&self.0).await, Ok(a) if a.status == 200) })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        json_str, parse_tally, quantile, slowest, switches_in_status, thread_switches,
        writes_per_batch, Switches, Tally, ThreadSwitches,
    };

    fn tally(batches: u64, writes: u64, took: &[(f64, u64)]) -> Tally {
        Tally {
            batches,
            writes,
            took: took.to_vec(),
            answered: Vec::new(),
            handled: Vec::new(),
        }
    }

    #[test]
    fn writes_per_batch_is_the_ratio_of_what_rose() {
        let (a, b) = (tally(10, 40, &[]), tally(20, 140, &[]));
        assert_eq!(writes_per_batch(Some(&a), Some(&b)), Some(10.0));
        assert_eq!(writes_per_batch(None, Some(&tally(4, 10, &[]))), Some(2.5));
        assert_eq!(writes_per_batch(Some(&b), Some(&b)), None);
        assert_eq!(writes_per_batch(None, None), None);
    }

    #[test]
    fn a_tally_is_read_from_the_metrics_text() {
        let text = "ots_store_write_batches_total 7\nots_store_batched_writes_total 30\n\
            ots_store_batch_seconds_bucket{le=\"0.001\"} 4\n\
            ots_store_batch_seconds_bucket{le=\"0.002\"} 6\n\
            ots_store_batch_seconds_bucket{le=\"+Inf\"} 7\n\
            ots_store_batch_seconds_sum 0.01\nots_store_batch_seconds_count 7\n\
            ots_store_write_seconds_bucket{le=\"0.002\"} 12\n\
            ots_store_write_seconds_bucket{le=\"+Inf\"} 30\n\
            ots_http_request_duration_seconds_bucket{route=\"/api/v1/secret/:key\",le=\"0.001\"} 5\n\
            ots_http_request_duration_seconds_bucket{route=\"/api/v1/secret/:key\",le=\"+Inf\"} 9\n\
            ots_http_request_duration_seconds_bucket{route=\"/api/v1/share\",le=\"0.001\"} 2\n\
            ots_http_request_duration_seconds_bucket{route=\"/api/v1/share\",le=\"+Inf\"} 10\n\
            ots_http_request_duration_seconds_bucket{route=\"/api/v1/status\",le=\"0.001\"} 70\n\
            ots_http_request_duration_seconds_bucket{route=\"/api/v1/status\",le=\"+Inf\"} 80\n";
        let read = parse_tally(text);
        assert_eq!(
            read,
            Tally {
                answered: vec![(0.002, 12), (f64::INFINITY, 30)],
                // The share's and the reveal's requests, not `status`'s.
                handled: vec![(0.001, 7), (f64::INFINITY, 19)],
                ..tally(7, 30, &[(0.001, 4), (0.002, 6), (f64::INFINITY, 7)])
            }
        );
        // A store that writes each request alone has no batches to divide by.
        let alone = parse_tally("ots_store_write_batches_total 0\n");
        assert_eq!(writes_per_batch(None, Some(&alone)), None);
        assert_eq!(quantile(None, Some(&alone.took), 0.99), None);
    }

    /// A cumulative histogram with bounds of 1, 2 and 4 ms and beyond.
    fn cumulative(n: [u64; 4]) -> Vec<(f64, u64)> {
        [0.001, 0.002, 0.004, f64::INFINITY]
            .into_iter()
            .zip(n)
            .collect()
    }

    #[test]
    fn the_slowest_is_the_first_bucket_holding_all_that_rose() {
        let before = cumulative([10, 10, 12, 12]);
        // Between the readings: 5 under 1 ms, 1 within 2–4 ms.
        let after = cumulative([15, 15, 18, 18]);
        assert_eq!(slowest(Some(&before), Some(&after)), Some((0.002, 0.004)));
        // One beyond the largest finite bound.
        let beyond = cumulative([15, 15, 18, 19]);
        assert_eq!(
            slowest(Some(&before), Some(&beyond)),
            Some((0.004, f64::INFINITY))
        );
        // Nothing rose, or nothing was read.
        assert_eq!(slowest(Some(&before), Some(&before)), None);
        assert_eq!(slowest(None, None), None);
        assert_eq!(slowest(None, Some(&after)), Some((0.002, 0.004)));
    }

    #[test]
    fn quantiles_come_from_what_rose_between_readings() {
        let before = cumulative([10, 10, 10, 10]);
        // Since then: 50 batches at most 1 ms, 40 more at most 2, 9 at most 4, 1 beyond.
        let after = cumulative([60, 100, 109, 110]);
        let q = |q| quantile(Some(&before), Some(&after), q).unwrap();
        assert!((q(0.5) - 0.001).abs() < 1e-9, "{}", q(0.5));
        assert!((q(0.25) - 0.0005).abs() < 1e-9, "{}", q(0.25));
        assert!((q(0.7) - 0.0015).abs() < 1e-9, "{}", q(0.7));
        assert_eq!(q(0.999), 0.004, "beyond the last bound: that bound");
        assert_eq!(quantile(Some(&after), Some(&after), 0.5), None);
        assert_eq!(quantile(None, None, 0.5), None);
    }

    #[test]
    fn a_threads_switches_are_read_from_its_status() {
        let status = "Name:\tots-http-0\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t120\n\
            nonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(switches_in_status(status), ("ots-http-0".into(), 120, 7));
        assert_eq!(switches_in_status("Name:\tx\n"), ("x".into(), 0, 0));
        // Other tests' threads come and go beside this one: this thread's own count, found
        // by its id, is the one that must rise.
        let me: u32 = std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .and_then(|n| n.to_str()?.parse().ok())
            .unwrap();
        let slept = |s: &Switches| s.0.get(&me).expect("this thread is listed").1;
        let before = thread_switches(std::process::id());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = thread_switches(std::process::id());
        assert!(slept(&after) > slept(&before), "a sleep is a switch");
    }

    #[test]
    fn switches_rise_by_kind_of_thread_leaving_out_those_that_ended() {
        let threads = |list: &[(u32, &str, u64, u64)]| {
            Switches(
                list.iter()
                    .map(|&(tid, name, s, g)| (tid, (name.to_owned(), s, g)))
                    .collect(),
            )
        };
        let before = threads(&[
            (1, "ots-http-0", 100, 10),
            (2, "ots-http-1", 50, 5),
            (3, "ots-store-write", 10, 0),
            (4, "gone", 500, 500),
        ]);
        let after = threads(&[
            (1, "ots-http-0", 160, 12),
            (2, "ots-http-1", 90, 5),
            (3, "ots-store-write", 10, 0),
            (5, "sqlx-sqlite-wor", 20, 60),
        ]);
        let kind = |name: &str, slept, gave_way| ThreadSwitches {
            name: name.into(),
            slept,
            gave_way,
        };
        // Per operation of 10: the two HTTP workers as one kind, the new thread whole, the
        // writer (no rise) and the thread that ended left out.
        assert_eq!(
            after.since(&before, 10.0),
            vec![
                kind("ots-http", 10.0, 0.2),
                kind("sqlx-sqlite-wor", 2.0, 6.0)
            ]
        );
    }

    #[test]
    fn finds_a_string_field() {
        let body = br#"{"custid":"anon","secret_key":"abc123","ttl":3600}"#;
        assert_eq!(json_str(body, "secret_key"), Some("abc123"));
        assert_eq!(json_str(body, "metadata_key"), None);
    }
}
