//! The control segment: a versioned header, the two index rings, and (for
//! the shm transport) the slots themselves.
//!
//! ```text
//! 0                      SegmentHeader (256 bytes)
//! submit_ring            RingHeader + ring_capacity entries   sender → receiver
//! return_ring            RingHeader + ring_capacity entries   receiver → sender
//! slots_offset           slot_count × slot_stride             (shm transport only)
//! ```
//!
//! A ring entry is `slot index | message length << 32`. The creator writes the
//! header, then sets `ready` (release); an opener reads `ready` (acquire), then
//! checks magic, version, its own idea of the layout against every recorded
//! offset, and the file's size, and from then on uses only its own copies of
//! the geometry: nothing it later reads from the header can move a slot.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

pub use super::geometry::{MAX_SLOTS_BYTES, MAX_SLOT_COUNT, MAX_SLOT_SIZE};
use super::{liveness, Error, Geometry, Result, TransportKind};
use crate::ring::{RingHeader, RingPtr};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// First bytes of every channel segment.
pub const MAGIC: [u8; 8] = *b"ZCOPYCH\0";
/// Segment format version this library writes and accepts (2: lap-tagged
/// ring entries, see [`crate::ring`]).
pub const VERSION: u32 = 2;
/// Where named channels live.
pub const SHM_DIR: &str = "/dev/shm";
/// File name prefix of named channels in [`SHM_DIR`].
pub const NAME_PREFIX: &str = "zcopy.";

/// `flags`: the sender closed the channel (dropped its end).
pub const FLAG_SENDER_CLOSED: u32 = 1 << 0;

/// A process attached to one end of the channel.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Owner {
    /// Its pid (0: no one).
    pub pid: AtomicU32,
    /// Reserved.
    pub reserved: u32,
    /// Its start time (`/proc/<pid>/stat` field 22): tells a reused pid apart.
    pub start: AtomicU64,
}

/// The header at offset 0 of a segment. `#[repr(C)]`, 256 bytes.
#[repr(C)]
#[derive(Debug)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<SegmentHeader>()` of the writer.
    pub header_size: u32,
    /// The transport's kind ([`TransportKind`] as u32).
    pub transport: u32,
    /// Payload capacity of one slot.
    pub slot_size: u32,
    /// Number of slots.
    pub slot_count: u32,
    /// Entries per ring (power of two, ≥ slot_count).
    pub ring_capacity: u32,
    /// Bytes from one slot to the next.
    pub slot_stride: u64,
    /// Offset of the sender → receiver ring.
    pub submit_ring: u64,
    /// Offset of the receiver → sender ring.
    pub return_ring: u64,
    /// Offset of slot 0 in the segment (shm) or in the transport's memory (card: 0).
    pub slots_offset: u64,
    /// Bytes of slot memory.
    pub slots_bytes: u64,
    /// Bytes of the whole segment.
    pub segment_bytes: u64,
    /// 1 once the creator has written everything else (release/acquire).
    pub ready: AtomicU32,
    /// FLAG_* bits.
    pub flags: AtomicU32,
    /// The sending process.
    pub sender: Owner,
    /// The receiving process, while one is attached.
    pub receiver: Owner,
    /// Reserved, zero.
    pub reserved: [u64; 17],
}

