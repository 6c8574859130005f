//! Raw system calls at /dev/zcard0, as a hostile process makes them: any
//! request number, any pointer, any mmap arguments, and a ring whose indices
//! can be written with anything. Every call returns the raw outcome (value or
//! errno); judging it is the caller's job.

use std::ffi::CString;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use zcopy::card::uapi::{ZcardCqe, ZcardRingSetup, ZcardSqe, ZCARD_IOC_MAGIC};

/// `_IOC` direction bits (asm-generic).
pub const DIR_NONE: u64 = 0;
/// Written by user space, read by the kernel.
pub const DIR_WRITE: u64 = 1;
/// Read by user space, written by the kernel.
pub const DIR_READ: u64 = 2;

/// An ioctl request number from its parts (asm-generic `_IOC`).
pub fn ioc(dir: u64, magic: u8, nr: u8, size: u64) -> u64 {
    (dir << 30) | ((size & 0x3fff) << 16) | (u64::from(magic) << 8) | u64::from(nr)
}

/// The request number of zcard ioctl `nr` with its struct of `size` bytes.
pub fn zcard_ioc(dir: u64, nr: u8, size: usize) -> u64 {
    ioc(dir, ZCARD_IOC_MAGIC, nr, size as u64)
}

/// `ioctl(fd, req, arg)`: its value or errno.
pub fn ioctl(fd: i32, req: u64, arg: usize) -> Result<i32, Errno> {
    // SAFETY: the kernel checks the descriptor and every access through
    // `arg`; a bad pointer is an EFAULT, never memory of ours written
    // outside what the request's struct covers (the callers give a buffer of
    // that size, or an address that is deliberately not mapped or read-only).
    let r = unsafe { libc::ioctl(fd, req as libc::c_ulong, arg) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `mmap(NULL, len, prot, flags, fd, off)`: the address or errno.
pub fn mmap(len: usize, prot: i32, flags: i32, fd: i32, off: u64) -> Result<usize, Errno> {
    // SAFETY: no fixed address: the kernel picks a free range, so no mapping
    // of ours is replaced.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags,
            fd,
            off as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(Errno::last())
    } else {
        Ok(p as usize)
    }
}

/// `munmap(addr, len)`.
pub fn munmap(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: callers unmap only mappings they made themselves and no longer
    // reference.
    let r = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `mprotect(addr, len, prot)`.
pub fn mprotect(addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
    // SAFETY: callers pass mappings they own; only their protection changes.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `madvise(addr, len, advice)`.
pub fn madvise(addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
    // SAFETY: callers pass mappings they own; the advice used is
    // MADV_DONTNEED, which the mapping's pages survive (docs/uapi.md).
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `open(path, flags)`: the descriptor or errno.
pub fn open(path: &str, flags: i32) -> Result<i32, Errno> {
    let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(Errno::last())
    } else {
        Ok(fd)
    }
}

/// `close(fd)`.
pub fn close(fd: i32) {
    // SAFETY: callers close descriptors they own, once.
    unsafe { libc::close(fd) };
}

/// A new eventfd.
pub fn eventfd() -> Result<i32, Errno> {
    // SAFETY: no pointers are involved.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        Err(Errno::last())
    } else {
        Ok(fd)
    }
}

/// The lowest descriptor number not open now.
pub fn lowest_free_fd() -> i32 {
    // SAFETY: F_DUPFD of descriptor 0 (stdin, open in every test run)
    // makes a new descriptor, which is closed at once.
    let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
    if fd >= 0 {
        close(fd);
    }
    fd
}

/// Whether `fd` is open.
pub fn fd_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Reads the byte at `addr`.
///
/// # Safety
///
/// `addr` lies in a readable mapping of this process.
pub unsafe fn read_byte(addr: usize) -> u8 {
    // SAFETY: readable by the caller's contract; volatile, since the card
    // writes the memory behind the compiler's back.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// Copies `len` bytes at `addr` into a vector.
///
/// # Safety
///
/// `addr..addr + len` lies in a readable mapping of this process.
pub unsafe fn read_bytes(addr: usize, len: usize) -> Vec<u8> {
    // SAFETY: readable by the caller's contract, and nothing writes it while
    // it is read (the card has no request in flight on it).
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
}

/// An anonymous mapping of `pages` pages with page `i` given `prots[i]`:
/// addresses that are readable, read-only or not mapped at all, for the
/// pointers an ioctl is given.
pub struct Scratch {
    /// Start of the area.
    pub base: usize,
    /// Its length.
    pub len: usize,
}

impl Scratch {
    /// Maps the area.
    pub fn new(prots: &[i32]) -> Scratch {
        let len = prots.len() * 4096;
        let base = mmap(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .expect("an anonymous scratch mapping");
        for (i, &p) in prots.iter().enumerate() {
            mprotect(base + i * 4096, 4096, p).expect("mprotect of scratch");
        }
        Scratch { base, len }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = munmap(self.base, self.len);
    }
}

/// A ring area mapped from a zcard file, used without any of the
/// protections a well-behaved binding has: its indices can be set to
/// anything.
pub struct RawRing {
    /// Where the area is mapped.
    pub base: usize,
    /// The geometry RING_SETUP returned.
    pub rs: ZcardRingSetup,
}

impl RawRing {
    fn word(&self, off: u32) -> &AtomicU32 {
        // SAFETY: every index offset lies inside the mapped ring area (the
        // driver's layout, checked against ring_size at setup), is 4-byte
        // aligned, and the area lives as long as `self`; the kernel writes
        // it concurrently, hence the atomic.
        unsafe { &*((self.base + off as usize) as *const AtomicU32) }
    }

    /// The SQ tail word (user writes).
    pub fn sq_tail(&self) -> &AtomicU32 {
        self.word(self.rs.off.sq_tail)
    }

    /// The SQ head word (kernel writes).
    pub fn sq_head(&self) -> &AtomicU32 {
        self.word(self.rs.off.sq_head)
    }

    /// The CQ tail word (kernel writes).
    pub fn cq_tail(&self) -> &AtomicU32 {
        self.word(self.rs.off.cq_tail)
    }

    /// The CQ head word (user writes).
    pub fn cq_head(&self) -> &AtomicU32 {
        self.word(self.rs.off.cq_head)
    }

    /// The CQ overflow counter (kernel writes).
    pub fn cq_overflow(&self) -> &AtomicU32 {
        self.word(self.rs.off.cq_overflow)
    }

    /// Writes SQE slot `index & mask`.
    pub fn write_sqe(&self, index: u32, sqe: &ZcardSqe) {
        let slot = (index & (self.rs.sq_entries - 1)) as usize;
        let p = (self.base + self.rs.off.sqes as usize + slot * 64) as *mut ZcardSqe;
        // SAFETY: `slot` < sq_entries, so the entry lies in the mapped SQE
        // array; the kernel copies SQEs only up to the published tail, which
        // has not passed this one yet.
        unsafe { p.write_volatile(*sqe) };
    }

    /// Reads CQE slot `index & mask`.
    pub fn read_cqe(&self, index: u32) -> ZcardCqe {
        let slot = (index & (self.rs.cq_entries - 1)) as usize;
        let p = (self.base + self.rs.off.cqes as usize + slot * 32) as *const ZcardCqe;
        // SAFETY: `slot` < cq_entries, inside the mapped CQE array; the
        // caller loaded cq_tail with acquire ordering past this entry.
        unsafe { p.read_volatile() }
    }

    /// Publishes the SQ tail (release: the SQEs before it are visible).
    pub fn set_sq_tail(&self, v: u32) {
        self.sq_tail().store(v, Ordering::Release);
    }
}
