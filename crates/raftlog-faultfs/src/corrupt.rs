//! Corruption of backing files while their node is stopped, as a bad disk or a torn write would
//! leave them: bit flips at random offsets, and truncation of a file's tail. No FUSE involved;
//! the randomness is a seeded generator, so a run's seed replays the same damage.

use std::os::unix::fs::FileExt;
use std::path::Path;

/// A small seeded generator (SplitMix64): enough to pick offsets reproducibly.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

/// Flips one bit at each of `flips` random offsets of the file at `path` (of its first `within`
/// bytes if given, e.g. the written part of a preallocated segment) and returns the offsets.
/// An empty file is left alone.
pub fn flip_bits(
    path: &Path,
    flips: usize,
    within: Option<u64>,
    rng: &mut SplitMix,
) -> std::io::Result<Vec<u64>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let span = within.map_or(len, |w| w.min(len));
    let mut offsets = Vec::new();
    if span == 0 {
        return Ok(offsets);
    }
    for _ in 0..flips {
        let offset = rng.below(span);
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset)?;
        byte[0] ^= 1 << rng.below(8);
        file.write_all_at(&byte, offset)?;
        offsets.push(offset);
    }
    file.sync_all()?;
    Ok(offsets)
}

/// Cuts a random tail of up to `max_cut` bytes (at least one) off the written part of the file
/// at `path` (see [`written_len`]), as a torn write at the end would; returns the new length.
/// A file with nothing written is left alone.
pub fn truncate_tail(path: &Path, max_cut: u64, rng: &mut SplitMix) -> std::io::Result<u64> {
    let len = written_len(path)?;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    if len == 0 {
        return Ok(0);
    }
    let cut = 1 + rng.below(max_cut.max(1).min(len));
    let new_len = len.saturating_sub(cut);
    file.set_len(new_len)?;
    file.sync_all()?;
    Ok(new_len)
}

/// The length of the written part of a file: up to its last non-zero byte (segments are
/// preallocated with zeros, and damage past what was written would be no damage).
pub fn written_len(path: &Path) -> std::io::Result<u64> {
    let data = std::fs::read(path)?;
    Ok(data
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_change_exactly_the_reported_bits_and_replay_from_the_seed() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("f");
        let original = vec![0xAAu8; 4096];
        std::fs::write(&path, &original).expect("write");
        let offsets = flip_bits(&path, 3, None, &mut SplitMix::new(7)).expect("flip");
        let damaged = std::fs::read(&path).expect("read");
        let differing: Vec<usize> = (0..original.len())
            .filter(|&i| original[i] != damaged[i])
            .collect();
        assert!(
            !differing.is_empty() && differing.len() <= 3,
            "{differing:?}"
        );
        for i in &differing {
            assert!(offsets.contains(&(*i as u64)));
            assert_eq!((original[*i] ^ damaged[*i]).count_ones(), 1);
        }
        std::fs::write(&path, &original).expect("write");
        assert_eq!(
            flip_bits(&path, 3, None, &mut SplitMix::new(7)).expect("flip"),
            offsets
        );
    }

    #[test]
    fn truncation_cuts_at_least_one_byte_and_at_most_the_bound() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("f");
        let mut bytes = vec![1u8; 1000];
        bytes.extend([0u8; 500]);
        std::fs::write(&path, bytes).expect("write");
        let new_len = truncate_tail(&path, 100, &mut SplitMix::new(1)).expect("truncate");
        assert!((900..1000).contains(&new_len), "{new_len}");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), new_len);
        std::fs::write(&path, [1u8, 2, 0, 0]).expect("write");
        assert_eq!(written_len(&path).expect("len"), 2);
    }
}
