//! Fixtures for tests: seeded RNGs and ready-made records.

use rand_core::{CryptoRng, RngCore};

use crate::identity::Identity;
use crate::record::LocationRecord;

/// A deterministic, seedable RNG for tests (BLAKE3 in XOF mode). Never use
/// it for real keys.
#[derive(Debug)]
pub struct TestRng(blake3::OutputReader);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}
impl CryptoRng for TestRng {}

/// A seeded test RNG.
pub fn rng(seed: u64) -> TestRng {
    TestRng(
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof(),
    )
}

/// A record for `id` at `addr` with test defaults.
pub fn record_for(id: &Identity, addr: &str) -> LocationRecord {
    LocationRecord::new(id, vec![addr.parse().expect("test address")])
}
