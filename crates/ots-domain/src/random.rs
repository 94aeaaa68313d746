//! Randomness as a port, and uniform random strings drawn from it. Depends on nothing else in
//! the domain, so every module may use it.

/// Cryptographically secure randomness from the operating system.
pub trait Rng: Send + Sync {
    /// MUST fill `buf` from a CSPRNG, or fail.
    fn fill(&self, buf: &mut [u8]) -> Result<(), String>;
}

/// The operating system's CSPRNG, through ring.
#[derive(Clone, Debug)]
pub struct SystemRng(ring::rand::SystemRandom);

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemRng {
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Rng for SystemRng {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        ring::rand::SecureRandom::fill(&self.0, buf).map_err(|_| "the OS CSPRNG failed".into())
    }
}

impl<T: Rng + ?Sized> Rng for std::sync::Arc<T> {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        (**self).fill(buf)
    }
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
pub fn random_string<R: Rng + ?Sized>(
    rng: &R,
    len: usize,
    alphabet: &[u8],
) -> Result<String, String> {
    let n = alphabet.len();
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf)?;
        for &b in buf.iter().filter(|&&b| (b as usize) < limit) {
            if out.len() == len {
                break;
            }
            out.push(alphabet[b as usize % n] as char);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes 0, 1, 2, … so the draw is predictable.
    struct Counting(std::sync::atomic::AtomicU8);

    impl Rng for Counting {
        fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
            for b in buf {
                *b = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        }
    }

    #[test]
    fn draws_only_from_the_alphabet_without_bias() {
        let rng = Counting(0.into());
        // 256 % 3 == 1: byte 255 is rejected, so a draw of 300 never reads past the limit.
        let s = random_string(&rng, 300, b"abc").unwrap();
        assert_eq!(s.len(), 300);
        assert!(s.starts_with("abcabc"));
        assert!(s.bytes().all(|b| b"abc".contains(&b)));
    }
}
