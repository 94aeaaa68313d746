//! Randomness as a port, and uniform random strings drawn from it. Depends on nothing else in
//! the domain, so every module may use it.

/// Cryptographically secure randomness from the operating system.
pub trait Rng: Send + Sync {
    /// MUST fill `buf` from a CSPRNG, or fail.
    fn fill(&self, buf: &mut [u8]) -> Result<(), String>;
}

/// The operating system's CSPRNG, through ring, drawn in blocks: each thread keeps one block
/// of [`BLOCK`] bytes from the OS, hands each byte out once and wipes it as it goes, and
/// draws a new block when it runs out. The bytes are the OS's own, none is used twice, and a
/// share costs a system call every few requests instead of five (its two keys, a salt and two
/// nonces). A draw larger than a block goes to the OS directly.
#[derive(Clone, Debug)]
pub struct SystemRng(ring::rand::SystemRandom);

/// Bytes each thread draws from the OS at once.
pub const BLOCK: usize = 1024;

/// One thread's block of OS randomness and how much of it is handed out.
struct Block {
    bytes: [u8; BLOCK],
    used: usize,
}

impl Drop for Block {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }
}

thread_local! {
    static BLOCKS: std::cell::RefCell<Block> = const {
        std::cell::RefCell::new(Block {
            bytes: [0; BLOCK],
            used: BLOCK,
        })
    };
}

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemRng {
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }

    fn draw_os(&self, buf: &mut [u8]) -> Result<(), String> {
        ring::rand::SecureRandom::fill(&self.0, buf).map_err(|_| "the OS CSPRNG failed".into())
    }
}

impl Rng for SystemRng {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        if buf.len() > BLOCK {
            return self.draw_os(buf);
        }
        BLOCKS.with(|block| {
            let mut block = block.borrow_mut();
            let mut at = 0;
            while at < buf.len() {
                if block.used == BLOCK {
                    self.draw_os(&mut block.bytes[..])?;
                    block.used = 0;
                }
                let take = (buf.len() - at).min(BLOCK - block.used);
                let from = block.used..block.used + take;
                buf[at..at + take].copy_from_slice(&block.bytes[from.clone()]);
                block.bytes[from].fill(0);
                block.used += take;
                at += take;
            }
            Ok(())
        })
    }
}

impl<T: Rng + ?Sized> Rng for std::sync::Arc<T> {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        (**self).fill(buf)
    }
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
/// The alphabet's size is a constant, so the remainder is a multiplication, not a division.
pub fn random_string<R: Rng + ?Sized, const N: usize>(
    rng: &R,
    len: usize,
    alphabet: &[u8; N],
) -> Result<String, String> {
    let mut out = vec![0u8; len];
    let mut filled = 0;
    let mut buf = [0u8; 64];
    while filled < len {
        // What is left, and a few more for the draws rejected (under 2% for 36 letters).
        let want = (len - filled + 4).min(buf.len());
        rng.fill(&mut buf[..want])?;
        filled += letters(&buf[..want], alphabet, &mut out[filled..]);
    }
    String::from_utf8(out).map_err(|_| "the alphabet is not ASCII".into())
}

/// Writes letters of `alphabet` into `out` from uniform `bytes`, one a byte, rejecting the
/// bytes at or above the largest multiple of the alphabet's size so that every letter is
/// equally likely; returns how many it wrote (at most `out.len()`).
pub(crate) fn letters<const N: usize>(bytes: &[u8], alphabet: &[u8; N], out: &mut [u8]) -> usize {
    const { assert!(N > 0 && N <= 256, "an alphabet has 1 to 256 letters") };
    let limit = 256 - 256 % N;
    let mut filled = 0;
    for &b in bytes {
        if filled == out.len() {
            break;
        }
        if (b as usize) < limit {
            out[filled] = alphabet[b as usize % N];
            filled += 1;
        }
    }
    filled
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
    fn the_system_rng_never_hands_out_the_same_bytes_twice() {
        let rng = SystemRng::new();
        let mut seen = std::collections::HashSet::new();
        // Many blocks' worth, in sizes that straddle the blocks' ends, and one larger than
        // a block.
        for i in 0..5000 {
            let mut buf = vec![0u8; 12 + i % 9];
            rng.fill(&mut buf).unwrap();
            assert!(
                seen.insert(buf[..12].to_vec()),
                "draw {i} repeated an earlier one"
            );
        }
        let mut big = vec![0u8; BLOCK + 1];
        rng.fill(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
        // Another thread has a block of its own, and what it draws is new as well.
        let other = std::thread::spawn(|| {
            let mut buf = [0u8; 16];
            SystemRng::new().fill(&mut buf).unwrap();
            buf
        })
        .join()
        .unwrap();
        assert!(seen.insert(other[..12].to_vec()));
    }

    #[test]
    fn a_block_keeps_no_byte_it_handed_out() {
        let rng = SystemRng::new();
        let mut buf = [0u8; 100];
        rng.fill(&mut buf).unwrap();
        BLOCKS.with(|block| {
            let block = block.borrow();
            assert!(block.used >= 100);
            assert!(block.bytes[..block.used].iter().all(|&b| b == 0));
        });
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
