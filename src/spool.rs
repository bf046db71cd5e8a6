//! The spool tree on disk (spec README, "Spool directories"): its layout,
//! the rules for names in the drop folders, claim names, opening a claimed
//! file without following links, atomic publication, queue statistics and
//! the lock that keeps one daemon per spool.
//!
//! Names this module makes (`SEQ` is the claim's 20-digit UTC timestamp
//! `YYYYMMDDhhmmssuuuuuu`, strictly increasing across restarts):
//!
//! - `work/SEQ-CHANNEL-NAME`: a claimed input (`CHANNEL` is `abi` or `ecert`);
//! - `archive/SEQ-CHANNEL-NAME`: the same input once its response is published;
//! - `outbound/SENDER/SEQ-NAME.resp`: the response;
//! - `rejected/SEQ-NAME` with `rejected/SEQ-NAME.why`: a hostile entry
//!   refused without being read;
//! - `rejected/NAME` with `rejected/NAME.resp` and `rejected/NAME.why`: an
//!   input whose first batch did not authenticate, as the spec names it
//!   (`SEQ-NAME` instead when an earlier input holds `NAME`; the choice is
//!   recorded in the store before the response is written);
//! - `.ecertd-tmp-*`: files being written; never visible under a final name,
//!   and removed at start-up.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::envelope::Channel;
use crate::types::Date;

/// Folders of the spool tree, relative to the root.
pub const SPOOL_DIRS: &[&str] = &[
    "inbound/abi",
    "inbound/ecert",
    "work",
    "outbound",
    "archive",
    "rejected",
    "journal",
];

/// Prefix of every file the daemon is still writing.
pub const TEMP_PREFIX: &str = ".ecertd-tmp-";

/// Longest accepted drop-file name.
pub const MAX_NAME: usize = 128;

/// The folders of one spool root.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn inbound(&self, channel: Channel) -> PathBuf {
        self.root.join("inbound").join(channel.name())
    }

    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    pub fn outbound(&self) -> PathBuf {
        self.root.join("outbound")
    }

    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    pub fn rejected(&self) -> PathBuf {
        self.root.join("rejected")
    }

    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// Creates every folder of the tree (safe to repeat).
    pub fn create(&self) -> io::Result<()> {
        for d in SPOOL_DIRS {
            let p = self.root.join(d);
            fs::create_dir_all(&p).map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", p.display())))?;
        }
        Ok(())
    }

    /// Whether every folder of the tree exists.
    pub fn exists(&self) -> bool {
        SPOOL_DIRS.iter().all(|d| self.root.join(d).is_dir())
    }
}

/// Both drop channels, in scan order.
pub const CHANNELS: [Channel; 2] = [Channel::Abi, Channel::Ecert];

pub fn channel_by_name(s: &str) -> Option<Channel> {
    match s {
        "abi" => Some(Channel::Abi),
        "ecert" => Some(Channel::Ecert),
        _ => None,
    }
}

/// Whether a drop-folder name is acceptable: 1 to 128 of `A-Z a-z 0-9 . _ -`.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A name safe to give a refused entry in `rejected/`: every byte outside
/// the accepted set becomes `_`, at most 100 bytes are kept.
pub fn safe_name(name: &[u8]) -> String {
    let s: String = name
        .iter()
        .take(100)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

/// A claimed input file: `SEQ-CHANNEL-NAME` in `work/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The whole claim name (the store's key for the input).
    pub id: String,
    pub seq: String,
    pub channel: Channel,
    /// The name the sender gave the file.
    pub name: String,
}

/// Width of a claim sequence.
pub const SEQ_LEN: usize = 20;

impl Claim {
    pub fn new(seq: &str, channel: Channel, name: &str) -> Claim {
        Claim {
            id: format!("{seq}-{}-{name}", channel.name()),
            seq: seq.to_string(),
            channel,
            name: name.to_string(),
        }
    }

    /// Reads a claim name back; `None` for anything this daemon did not make.
    pub fn parse(id: &str) -> Option<Claim> {
        let seq = id.get(..SEQ_LEN)?;
        if !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let rest = id.get(SEQ_LEN..)?.strip_prefix('-')?;
        let (channel, name) = rest.split_once('-')?;
        let channel = channel_by_name(channel)?;
        if !valid_name(name.as_bytes()) || name.starts_with('.') {
            return None;
        }
        Some(Claim::new(seq, channel, name))
    }

