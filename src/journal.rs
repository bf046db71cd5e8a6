//! The operator journal (spec README, "Journal"): `journal/YYYY-MM-DD.log`,
//! one file per UTC day (of the time of writing), append-only, one line per
//! batch written after the batch's response is published:
//!
//! ```text
//! 2026-03-15T12:00:00.123Z input=FILE claim=SEQ-abi-FILE batch=1/2 channel=abi sender=ABC app=AE outcome=processed accepted=2 rejected=0 response=outbound/ABC/SEQ-FILE.resp
//! ```
//!
//! Fields are `key=value`, separated by one space, always in this order.
//! `batch` is the batch's 1-based position and the input's batch count;
//! `outcome` is `processed`, `rejected` (refused as a whole) or `duplicate`;
//! `sender` is the authenticated sender, `-` when the input did not
//! authenticate; `app` is `-` when unreadable. For TCP batches `input` is
//! `tcp:PEER`, `claim` is `tcp-N` (the connection), `batch` counts batches on
//! the connection (`N/-`) and `response` is `tcp`. Values never hold raw input
//! bytes: anything outside printable ASCII, spaces and backslashes are
//! escaped (`\xHH`, `\\`).
//!
//! Lines are written whole with `O_APPEND` and synced, so `tail -f` never sees
//! a partial line; a partial last line left by a power cut is cut off at
//! start-up. After a crash, lines already written for a resumed input are
//! found again and not repeated.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::Date;

/// `YYYY-MM-DDThh:mm:ss.mmmZ`.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let day = Date::from_days_since_epoch((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{day}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

fn day_of(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    Date::from_days_since_epoch((secs / 86_400) as i64).to_string()
}

/// A value made safe for a journal line.
pub fn field(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    crate::diagnose::escape(bytes).replace(' ', "\\x20")
}

/// One journal line.
#[derive(Clone, Debug)]
pub struct Line {
    pub input: String,
    pub claim: String,
    /// 0-based index of the batch.
    pub batch: u64,
    /// Batches of the input, when known.
    pub batches: Option<u64>,
    pub channel: String,
    pub sender: String,
    pub app: String,
    pub outcome: String,
    pub accepted: u32,
    pub rejected: u32,
    pub response: String,
}

impl Line {
    pub fn render(&self, time: SystemTime) -> String {
        format!(
            "{} input={} claim={} batch={}/{} channel={} sender={} app={} outcome={} accepted={} rejected={} response={}\n",
            format_time(time),
            field(self.input.as_bytes()),
            field(self.claim.as_bytes()),
            self.batch + 1,
            self.batches.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            field(self.channel.as_bytes()),
            field(self.sender.as_bytes()),
            field(self.app.as_bytes()),
            field(self.outcome.as_bytes()),
            self.accepted,
            self.rejected,
            field(self.response.as_bytes()),
        )
    }
}

/// The journal folder and the file being appended to.
pub struct Journal {
    dir: PathBuf,
    current: Mutex<Option<(String, File)>>,
}

/// Bytes written per `write` call at most (whole lines).
const CHUNK: usize = 64 * 1024;

impl Journal {
    pub fn new(dir: impl Into<PathBuf>) -> Journal {
        Journal {
            dir: dir.into(),
            current: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends lines (whole lines per write), then syncs.
    pub fn append(&self, lines: &[Line]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let day = day_of(now);
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().map(|(d, _)| d != &day).unwrap_or(true) {
            let path = self.dir.join(format!("{day}.log"));
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)?;
            *guard = Some((day, f));
        }
        let Some((_, file)) = guard.as_mut() else {
            return Err(io::Error::other("journal file not open"));
        };
        let mut buf = String::new();
        for l in lines {
            let s = l.render(now);
            if !buf.is_empty() && buf.len() + s.len() > CHUNK {
                file.write_all(buf.as_bytes())?;
                buf.clear();
            }
            buf.push_str(&s);
        }
        file.write_all(buf.as_bytes())?;
        file.sync_data()
    }

    /// Journal files, oldest first.
    pub fn files(&self) -> io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    n.len() == 14 && n.ends_with(".log") && !n.starts_with('.')
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        v.sort();
        Ok(v)
    }

