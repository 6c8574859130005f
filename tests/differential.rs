//! The differential check, zcard.ko's half (normal boot): the seeded
//! sequences of `zcopy_vm_tests::differential` through `zcopy::card`,
//! compared with the reference model and, when the VFIO boot ran first,
//! with the VFIO driver's trace (tests/vfio.rs runs the other half).

use std::time::Duration;

use zcopy::card::{Buf, Card, Pool, PoolMap, Rings, Sqe};
use zcopy_vm_tests::differential::{
    self, DiffOp, Driver, BUFFERS, BUFFER_BYTES, STORAGE_BASE, STORAGE_BYTES,
};

const WAIT: Duration = Duration::from_secs(30);

struct Kernel {
    rings: Rings,
    pools: Vec<(Pool, PoolMap)>,
    scratch: (Pool, PoolMap),
}

impl Kernel {
    fn one(&mut self, sqe: Sqe) -> Result<u32, String> {
        let c = self.rings.run(&[sqe], WAIT).map_err(|e| e.to_string())?;
        let c = c.first().ok_or("no completion")?;
        c.bytes().map_err(|e| e.to_string())?;
        Ok(c.value as u32)
    }

    fn at(&self, (b, off): (usize, usize)) -> Buf {
        Buf::new(&self.pools[b].0, off as u64)
    }
}

impl Driver for Kernel {
    fn load(&mut self, init: &[Vec<u8>]) {
        for (i, data) in init.iter().enumerate() {
            self.pools[i].1.write(0, data).expect("pool write");
        }
        self.scratch
            .1
            .write(0, &vec![0; STORAGE_BYTES])
            .expect("pool write");
        let z = Sqe::storage_write(
            Buf::new(&self.scratch.0, 0),
            STORAGE_BASE,
            STORAGE_BYTES as u32,
        );
        self.one(z).expect("zero the storage region");
    }

    fn run(&mut self, op: DiffOp) -> Result<u32, String> {
        let sqe = match op {
            DiffOp::Copy { src, dst, len } => Sqe::copy(self.at(src), self.at(dst), len as u32),
            DiffOp::Fill { dst, len, pattern } => Sqe::fill(self.at(dst), len as u32, pattern),
            DiffOp::Crc { src, len, seed } => Sqe::crc32c(self.at(src), len as u32, seed),
            DiffOp::StorageWrite { src, soff, len } => {
                Sqe::storage_write(self.at(src), STORAGE_BASE + soff as u64, len as u32)
            }
            DiffOp::StorageRead { soff, dst, len } => {
                Sqe::storage_read(STORAGE_BASE + soff as u64, self.at(dst), len as u32)
            }
            DiffOp::Flush => Sqe::flush(),
        };
        let v = self.one(sqe)?;
        Ok(if matches!(op, DiffOp::Crc { .. }) {
            v
        } else {
            0
        })
    }

    fn buffer(&mut self, i: usize) -> Vec<u8> {
        let mut v = vec![0; BUFFER_BYTES];
        self.pools[i].1.read(0, &mut v).expect("pool read");
        v
    }

    fn storage(&mut self) -> Vec<u8> {
        let r = Sqe::storage_read(
            STORAGE_BASE,
            Buf::new(&self.scratch.0, 0),
            STORAGE_BYTES as u32,
        );
        self.one(r).expect("read the storage region");
        let mut v = vec![0; STORAGE_BYTES];
        self.scratch.1.read(0, &mut v).expect("pool read");
        v
    }
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_same_seeded_sequences_give_the_same_results_through_zcard_ko() {
    let card = Card::open_index(0).unwrap_or_else(|e| panic!("{e} (is zcard.ko loaded?)"));
    let pool = |size: usize| {
        let p = card.create_pool(size as u64).expect("pool");
        let m = p.map().expect("map");
        (p, m)
    };
    let pools = (0..BUFFERS).map(|_| pool(BUFFER_BYTES)).collect();
    let scratch = pool(STORAGE_BYTES);
    let rings = card.setup_rings(64).expect("rings");
    let mut k = Kernel {
        rings,
        pools,
        scratch,
    };
    differential::check("zcard-ko", "vfio", &mut k, 300).unwrap_or_else(|e| panic!("{e}"));
}