    /// `SEQ-NAME.resp`: the response file's name.
    pub fn response_name(&self) -> String {
        format!("{}-{}.resp", self.seq, self.name)
    }

    /// `SEQ-NAME`: the input's name in `rejected/`.
    pub fn rejected_name(&self) -> String {
        format!("{}-{}", self.seq, self.name)
    }
}

/// Microseconds since the epoch as `YYYYMMDDhhmmssuuuuuu`.
pub fn seq_from_micros(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let day = Date::from_days_since_epoch((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{:06}",
        day.year,
        day.month,
        day.day,
        s / 3600,
        s / 60 % 60,
        s % 60,
        micros % 1_000_000
    )
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`seq_from_micros`].
pub fn micros_from_seq(seq: &str) -> Option<u64> {
    if seq.len() != SEQ_LEN || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| seq.get(r).and_then(|s| s.parse::<i64>().ok());
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    let secs = days * 86_400 + n(8..10)? * 3600 + n(10..12)? * 60 + n(12..14)?;
    let micros = secs.checked_mul(1_000_000)?.checked_add(n(14..20)?)?;
    u64::try_from(micros).ok()
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Hands out strictly increasing claim sequences, never below one already used.
#[derive(Debug, Default)]
pub struct SeqGen {
    last: u64,
}

impl SeqGen {
    /// Notes a sequence in use (from `work/`, `archive/`, the store).
    pub fn observe(&mut self, seq: &str) {
        if let Some(m) = micros_from_seq(seq) {
            self.last = self.last.max(m);
        }
    }

    pub fn next_seq(&mut self) -> String {
        self.last = now_micros().max(self.last + 1);
        seq_from_micros(self.last)
    }
}

/// Why an entry of a drop folder is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadName,
    Symlink,
    Directory,
    Fifo,
    Socket,
    Device,
    HardLinks(u64),
    TooLarge { size: u64, limit: u64 },
    Unreadable(String),
}

impl Refusal {
    /// A short label (metrics).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::BadName => "bad_name",
            Refusal::Symlink => "symlink",
            Refusal::Directory => "directory",
            Refusal::Fifo => "fifo",
            Refusal::Socket => "socket",
            Refusal::Device => "device",
            Refusal::HardLinks(_) => "hard_links",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Unreadable(_) => "unreadable",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadName => write!(f, "name not accepted (1 to {MAX_NAME} characters of A-Z a-z 0-9 . _ -)"),
            Refusal::Symlink => write!(f, "symbolic link (never followed)"),
            Refusal::Directory => write!(f, "directory"),
            Refusal::Fifo => write!(f, "FIFO (named pipe)"),
            Refusal::Socket => write!(f, "socket"),
            Refusal::Device => write!(f, "device file"),
            Refusal::HardLinks(n) => write!(f, "file with {n} hard links"),
            Refusal::TooLarge { size, limit } => write!(f, "file of {size} bytes, over the limit of {limit} bytes"),
            Refusal::Unreadable(e) => write!(f, "cannot be opened safely: {e}"),
        }
    }
}

/// The verdict on one metadata record (from `lstat`).
pub fn judge(meta: &fs::Metadata, max_bytes: u64) -> Option<Refusal> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Some(Refusal::Symlink);
    }
    if ft.is_dir() {
        return Some(Refusal::Directory);
    }
    if ft.is_fifo() {
        return Some(Refusal::Fifo);
    }
    if ft.is_socket() {
        return Some(Refusal::Socket);
    }
    if ft.is_block_device() || ft.is_char_device() || !ft.is_file() {
        return Some(Refusal::Device);
    }
    if meta.nlink() > 1 {
        return Some(Refusal::HardLinks(meta.nlink()));
    }
    if meta.len() > max_bytes {
        return Some(Refusal::TooLarge {
            size: meta.len(),
            limit: max_bytes,
        });
    }
    None
}

/// One entry found in a drop folder.
#[derive(Debug)]
pub enum Found {
    /// A regular file with an accepted name, ready to claim.
    Ready { name: String, mtime: SystemTime, size: u64 },
    /// An entry to refuse (moved to `rejected/` with a `.why`).
    Refused { raw: Vec<u8>, refusal: Refusal, ino: u64 },
}

