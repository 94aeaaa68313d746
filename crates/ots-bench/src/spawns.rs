//! The processes the machine starts beside a run. Other services share these two cores, and
//! some start whole programs on a timer: RabbitMQ boots an Erlang VM every minute (its epmd
//! check) and runs `df` every ten seconds (its disk monitor). An Erlang VM's start takes both
//! cores for about a third of a second, so a fixed-rate run that meets one stalls, whatever
//! ots does. This probe names what started and when, so such a stall can be told apart.
//!
//! Linux hands out process ids in order, and `/proc/loadavg` ends with the last one given: a
//! thread reads it every 10 ms, and each new id that names a process (not a thread) is read
//! for its name. A process renamed by `exec` after that first look is read again at the end.
//! One that lived less than the 10 ms (RabbitMQ's `df`) is gone by then: it is only counted,
//! with the threads that ended as soon.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ids looked at in one turn at most: a burst of starts beyond it is counted, not named.
const LOOK_AT_MOST: u32 = 256;

pub struct SpawnProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Spawns>,
}

/// What a [`SpawnProbe`] saw.
#[derive(Debug, Default)]
pub struct Spawns {
    /// The processes it found, in the order they started.
    pub named: Vec<Spawn>,
    /// Ids given out that were gone when looked at: short-lived processes or threads.
    pub gone: u32,
}

/// A process started during the run: when (since the probe started), its id and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Spawn {
    pub at: Duration,
    pub pid: u32,
    pub name: String,
}

impl SpawnProbe {
    /// `None` where `/proc/loadavg` cannot be read (not Linux).
    pub fn start() -> Option<Self> {
        Self::start_in(Path::new("/proc"))
    }