    /// Cuts off a partial last line of the newest file (left by a power cut).
    pub fn repair(&self) -> io::Result<()> {
        let Some(last) = self.files()?.pop() else { return Ok(()) };
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&last)?;
        let len = f.metadata()?.len();
        if len == 0 {
            return Ok(());
        }
        let mut keep = len;
        let mut buf = vec![0u8; 4096];
        loop {
            let start = keep.saturating_sub(buf.len() as u64);
            let n = (keep - start) as usize;
            f.seek(SeekFrom::Start(start))?;
            f.read_exact(&mut buf[..n])?;
            if let Some(p) = buf[..n].iter().rposition(|&b| b == b'\n') {
                keep = start + p as u64 + 1;
                break;
            }
            if start == 0 {
                keep = 0;
                break;
            }
            keep = start;
        }
        if keep != len {
            f.set_len(keep)?;
            f.sync_all()?;
        }
        Ok(())
    }

    /// The batches already journaled for the given claims, from the two
    /// newest files (a resumed input was being journaled just before the stop).
    pub fn journaled(&self, claims: &HashSet<String>) -> io::Result<HashMap<String, HashSet<u64>>> {
        let mut out: HashMap<String, HashSet<u64>> = HashMap::new();
        if claims.is_empty() {
            return Ok(out);
        }
        let files = self.files()?;
        for path in files.iter().rev().take(2) {
            let f = File::open(path)?;
            for line in BufReader::new(f).split(b'\n') {
                let line = line?;
                let text = String::from_utf8_lossy(&line);
                let mut claim = None;
                let mut batch = None;
                for tok in text.split(' ') {
                    if let Some(c) = tok.strip_prefix("claim=") {
                        claim = Some(c);
                    } else if let Some(b) = tok.strip_prefix("batch=") {
                        batch = b.split('/').next().and_then(|n| n.parse::<u64>().ok());
                    }
                }
                if let (Some(c), Some(b)) = (claim, batch) {
                    if claims.contains(c) && b > 0 {
                        out.entry(c.to_string()).or_default().insert(b - 1);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The last line written, if any.
    pub fn last_line(&self) -> io::Result<Option<String>> {
        for path in self.files()?.iter().rev() {
            let mut f = File::open(path)?;
            let len = f.metadata()?.len();
            let start = len.saturating_sub(8192);
            f.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            let text = String::from_utf8_lossy(&buf);
            if let Some(l) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                return Ok(Some(l.to_string()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(claim: &str, batch: u64) -> Line {
        Line {
            input: "F.txt".into(),
            claim: claim.into(),
            batch,
            batches: Some(2),
            channel: "abi".into(),
            sender: "A\u{1}C".into(),
            app: "AE".into(),
            outcome: "processed".into(),
            accepted: 1,
            rejected: 0,
            response: "outbound/ABC/x.resp".into(),
        }
    }

    #[test]
    fn time_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_773_576_000_123);
        assert_eq!(format_time(t), "2026-03-15T12:00:00.123Z");
    }

    #[test]
    fn append_find_repair() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        j.append(&[line("c1", 0), line("c1", 1), line("c2", 0)]).unwrap();
        let last = j.last_line().unwrap().unwrap();
        assert!(last.contains(" claim=c2 batch=1/2 "), "{last}");
        assert!(last.contains(" sender=A\\x01C "), "{last}");
        let want: HashSet<String> = ["c1".to_string()].into();
        let found = j.journaled(&want).unwrap();
        assert_eq!(found["c1"], [0u64, 1].into());
        assert!(!found.contains_key("c2"));
        let f = j.files().unwrap().pop().unwrap();
        let mut h = OpenOptions::new().append(true).open(&f).unwrap();
        h.write_all(b"2026-03-15T00:00:00.000Z input=half").unwrap();
        j.repair().unwrap();
        let text = fs::read_to_string(&f).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 3, "{text}");
    }
}
