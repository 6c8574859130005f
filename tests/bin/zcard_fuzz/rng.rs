//! SplitMix64: small, fast, and the same sequence from the same seed on
//! every machine and every build, which is what a replayable run needs.

/// A seeded generator.
pub struct Rng(u64);

impl Rng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The seed of sub-stream `a`/`b` of `seed` (a round, a worker).
    pub fn derive(seed: u64, a: u64, b: u64) -> u64 {
        let mut r = Rng(seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.rotate_left(32));
        r.next_u64()
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `0..n` as a usize.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// A value near the interesting edges of a `u64` field whose valid
    /// values end at `limit`: 0, 1, the limit and its neighbours, the top
    /// of the type, powers of two, or anything.
    pub fn edge_u64(&mut self, limit: u64) -> u64 {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => limit,
            3 => limit.wrapping_add(1),
            4 => limit.wrapping_sub(1),
            5 => u64::MAX,
            6 => u64::MAX - self.below(4096),
            7 => 1u64 << self.below(64),
            8 => self.below(limit.max(1).saturating_add(1)),
            _ => self.next_u64(),
        }
    }

    /// `edge_u64` for a `u32` field.
    pub fn edge_u32(&mut self, limit: u32) -> u32 {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => limit,
            3 => limit.wrapping_add(1),
            4 => limit.wrapping_sub(1),
            5 => u32::MAX,
            6 => 1u32 << self.below(32),
            7 => 0x8000_0000,
            8 => self.below(u64::from(limit) + 1) as u32,
            _ => self.next_u64() as u32,
        }
    }

    /// Random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
