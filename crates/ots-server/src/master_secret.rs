//! The master secret all value keys derive from: `OTS_SECRET`, or one generated once and kept
//! (mode 0600) in the data directory so that a restart can still decrypt.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ots_domain::crypto::{hex, MIN_MASTER_SECRET_LEN};
use ots_domain::{Rng, SystemRng};
use tracing::warn;

const FILE: &str = "master.key";

/// A master secret given in `OTS_SECRET` must be long enough.
pub fn check(secret: &str) -> Result<()> {
    if secret.len() < MIN_MASTER_SECRET_LEN {
        bail!(
            "OTS_SECRET is too short: use at least {MIN_MASTER_SECRET_LEN} bytes \
             (e.g. `openssl rand -hex 32`)"
        );
    }
    Ok(())
}

pub fn load(from_env: Option<String>, data_dir: &Path) -> Result<String> {
    if let Some(secret) = from_env {
        check(&secret)?;
        return Ok(secret);
    }
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim().to_owned();
            if secret.len() < MIN_MASTER_SECRET_LEN {
                bail!("{} is too short; restore it from backup", path.display());
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(data_dir, &path),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn generate(data_dir: &Path, path: &Path) -> Result<String> {
    create_private_dir(data_dir)?;
    let mut bytes = [0u8; 32];
    SystemRng::new()
        .fill(&mut bytes)
        .map_err(anyhow::Error::msg)?;
    let secret = hex(&bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    warn!(
        path = %path.display(),
        "OTS_SECRET is not set: generated a master secret and saved it; back it up, \
         without it stored secrets cannot be decrypted"
    );
    Ok(secret)
}

pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("ots-master-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load(None, &dir).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(
            load(None, &dir).unwrap(),
            first,
            "a restart reads the same secret"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_env_secrets_are_refused() {
        let dir = std::env::temp_dir();
        assert!(load(Some("short".into()), &dir).is_err());
        let long = "x".repeat(32);
        assert_eq!(load(Some(long.clone()), &dir).unwrap(), long);
    }
}