impl Geometry {
    /// Reads and checks the geometry a header records.
    fn from_header(h: &SegmentHeader, file_len: u64) -> Result<Geometry> {
        if h.magic != MAGIC {
            return Err(Error::NotAChannel);
        }
        if h.version != VERSION {
            return Err(Error::Version {
                found: h.version,
                expected: VERSION,
            });
        }
        if h.header_size as usize != std::mem::size_of::<SegmentHeader>() {
            return Err(Error::Layout(format!(
                "header of {} bytes, this library's is {}",
                h.header_size,
                std::mem::size_of::<SegmentHeader>()
            )));
        }
        let transport = TransportKind::from_u32(h.transport)
            .ok_or_else(|| Error::Layout(format!("unknown transport {}", h.transport)))?;
        let g = Geometry::new(transport, h.slot_size as usize, h.slot_count)
            .map_err(|e| Error::Layout(e.to_string()))?;
        let recorded = (
            h.ring_capacity,
            h.slot_stride,
            h.submit_ring,
            h.return_ring,
            h.slots_offset,
            h.slots_bytes,
            h.segment_bytes,
        );
        let ours = (
            g.ring_capacity,
            g.slot_stride,
            g.submit_ring,
            g.return_ring,
            g.slots_offset,
            g.slots_bytes,
            g.segment_bytes,
        );
        if recorded != ours {
            return Err(Error::Layout(format!(
                "recorded (capacity, stride, submit, return, slots, slots bytes, size) = {recorded:?}, expected {ours:?}"
            )));
        }
        if file_len < g.segment_bytes {
            return Err(Error::Layout(format!(
                "segment file is {file_len} bytes, its header says {}",
                g.segment_bytes
            )));
        }
        Ok(g)
    }
}

/// Refuses a segment larger than what [`SHM_DIR`] has free. The file is
/// made at its full size but sparse, so nothing else would notice: the
/// sender's first write past the free space would end it with SIGBUS.
/// Reserving the pages instead (`fallocate`) would commit memory for
/// every slot, where a ping-pong touches two. Space that another process
/// takes after this check can still run out under a sender.
fn check_room(needs: u64) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(SHM_DIR)
        .map_err(|e| Error::io("reading the free space of /dev/shm")(e.into()))?;
    if st.blocks() == 0 {
        // A tmpfs without a size limit (size=0) counts no blocks at all.
        return Ok(());
    }
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    if needs > free {
        return Err(Error::NoRoom { needs, free });
    }
    Ok(())
}

/// A mapped control segment.
#[derive(Debug)]
pub struct Segment {
    fd: OwnedFd,
    map: MmapRaw,
    geo: Geometry,
    path: Option<PathBuf>,
}

// SAFETY: the mapping is shared memory reached only through atomics (header
// fields that change, ring indices and entries) or through the slot
// protocol; the raw pointer inside MmapRaw is what keeps it from being Send.
unsafe impl Send for Segment {}

