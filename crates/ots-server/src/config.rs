//! The configuration file (`--config`/`OTS_CONFIG`, TOML): plans with their limits, the
//! default plan of new customers, and the trusted proxy header. Built-in defaults are the
//! contract's: `anonymous` (1024 bytes, 7 days) and `basic` (10240 bytes, 30 days), each with
//! bursts of 300 and 1000 requests a minute per route class.
//!
//! ```toml
//! default_plan = "basic"
//! trusted_proxy_header = "x-forwarded-for"   # only behind a proxy that sets it
//!
//! [plans.anonymous]
//! max_secret_bytes = 1024
//! max_ttl = 604800
//! rate_limits.create = { burst = 20, per_minute = 60 }
//!
//! [plans.pro]
//! max_secret_bytes = 102400
//! max_ttl = 7776000
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use std::ffi::OsString;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use ots_domain::Plan;
use ots_http::{ClassLimits, Limit};

/// The plan part of the file. Every other key is a command-line setting, applied by
/// [`parse_cli`] as that setting's default (so the environment and flags win).
#[derive(Deserialize, Debug, Default)]
pub struct FileConfig {
    pub default_plan: Option<String>,
    pub trusted_proxy_header: Option<String>,
    #[serde(default)]
    pub plans: BTreeMap<String, PlanConfig>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub max_secret_bytes: Option<usize>,
    pub max_ttl: Option<i64>,
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub create: Option<LimitConfig>,
    pub reveal: Option<LimitConfig>,
    pub other: Option<LimitConfig>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub burst: u32,
    pub per_minute: u32,
}

/// Keys of the file that are not command-line settings.
const PLAN_KEYS: &[&str] = &["plans", "default_plan", "trusted_proxy_header"];

/// The config file named by `--config PATH`, `--config=PATH` or `OTS_CONFIG`.
fn config_path(args: &[OsString]) -> Option<std::path::PathBuf> {
    let mut iter = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(Into::into);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(path.into());
        }
    }
    std::env::var_os("OTS_CONFIG")
        .filter(|v| !v.is_empty())
        .map(Into::into)
}

/// Sets `value` as the default of every argument named `key`, in every subcommand.
fn set_default(
    cmd: clap::Command,
    key: &str,
    value: &'static str,
    found: &mut bool,
) -> clap::Command {
    let mut cmd = cmd;
    if key != "config" && cmd.get_arguments().any(|a| a.get_id() == key) {
        cmd = cmd.mut_arg(key, |a| a.default_value(value));
        *found = true;
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |sub| set_default(sub, key, value, found));
    }
    cmd
}

/// Parses the command line with the config file's settings as defaults: flags win over the
/// environment, which wins over the file, which wins over the built-in defaults. Values from
/// the file pass the same checks as flags. An unknown key in the file is an error.
pub fn parse_cli<C: clap::Parser>() -> Result<C> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut cmd = C::command();
    if let Some(path) = config_path(&args) {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("in the config file {}", path.display()))?;
        for (key, value) in table {
            if PLAN_KEYS.contains(&key.as_str()) {
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => bail!(
                    "{}: setting `{key}` must be a string, a number or a boolean",
                    path.display()
                ),
            };
            // Parsed once at start; the defaults live as long as the process.
            let value: &'static str = Box::leak(text.into_boxed_str());
            let mut found = false;
            cmd = set_default(cmd, &key, value, &mut found);
            if !found {
                bail!("{}: unknown setting `{key}`", path.display());
            }
        }
    }
    let matches = cmd.get_matches_from(args);
    C::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!(e.to_string()))
}