/// Lists a drop folder: dot-names are skipped, nothing is opened or followed.
pub fn scan(dir: &Path, max_bytes: u64) -> io::Result<Vec<Found>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = match entry {
            Ok(e) => e,
            Err(_) => continue,
        };
        let os = entry.file_name();
        let raw = os.as_bytes();
        if raw.first() == Some(&b'.') {
            continue;
        }
        let meta = match fs::symlink_metadata(entry.path()) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.push(Found::Refused {
                    raw: raw.to_vec(),
                    refusal: Refusal::Unreadable(e.to_string()),
                    ino: 0,
                });
                continue;
            }
        };
        let refusal = if valid_name(raw) {
            judge(&meta, max_bytes)
        } else {
            Some(Refusal::BadName)
        };
        match (refusal, std::str::from_utf8(raw)) {
            (None, Ok(name)) => out.push(Found::Ready {
                name: name.to_string(),
                mtime: meta.modified().unwrap_or(UNIX_EPOCH),
                size: meta.len(),
            }),
            (Some(r), _) => out.push(Found::Refused {
                raw: raw.to_vec(),
                refusal: r,
                ino: meta.ino(),
            }),
            (None, Err(_)) => out.push(Found::Refused {
                raw: raw.to_vec(),
                refusal: Refusal::BadName,
                ino: meta.ino(),
            }),
        }
    }
    Ok(out)
}

/// Opens a claimed file for reading: never through a symbolic link, never
/// blocking on a FIFO, and only when it is a regular file with one link and
/// within the size limit (checked on the opened file itself).
pub fn open_claimed(path: &Path, max_bytes: u64) -> io::Result<Result<File, Refusal>> {
    let meta = fs::symlink_metadata(path)?;
    if let Some(r) = judge(&meta, max_bytes) {
        return Ok(Err(r));
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Err(Refusal::Symlink)),
        Err(e) => return Err(e),
    };
    let fmeta = file.metadata()?;
    if fmeta.ino() != meta.ino() || fmeta.dev() != meta.dev() {
        return Ok(Err(Refusal::Unreadable("replaced while being opened".into())));
    }
    if let Some(r) = judge(&fmeta, max_bytes) {
        return Ok(Err(r));
    }
    Ok(Ok(file))
}

/// Renames without ever replacing an existing entry (`EEXIST` instead).
/// The entry itself is moved, whatever it is: a link is not followed.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated C strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // File systems without RENAME_NOREPLACE: check, then rename.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        _ => Err(e),
    }
}