impl Segment {
    /// Creates an anonymous segment: a memfd, sealed against shrinking and
    /// growing, to be shared by passing its fd.
    pub(crate) fn create_memfd(geo: Geometry) -> Result<Segment> {
        let name = CString::new("zcopy-channel").expect("no NUL");
        // SAFETY: memfd_create reads the NUL-terminated name and returns a
        // new descriptor or -1.
        let raw = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(Error::io("memfd_create")(std::io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let file = File::from(fd);
        file.set_len(geo.segment_bytes)
            .map_err(Error::io("sizing the segment"))?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own; no memory passed.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(Error::io("sealing the segment")(
                std::io::Error::last_os_error(),
            ));
        }
        Segment::init(OwnedFd::from(file), geo, None)
    }

    /// Creates a named segment `/dev/shm/zcopy.<name>`: written under a
    /// temporary name and renamed into place, so an opener never sees it
    /// half made.
    pub(crate) fn create_named(name: &str, geo: Geometry) -> Result<Segment> {
        let path = path_of(name)?;
        if let Some(existing) = probe(&path) {
            return Err(existing);
        }
        check_room(geo.segment_bytes)?;
        let tmp = Path::new(SHM_DIR).join(format!(".{NAME_PREFIX}{name}.{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io("creating the segment file"))?;
        let cleanup = |e| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        file.set_len(geo.segment_bytes)
            .map_err(Error::io("sizing the segment"))
            .map_err(cleanup)?;
        let seg = Segment::init(OwnedFd::from(file), geo, None).map_err(cleanup)?;
        rename_noreplace(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                probe(&path).unwrap_or(Error::Exists {
                    name: name.to_string(),
                    pid: 0,
                })
            } else {
                Error::io("publishing the segment name")(e)
            }
        })?;
        Ok(Segment {
            path: Some(path),
            ..seg
        })
    }

    fn init(fd: OwnedFd, geo: Geometry, path: Option<PathBuf>) -> Result<Segment> {
        let map = MmapOptions::new()
            .len(geo.segment_bytes as usize)
            .map_raw(&fd)
            .map_err(Error::io("mapping the segment"))?;
        let seg = Segment { fd, map, geo, path };
        // SAFETY: the segment is fresh (zero-filled by the kernel) and no
        // other process can see it yet, so this is the only reference; the
        // mapping is at least a header long and page aligned.
        let h = unsafe { &mut *seg.map.as_mut_ptr().cast::<SegmentHeader>() };
        h.magic = MAGIC;
        h.version = VERSION;
        h.header_size = std::mem::size_of::<SegmentHeader>() as u32;
        h.transport = geo.transport as u32;
        h.slot_size = geo.slot_size;
        h.slot_count = geo.slot_count;
        h.ring_capacity = geo.ring_capacity;
        h.slot_stride = geo.slot_stride;
        h.submit_ring = geo.submit_ring;
        h.return_ring = geo.return_ring;
        h.slots_offset = geo.slots_offset;
        h.slots_bytes = geo.slots_bytes;
        h.segment_bytes = geo.segment_bytes;
        let (pid, start) = liveness::me();
        h.sender.pid.store(pid, Ordering::Relaxed);
        h.sender.start.store(start, Ordering::Relaxed);
        // READY (release): everything above is visible to whoever sees ready = 1.
        h.ready.store(1, Ordering::Release);
        Ok(seg)
    }

    /// Opens a segment from a descriptor and checks it. `sealed`: refuse a
    /// segment whose size its creator could still change.
    pub(crate) fn open(fd: OwnedFd, sealed: bool, path: Option<PathBuf>) -> Result<Segment> {
        let file = File::from(fd);
        let len = file
            .metadata()
            .map_err(Error::io("reading the segment size"))?
            .len();
        if len < std::mem::size_of::<SegmentHeader>() as u64 {
            return Err(Error::NotAChannel);
        }
        if sealed {
            // SAFETY: fcntl(F_GET_SEALS) on a descriptor we own; no memory passed.
            let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
            if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
                return Err(Error::Unsealed);
            }
        }
        let head = MmapOptions::new()
            .len(std::mem::size_of::<SegmentHeader>())
            .map_raw_read_only(&file)
            .map_err(Error::io("mapping the segment header"))?;
        // SAFETY: the mapping is at least a header long and page aligned;
        // the fields read here are plain integers (any bit pattern is valid)
        // and `ready` is read through its atomic.
        let h = unsafe { &*head.as_ptr().cast::<SegmentHeader>() };
        if h.magic != MAGIC {
            return Err(Error::NotAChannel);
        }
        // READY (acquire): pairs with init's release store.
        if h.ready.load(Ordering::Acquire) != 1 {
            return Err(Error::NotReady);
        }
        let geo = Geometry::from_header(h, len)?;
        drop(head);
        let map = MmapOptions::new()
            .len(geo.segment_bytes as usize)
            .map_raw(&file)
            .map_err(Error::io("mapping the segment"))?;
        Ok(Segment {
            fd: OwnedFd::from(file),
            map,
            geo,
            path,
        })
    }