/// Plans as the service and the HTTP layer need them.
#[derive(Debug, Clone)]
pub struct Plans {
    pub anonymous: Plan,
    pub customer_plans: Vec<Plan>,
    pub default_plan: String,
    pub rate_limits: HashMap<String, ClassLimits>,
    pub trusted_proxy_header: Option<String>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// Built-in plans, overridden by the file's.
    pub fn plans(&self) -> Result<Plans> {
        let mut plans: BTreeMap<String, (Plan, ClassLimits)> = BTreeMap::new();
        for plan in [Plan::anonymous(), Plan::basic()] {
            plans.insert(plan.name.clone(), (plan, ClassLimits::default()));
        }
        for (name, cfg) in &self.plans {
            let entry = plans.entry(name.clone()).or_insert_with(|| {
                let mut plan = Plan::basic();
                plan.name = name.clone();
                (plan, ClassLimits::default())
            });
            if let Some(bytes) = cfg.max_secret_bytes {
                entry.0.max_secret_bytes = bytes;
            }
            if let Some(ttl) = cfg.max_ttl {
                entry.0.max_ttl = ttl;
            }
            let limits = &mut entry.1;
            for (slot, given) in [
                (&mut limits.create, cfg.rate_limits.create),
                (&mut limits.reveal, cfg.rate_limits.reveal),
                (&mut limits.other, cfg.rate_limits.other),
            ] {
                if let Some(l) = given {
                    *slot = Limit {
                        burst: l.burst,
                        per_minute: l.per_minute,
                    };
                }
            }
        }
        for (name, (plan, limits)) in &plans {
            if plan.max_secret_bytes == 0 {
                bail!("plan {name}: max_secret_bytes must be at least 1");
            }
            if plan.max_ttl < 60 {
                bail!("plan {name}: max_ttl must be at least 60 seconds");
            }
            for l in [limits.create, limits.reveal, limits.other] {
                if l.burst == 0 || l.per_minute == 0 {
                    bail!("plan {name}: rate limits need burst and per_minute of at least 1");
                }
            }
        }
        let default_plan = self.default_plan.clone().unwrap_or_else(|| "basic".into());
        if default_plan == "anonymous" || !plans.contains_key(&default_plan) {
            bail!("default_plan {default_plan:?} is not a configured customer plan");
        }
        let rate_limits = plans
            .iter()
            .map(|(name, (_, limits))| (name.clone(), *limits))
            .collect();
        let anonymous = plans
            .remove("anonymous")
            .map(|(plan, _)| plan)
            .unwrap_or_else(Plan::anonymous);
        Ok(Plans {
            anonymous,
            customer_plans: plans.into_values().map(|(plan, _)| plan).collect(),
            default_plan,
            rate_limits,
            trusted_proxy_header: self
                .trusted_proxy_header
                .clone()
                .filter(|h| !h.trim().is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_plans_are_the_contracts() {
        let plans = FileConfig::default().plans().unwrap();
        assert_eq!(plans.anonymous, Plan::anonymous());
        assert_eq!(plans.customer_plans, vec![Plan::basic()]);
        assert_eq!(plans.default_plan, "basic");
        assert_eq!(
            plans.rate_limits["anonymous"].create,
            Limit {
                burst: 300,
                per_minute: 1000
            }
        );
    }

    #[test]
    fn the_file_overrides_and_adds_plans() {
        let cfg: FileConfig = toml::from_str(
            r#"
            default_plan = "pro"
            trusted_proxy_header = "x-forwarded-for"
            [plans.anonymous]
            max_secret_bytes = 512
            rate_limits.create = { burst = 5, per_minute = 10 }
            [plans.pro]
            max_secret_bytes = 100000
            max_ttl = 7776000
            "#,
        )
        .unwrap();
        let plans = cfg.plans().unwrap();
        assert_eq!(plans.anonymous.max_secret_bytes, 512);
        assert_eq!(plans.anonymous.max_ttl, 7 * 86400);
        assert_eq!(
            plans.rate_limits["anonymous"].create,
            Limit {
                burst: 5,
                per_minute: 10
            }
        );
        assert_eq!(plans.rate_limits["anonymous"].reveal, Limit::default());
        let pro = plans
            .customer_plans
            .iter()
            .find(|p| p.name == "pro")
            .unwrap();
        assert_eq!((pro.max_secret_bytes, pro.max_ttl), (100000, 7776000));
        assert_eq!(plans.default_plan, "pro");
        assert_eq!(
            plans.trusted_proxy_header.as_deref(),
            Some("x-forwarded-for")
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let err = |text: &str| {
            let parsed: Result<FileConfig, _> = toml::from_str(text);
            match parsed {
                Err(e) => e.to_string(),
                Ok(cfg) => cfg.plans().unwrap_err().to_string(),
            }
        };
        assert!(err("default_plan = \"gold\"").contains("gold"));
        assert!(err("default_plan = \"anonymous\"").contains("anonymous"));
        assert!(err("[plans.basic]\nmax_ttl = 5").contains("max_ttl"));
        assert!(
            err("[plans.basic]\nrate_limits.create = { burst = 0, per_minute = 1 }")
                .contains("burst")
        );
        assert!(err("[plans.basic]\nunknown_key = 1").contains("unknown"));
    }
}