/// Flushes a folder's entries (renames, creations) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` atomically: a temporary dot-name, synced,
/// renamed into place, and the folder synced.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Removes the daemon's own temporary files left by a crash.
pub fn remove_temps(layout: &Layout) -> io::Result<usize> {
    let mut dirs = vec![layout.rejected(), layout.journal()];
    if let Ok(rd) = fs::read_dir(layout.outbound()) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(e.path());
            }
        }
    }
    let mut n = 0;
    for d in dirs {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd.flatten() {
            if e.file_name().as_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                fs::remove_file(e.path())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Entries of a folder, dot-names excluded (`None` if it does not exist).
fn visible(dir: &Path) -> Option<Vec<fs::DirEntry>> {
    let rd = fs::read_dir(dir).ok()?;
    Some(
        rd.flatten()
            .filter(|e| e.file_name().as_bytes().first() != Some(&b'.'))
            .collect(),
    )
}

/// Queue depths and ages of a spool, for `status` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct QueueStats {
    /// `(folder, entries)` for inbound/abi, inbound/ecert, work, archive, rejected.
    pub folders: Vec<(String, u64)>,
    /// Response files per sender folder of `outbound/`.
    pub outbound: Vec<(String, u64)>,
    /// The oldest file waiting in the drop folders or `work/`: folder/name (escaped) and its age.
    pub oldest: Option<(String, std::time::Duration)>,
}

impl QueueStats {
    pub fn depth(&self, folder: &str) -> u64 {
        self.folders
            .iter()
            .find(|(f, _)| f == folder)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
}

/// Counts the spool's folders (no file is opened).
pub fn queue_stats(layout: &Layout) -> QueueStats {
    let now = SystemTime::now();
    let mut stats = QueueStats::default();
    let mut oldest: Option<(String, SystemTime)> = None;
    for (label, dir, waiting) in [
        ("inbound/abi", layout.inbound(Channel::Abi), true),
        ("inbound/ecert", layout.inbound(Channel::Ecert), true),
        ("work", layout.work(), true),
        ("archive", layout.archive(), false),
        ("rejected", layout.rejected(), false),
    ] {
        let entries = visible(&dir).unwrap_or_default();
        let mut n = 0u64;
        for e in &entries {
            let name = e.file_name();
            if label == "rejected" {
                let b = name.as_bytes();
                if b.ends_with(b".why") || b.ends_with(b".resp") {
                    continue;
                }
            }
            n += 1;
            if waiting {
                if let Ok(m) = fs::symlink_metadata(e.path()) {
                    let t = m.modified().unwrap_or(now);
                    if oldest.as_ref().map(|(_, o)| t < *o).unwrap_or(true) {
                        oldest = Some((format!("{label}/{}", escape_os(&name)), t));
                    }
                }
            }
        }
        stats.folders.push((label.to_string(), n));
    }
    let mut senders: Vec<(String, u64)> = visible(&layout.outbound())
        .unwrap_or_default()
        .iter()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| {
            let n = visible(&e.path())
                .unwrap_or_default()
                .iter()
                .filter(|f| f.file_name().as_bytes().ends_with(b".resp"))
                .count() as u64;
            (escape_os(&e.file_name()), n)
        })
        .collect();
    senders.sort();
    stats.outbound = senders;
    stats.oldest = oldest.map(|(n, t)| (n, now.duration_since(t).unwrap_or_default()));
    stats
}

/// A file name shown safely (logs, notes, status).
pub fn escape_os(name: &OsStr) -> String {
    crate::diagnose::escape(name.as_bytes())
}

/// An exclusive lock on a spool root, held while the daemon runs.
pub struct SpoolLock {
    _file: File,
}

fn lock_path(root: &Path) -> PathBuf {
    root.join(".ecertd.lock")
}

/// Takes the spool's lock; `Ok(None)` when another process holds it.
pub fn lock(root: &Path) -> io::Result<Option<SpoolLock>> {
    use std::os::unix::io::AsRawFd;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(lock_path(root))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(SpoolLock { _file: file }));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Whether a daemon holds the spool's lock.
pub fn is_locked(root: &Path) -> bool {
    use std::os::unix::io::AsRawFd;
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(lock_path(root))
    else {
        return false;
    };
    // SAFETY: as in `lock`; the shared lock is released when `file` closes.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name(b"a.TXT_-9"));
        assert!(!valid_name(b""));
        assert!(!valid_name(b"a b"));
        assert!(!valid_name(&[b'a'; 129]));
        assert!(valid_name(&[b'a'; 128]));
        assert!(!valid_name("é".as_bytes()));
        assert_eq!(safe_name(b"a b\n\xff"), "a_b__");
        assert_eq!(safe_name(b""), "unnamed");
    }

    #[test]
    fn claims_round_trip() {
        let c = Claim::new("20260315120000000001", Channel::Ecert, "x-y.txt");
        assert_eq!(c.id, "20260315120000000001-ecert-x-y.txt");
        assert_eq!(Claim::parse(&c.id), Some(c.clone()));
        assert_eq!(c.response_name(), "20260315120000000001-x-y.txt.resp");
        assert!(Claim::parse("2026-abi-x").is_none());
        assert!(Claim::parse("20260315120000000001-ftp-x").is_none());
        assert!(Claim::parse("20260315120000000001-abi-").is_none());
    }

    #[test]
    fn sequences() {
        let m = 1_773_576_000_123_456u64; // 2026-03-15T12:00:00.123456Z
        let s = seq_from_micros(m);
        assert_eq!(s, "20260315120000123456");
        assert_eq!(micros_from_seq(&s), Some(m));
        let mut g = SeqGen::default();
        g.observe("99990101000000000000");
        let a = g.next_seq();
        let b = g.next_seq();
        assert!(a.as_str() > "99990101000000000000" && b > a, "{a} {b}");
    }
}