    /// Opens `/dev/shm/zcopy.<name>`.
    pub(crate) fn open_named(name: &str) -> Result<Segment> {
        let path = path_of(name)?;
        let file = open_rw(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(name.to_string())
            } else {
                Error::io("opening the segment")(e)
            }
        })?;
        Segment::open(OwnedFd::from(file), false, None)
    }

    /// The geometry (this process's checked copy).
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The header (inline: a receiver polling without waiting reads its
    /// flags on every call).
    #[inline]
    pub(crate) fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is segment_bytes ≥ a header long, page aligned,
        // and lives as long as self; the fields that change are atomics.
        unsafe { &*self.map.as_ptr().cast::<SegmentHeader>() }
    }

    fn ring(&self, offset: u64) -> RingPtr {
        let hdr = self
            .map
            .as_ptr()
            .wrapping_add(offset as usize)
            .cast::<RingHeader>();
        // SAFETY: offset and capacity were computed by Geometry::new (ours,
        // not read back from the segment): the ring lies inside the mapping,
        // 64-aligned, and the mapping outlives every ring end (the channel
        // ends hold the Segment).
        unsafe { RingPtr::new(hdr, self.geo.ring_capacity) }
    }

    /// The sender → receiver ring.
    pub(crate) fn submit_ring(&self) -> RingPtr {
        self.ring(self.geo.submit_ring)
    }

    /// The receiver → sender ring.
    pub(crate) fn return_ring(&self) -> RingPtr {
        self.ring(self.geo.return_ring)
    }

    /// Start of the in-segment slot area (shm transport).
    pub(crate) fn slots_ptr(&self) -> *mut u8 {
        self.map
            .as_mut_ptr()
            .wrapping_add(self.geo.slots_offset as usize)
    }

    /// The descriptor (to share).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The name's path if this process created it by name.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