    fn start_in(proc: &Path) -> Option<Self> {
        let proc = proc.to_owned();
        let mut last = last_pid(&proc)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let started = Instant::now();
                let mut spawns = Spawns::default();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    let Some(now) = last_pid(&proc) else { continue };
                    let at = started.elapsed();
                    // Ids wrap around at pid_max: then the new ones are those up to `now`.
                    let first = if now >= last { last + 1 } else { 1 };
                    for pid in first..=now.min(first.saturating_add(LOOK_AT_MOST - 1)) {
                        match process_name(&proc, pid) {
                            Found::Process(name) => spawns.named.push(Spawn { at, pid, name }),
                            Found::Thread => {}
                            Found::Gone => spawns.gone += 1,
                        }
                    }
                    last = now;
                }
                // A name read just after the fork is the parent's until `exec`: read again.
                for s in &mut spawns.named {
                    if let Found::Process(name) = process_name(&proc, s.pid) {
                        s.name = name;
                    }
                }
                spawns
            }
        });
        Some(Self { stop, thread })
    }

    pub fn stop(self) -> Spawns {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The last process id the kernel gave out: the last field of `loadavg`.
fn last_pid(proc: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(proc.join("loadavg")).ok()?;
    text.split_whitespace().last()?.parse().ok()
}

enum Found {
    Process(String),
    Thread,
    Gone,
}

/// What id `pid` is now: a process and its name, a thread of another process, or gone.
fn process_name(proc: &Path, pid: u32) -> Found {
    let Ok(status) = std::fs::read_to_string(proc.join(pid.to_string()).join("status")) else {
        return Found::Gone;
    };
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    match field("Tgid:") {
        Some(tgid) if tgid == pid.to_string() => {
            Found::Process(field("Name:").unwrap_or("?").to_owned())
        }
        Some(_) => Found::Thread,
        None => Found::Gone,
    }
}

/// The names, each once, most frequent first, with how many of each: `beam.smp, df ×4`.
pub fn summary(spawns: &[Spawn]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for s in spawns {
        match counts.iter_mut().find(|(n, _)| *n == s.name) {
            Some((_, c)) => *c += 1,
            None => counts.push((&s.name, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .iter()
        .map(|(n, c)| match c {
            1 => (*n).to_owned(),
            _ => format!("{n} ×{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the machine started, as the summary says it: `beam.smp, df ×2 (and 3 short-lived
/// processes or threads)`, or `no other process`.
pub fn sentence(spawns: &Spawns) -> String {
    let named = match spawns.named.is_empty() {
        true => "no other process".to_owned(),
        false => summary(&spawns.named),
    };
    match spawns.gone {
        0 => named,
        1 => format!("{named} (and 1 short-lived process or thread)"),
        n => format!("{named} (and {n} short-lived processes or threads)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the processes first and `loadavg` last, as the kernel has a process before
    /// its id shows there.
    fn fake_proc(dir: &Path, last: u32, processes: &[(u32, u32, &str)]) {
        for (pid, tgid, name) in processes {
            let d = dir.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let status = format!("Name:\t{name}\nState:\tS\nTgid:\t{tgid}\nPid:\t{pid}\n");
            write_whole(&d.join("status"), &status);
        }
        write_whole(
            &dir.join("loadavg"),
            &format!("0.50 0.40 0.30 2/300 {last}\n"),
        );
    }

    /// The probe's thread reads these files while the test writes them: it sees the old
    /// text or the new, never a part.
    fn write_whole(path: &Path, text: &str) {
        let new = path.with_extension("new");
        std::fs::write(&new, text).unwrap();
        std::fs::rename(&new, path).unwrap();
    }

    #[test]
    fn it_names_the_processes_started_and_not_threads_or_those_before() {
        let dir = std::env::temp_dir().join(format!("ots-spawn-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Before the probe: pid 100 exists and is not counted.
        fake_proc(&dir, 100, &[(100, 100, "before")]);
        let probe = SpawnProbe::start_in(&dir).unwrap();
        // Then a process, a thread of it, and another process that is renamed (exec)
        // before the probe ends; one id that is gone by the time it is looked at.
        fake_proc(
            &dir,
            104,
            &[(101, 101, "sh"), (102, 101, "worker"), (104, 104, "sh")],
        );
        std::thread::sleep(Duration::from_millis(60));
        fake_proc(&dir, 104, &[(104, 104, "beam.smp")]);
        let spawns = probe.stop();
        let named: Vec<(u32, &str)> = spawns
            .named
            .iter()
            .map(|s| (s.pid, s.name.as_str()))
            .collect();
        assert_eq!(named, vec![(101, "sh"), (104, "beam.smp")]);
        assert_eq!(spawns.gone, 1, "103 was given out and gone");
        assert!(spawns
            .named
            .iter()
            .all(|s| s.at >= Duration::from_millis(10)));
        assert_eq!(summary(&spawns.named), "beam.smp, sh");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_summary_counts_repeated_names_most_frequent_first() {
        let s = |pid, name: &str| Spawn {
            at: Duration::ZERO,
            pid,
            name: name.into(),
        };
        let spawns = [s(1, "df"), s(2, "beam.smp"), s(3, "df"), s(4, "df")];
        assert_eq!(summary(&spawns), "df ×3, beam.smp");
        assert_eq!(summary(&[]), "");
        let with = |named: &[Spawn], gone| Spawns {
            named: named.to_vec(),
            gone,
        };
        assert_eq!(sentence(&with(&[], 0)), "no other process");
        assert_eq!(
            sentence(&with(&[], 1)),
            "no other process (and 1 short-lived process or thread)"
        );
        assert_eq!(
            sentence(&with(&spawns[..2], 3)),
            "beam.smp, df (and 3 short-lived processes or threads)"
        );
    }

    #[test]
    fn on_this_machine_it_sees_a_process_started_beside_it() {
        let probe =
            SpawnProbe::start().expect("/proc/loadavg is readable (the bench runs on Linux)");
        std::thread::sleep(Duration::from_millis(20));
        let child = std::process::Command::new("sleep").arg("0.2").spawn();
        std::thread::sleep(Duration::from_millis(60));
        let spawns = probe.stop();
        let mut child = child.expect("sleep(1) runs");
        let _ = child.wait();
        let pid = child.id();
        assert!(
            spawns
                .named
                .iter()
                .any(|s| s.pid == pid && s.name == "sleep"),
            "{pid} in {spawns:?}"
        );
    }
}
