//! Helpers of the hardening tests (faults, floods, contention, access,
//! terminal safety), on top of `daemon_support`: sizes, brokers with their
//! own filer codes, the daemon's memory, its log, the descriptor limit.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::daemon_support::*;

/// `ECERTD_LONG_TESTS=1`: the full sizes.
pub fn long() -> bool {
    std::env::var("ECERTD_LONG_TESTS").map(|v| v == "1").unwrap_or(false)
}

/// `default` normally, `full` under `ECERTD_LONG_TESTS=1`.
pub fn size(default: usize, full: usize) -> usize {
    if long() {
        full
    } else {
        default
    }
}

/// `(VmHWM, VmRSS)` of a process in KiB, from `/proc/PID/status`.
pub fn memory_kib(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get("VmHWM:"), get("VmRSS:"))
}

/// Open descriptors of a process.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Raises this process's soft descriptor limit to at least `want` (up to
/// the hard limit); children (the daemon) inherit it. Returns the limit.
pub fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
    }
    r.rlim_cur
}

/// The daemon's JSON log lines whose message is `message`, parsed.
pub fn log_lines(d: &Daemon, message: &str) -> Vec<serde_json::Value> {
    d.log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// Waits until at least `n` log lines with `message` satisfy `pred`.
pub fn wait_logs(
    d: &Daemon,
    message: &str,
    n: usize,
    limit: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let v: Vec<_> = log_lines(d, message).into_iter().filter(|v| pred(v)).collect();
        if v.len() >= n {
            return v;
        }
        if start.elapsed() > limit {
            panic!(
                "fewer than {n} log lines {message:?} within {limit:?} ({} found):\n{}",
                v.len(),
                d.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registers a broker sender `id` filing for itself.
pub fn add_broker(s: &Spool, id: &str, password: &str) {
    s.ok(&[
        "sender",
        "add",
        "--id",
        id,
        "--kind",
        "broker",
        "--filer",
        id,
        "--password",
        password,
    ]);
}

/// Entry number digits (7 + check digit) for `filer`.
pub fn entry_digits_for(filer: &str, n: u32) -> String {
    let seven = format!("{:07}", n % 10_000_000);
    let f: [u8; 3] = filer.as_bytes().try_into().expect("3-character filer");
    let arr: [u8; 7] = seven.as_bytes().try_into().unwrap();
    let check = ecertd::types::entry_check_digit(&f, &arr).expect("check digit");
    format!("{seven}{check}")
}

/// An entry summary add of `filer` with lines `(country, certificate, hundredths)`.
pub fn entry_add(filer: &str, n: u32, ior: &str, lines: &[(&str, &str, u64)]) -> Vec<String> {
    let mut v = vec![
        format!("10A{filer}  {} 2704REF1        02", entry_digits_for(filer, n)),
        format!("11{ior}"),
    ];
    for (i, (country, cert, q)) in lines.iter().enumerate() {
        v.push(format!("40  {:03} {country}", i + 1));
        v.push(format!("500201300080{:23}{q:012}KG", ""));
        v.push(format!("52EX{cert}"));
    }
    v
}

/// The records of a byte string, without line ends.
pub fn records(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether bytes are safe on a terminal: printable ASCII, LF (and TAB) only.
pub fn terminal_safe(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The first terminal-unsafe byte and some context, for messages.
pub fn first_unsafe(bytes: &[u8]) -> String {
    match bytes
        .iter()
        .position(|&b| !(b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        None => "none".into(),
        Some(p) => {
            let from = p.saturating_sub(80);
            let to = (p + 40).min(bytes.len());
            format!(
                "byte 0x{:02X} at {p}: {:?}",
                bytes[p],
                String::from_utf8_lossy(&bytes[from..to])
            )
        }
    }
}

/// Percentile of durations (sorted in place), `p` in 0..=100.
pub fn percentile(v: &mut [Duration], p: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) * p) / 100]
}