use std::os::unix::fs::OpenOptionsExt;

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(from.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let to = CString::new(to.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// The longest channel name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a channel name: 1 to [`MAX_NAME_LEN`] of `A-Z a-z 0-9 . _ -`,
/// not starting with a dot. Every named channel, and every tool that takes a
/// name for one, checks it here.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// Checks a channel name and gives its path.
pub(crate) fn path_of(name: &str) -> Result<PathBuf> {
    check_name(name)?;
    Ok(Path::new(SHM_DIR).join(format!("{NAME_PREFIX}{name}")))
}

/// What an existing name stands for, as the error creating it again gives.
fn probe(path: &Path) -> Option<Error> {
    let name = path
        .file_name()?
        .to_str()?
        .strip_prefix(NAME_PREFIX)?
        .to_string();
    let file = open_rw(path).ok()?;
    match Segment::open(OwnedFd::from(file), false, None) {
        Ok(seg) => {
            let (pid, start) = seg.sender();
            if liveness::alive(pid, start) {
                Some(Error::Exists { name, pid })
            } else {
                Some(Error::Stale { name, pid })
            }
        }
        // Something unreadable under our prefix: report it as in the way.
        Err(_) => Some(Error::Exists { name, pid: 0 }),
    }
}

impl Segment {
    /// The sender's (pid, start time) as recorded.
    pub(crate) fn sender(&self) -> (u32, u64) {
        let o = &self.header().sender;
        (
            o.pid.load(Ordering::Acquire),
            o.start.load(Ordering::Acquire),
        )
    }
}

/// The state of a named channel, as [`list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// Sender pid (creator).
    pub sender_pid: u32,
    /// Receiver pid, 0 when none is attached.
    pub receiver_pid: u32,
    /// The sender process is gone: the segment is stale.
    pub stale: bool,
    /// Transport, slot size and count; None when the file is not a valid segment.
    pub geometry: Option<Geometry>,
    /// Why the file is not a valid segment, when it is not.
    pub problem: Option<String>,
}

/// Lists the named channels in `/dev/shm`, live and stale.
pub fn list() -> Result<Vec<ChannelInfo>> {
    let mut out = Vec::new();
    let dir = std::fs::read_dir(SHM_DIR).map_err(Error::io("reading /dev/shm"))?;
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(NAME_PREFIX)) else {
            continue;
        };
        out.push(info(name, &entry.path()));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn info(name: &str, path: &Path) -> ChannelInfo {
    let mut ci = ChannelInfo {
        name: name.to_string(),
        path: path.to_path_buf(),
        sender_pid: 0,
        receiver_pid: 0,
        stale: false,
        geometry: None,
        problem: None,
    };
    let opened = open_rw(path)
        .map_err(Error::io("opening"))
        .and_then(|f| Segment::open(OwnedFd::from(f), false, None));
    match opened {
        Ok(seg) => {
            let (pid, start) = seg.sender();
            ci.sender_pid = pid;
            ci.stale = !liveness::alive(pid, start);
            ci.receiver_pid = seg.header().receiver.pid.load(Ordering::Acquire);
            ci.geometry = Some(seg.geo);
        }
        Err(e) => ci.problem = Some(e.to_string()),
    }
    ci
}

/// Removes the named channel if its sender is gone (a crash left it
/// behind). A live channel is left alone: [`Error::Exists`]. So is a file
/// that is not a readable channel while a process has it open or mapped
/// (the sender of another format version, whose header this one cannot
/// read), or while that cannot be told; once none does, it is removed.
pub fn remove_stale(name: &str) -> Result<()> {
    let path = path_of(name)?;
    if !path.exists() {
        return Err(Error::NotFound(name.to_string()));
    }
    let ci = info(name, &path);
    let user = match ci.geometry {
        Some(_) if !ci.stale => Some(ci.sender_pid),
        Some(_) => None,
        None => in_use_by(&path),
    };
    if let Some(pid) = user {
        return Err(Error::Exists {
            name: name.to_string(),
            pid,
        });
    }
    std::fs::remove_file(&path).map_err(Error::io("removing the segment"))
}

/// A process that has `path`'s file open or mapped, if one does, found by
/// the file's device and inode in /proc's descriptors and maps (so a path
/// reached through a symlink counts); `Some(0)` when /proc cannot be read:
/// unknown counts as in use.
fn in_use_by(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::metadata(path).ok()?;
    let (dev, ino) = (target.dev(), target.ino());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Some(0);
    };
    let dev_text = (u64::from(libc::major(dev)), u64::from(libc::minor(dev)));
    // A maps line: range, perms, offset, MAJ:MIN (hex), inode, path.
    let maps_line = |l: &str| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some((maj, min)) = f.get(3).and_then(|d| d.split_once(':')) else {
            return false;
        };
        let parsed = (u64::from_str_radix(maj, 16), u64::from_str_radix(min, 16));
        matches!(parsed, (Ok(a), Ok(b)) if (a, b) == dev_text)
            && f.get(4).and_then(|i| i.parse::<u64>().ok()) == Some(ino)
    };
    let mapped = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|maps| maps.lines().any(maps_line))
    };
    let open = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
            })
        })
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| mapped(pid) || open(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_pinned() {
        assert_eq!(std::mem::size_of::<SegmentHeader>(), 256);
        assert_eq!(std::mem::offset_of!(SegmentHeader, version), 8);
        assert_eq!(std::mem::offset_of!(SegmentHeader, slot_stride), 32);
        assert_eq!(std::mem::offset_of!(SegmentHeader, ready), 80);
        assert_eq!(std::mem::offset_of!(SegmentHeader, sender), 88);
        assert_eq!(std::mem::offset_of!(SegmentHeader, receiver), 104);
    }

    #[test]
    fn a_file_that_is_no_readable_channel_is_kept_while_in_use() {
        // Zeroes: a header this version cannot read (another version's).
        let name = format!("unit-unreadable-{}", std::process::id());
        let path = path_of(&name).unwrap();
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let held = std::fs::File::open(&path).unwrap();
        let e = remove_stale(&name).unwrap_err();
        assert!(
            matches!(e, Error::Exists { pid, .. } if pid == std::process::id()),
            "{e}"
        );
        assert!(path.exists());
        // Mapped with its descriptor closed: the maps say so.
        // SAFETY: a private read-only map of a file only this test writes.
        let map = unsafe { memmap2::Mmap::map(&held) }.unwrap();
        drop(held);
        assert!(matches!(remove_stale(&name), Err(Error::Exists { .. })));
        drop(map);
        remove_stale(&name).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn names_are_checked() {
        for bad in [
            "",
            ".hidden",
            "a/b",
            "sp ace",
            &"x".repeat(201),
            "nul\0",
            "ü",
        ] {
            assert!(matches!(path_of(bad), Err(Error::BadName(_))), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("a.").is_ok());
        assert_eq!(
            path_of("ok-1.2_3").unwrap(),
            Path::new("/dev/shm/zcopy.ok-1.2_3")
        );
    }
}
