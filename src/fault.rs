//! Fault injection for the reliability tests: inert unless the daemon is
//! started with `ECERTD_FAULT_FILE=<path>`.
//!
//! The file is read again before every store job (on the store thread) and
//! before every response is published (on the spool thread). Each line
//! names one active fault; `#` starts a comment; a missing or empty file
//! means no fault. Faults:
//!
//! - `store-full`: the store is capped at its current size
//!   (`PRAGMA max_page_count`), so a write that needs a new page fails with
//!   a genuine `SQLITE_FULL`, as on a full disk;
//! - `store-readonly`: `PRAGMA query_only`, so every write fails with a
//!   genuine `SQLITE_READONLY`;
//! - `outbound-unwritable`: publishing a response under `outbound/` fails
//!   with `EACCES`, as on a folder the daemon may not write.
//!
//! A lock held by another process needs no seam: any other connection
//! holding `BEGIN EXCLUSIVE` on the store gives the daemon a genuine
//! `SQLITE_BUSY` once `store_busy_timeout_ms` runs out.
//!
//! Without the variable nothing is read and nothing changes. With it, the
//! daemon logs a warning at start and whenever the set of faults changes.

use std::io;
use std::path::PathBuf;

/// The environment variable that enables the seam.
pub const ENV: &str = "ECERTD_FAULT_FILE";

/// The faults named in the fault file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Active {
    pub store_full: bool,
    pub store_readonly: bool,
    pub outbound_unwritable: bool,
}

impl Active {
    /// The active faults as the file names them (for logs).
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.store_full {
            v.push("store-full");
        }
        if self.store_readonly {
            v.push("store-readonly");
        }
        if self.outbound_unwritable {
            v.push("outbound-unwritable");
        }
        v
    }
}

/// The seam: `None` (inert) unless [`ENV`] is set.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    file: Option<PathBuf>,
}

impl Faults {
    /// Reads [`ENV`] once.
    pub fn from_env() -> Faults {
        Faults {
            file: std::env::var_os(ENV).filter(|v| !v.is_empty()).map(PathBuf::from),
        }
    }

    /// The fault file, when the seam is enabled.
    pub fn file(&self) -> Option<&PathBuf> {
        self.file.as_ref()
    }

    /// The faults active now (none when the seam is disabled or the file is absent).
    pub fn active(&self) -> Active {
        let Some(path) = &self.file else {
            return Active::default();
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Active::default();
        };
        let mut a = Active::default();
        for line in text.lines() {
            match line.split('#').next().unwrap_or("").trim() {
                "store-full" => a.store_full = true,
                "store-readonly" => a.store_readonly = true,
                "outbound-unwritable" => a.outbound_unwritable = true,
                _ => {}
            }
        }
        a
    }

    /// The error an injected `outbound-unwritable` gives.
    pub fn outbound_error() -> io::Error {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        io::Error::new(e.kind(), format!("{e} (injected fault outbound-unwritable)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_each_time() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("faults");
        let f = Faults { file: Some(p.clone()) };
        assert_eq!(f.active(), Active::default());
        std::fs::write(&p, "# comment\nstore-full\n  outbound-unwritable # trailing\nbogus\n").unwrap();
        let a = f.active();
        assert!(a.store_full && a.outbound_unwritable && !a.store_readonly);
        assert_eq!(a.names(), ["store-full", "outbound-unwritable"]);
        std::fs::write(&p, "store-readonly\n").unwrap();
        assert_eq!(f.active().names(), ["store-readonly"]);
        assert_eq!(Faults::default().active(), Active::default());
    }
}
