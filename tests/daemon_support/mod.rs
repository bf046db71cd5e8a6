//! Helpers for the daemon tests: a spool with the example senders, a daemon
//! process with its (JSON) log, file drops, waiting, and a deterministic
//! workload generator.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const EXE: &str = env!("CARGO_BIN_EXE_ecertd");
pub const DATE: &str = "2026-03-15";

/// The test data folder (copies of the spec's worked examples).
pub fn data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// A spool in a temporary folder, initialised, with the example senders.
pub struct Spool {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Spool {
    pub fn new() -> Spool {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("spool");
        let s = Spool { dir, root };
        s.ok(&["init"]);
        s.ok(&[
            "sender",
            "add",
            "--id",
            "AU1",
            "--kind",
            "country",
            "--country",
            "AU",
            "--password",
            "PWAU01",
        ]);
        s.ok(&[
            "sender",
            "add",
            "--id",
            "NZ1",
            "--kind",
            "country",
            "--country",
            "NZ",
            "--password",
            "PWNZ01",
        ]);
        s.ok(&[
            "sender",
            "add",
            "--id",
            "ABC",
            "--kind",
            "broker",
            "--filer",
            "ABC",
            "--password",
            "PWABC1",
        ]);
        s.ok(&[
            "sender",
            "add",
            "--id",
            "DEF",
            "--kind",
            "broker",
            "--filer",
            "DEF",
            "--password",
            "PWDEF1",
        ]);
        s
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(EXE);
        c.arg("--root").arg(&self.root).arg("--business-date").arg(DATE);
        for (k, _) in std::env::vars_os() {
            if k.as_bytes().starts_with(b"ECERTD_") {
                c.env_remove(k);
            }
        }
        c
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run ecertd");
        assert!(
            out.status.success(),
            "ecertd {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn inbound(&self, channel: &str) -> PathBuf {
        self.root.join("inbound").join(channel)
    }

    /// Drops a file the way senders must: a dot-name, then a rename.
    pub fn drop_file(&self, channel: &str, name: &str, bytes: &[u8]) {
        let dir = self.inbound(channel);
        let tmp = dir.join(format!(".{name}.part"));
        fs::write(&tmp, bytes).expect("write drop file");
        fs::rename(&tmp, dir.join(name)).expect("rename drop file");
    }

    /// Starts `ecertd serve` with JSON logs and a short poll interval.
    pub fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut c = self.cmd();
        c.arg("serve")
            .args(args)
            .env("ECERTD_POLL_INTERVAL_MS", "50")
            .env("ECERTD_LOG_FORMAT", "json")
            .env("ECERTD_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn ecertd serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("ECERTD_TEST_ECHO").is_some() {
                    eprintln!("daemon: {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Daemon {
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    /// Visible (non-dot) entries of a spool folder.
    pub fn entries(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = match fs::read_dir(self.root.join(rel)) {
            Ok(rd) => rd
                .flatten()
                .map(|e| String::from_utf8_lossy(e.file_name().as_bytes()).into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// Every response file: (folder relative to the root, file name) → bytes.
    pub fn responses(&self) -> BTreeMap<(String, String), Vec<u8>> {
        let mut out = BTreeMap::new();
        for sender in self.entries("outbound") {
            let rel = format!("outbound/{sender}");
            for f in self.entries(&rel) {
                out.insert(
                    (rel.clone(), f.clone()),
                    fs::read(self.root.join(&rel).join(&f)).unwrap(),
                );
            }
        }
        for f in self.entries("rejected") {
            if f.ends_with(".resp") {
                out.insert(
                    ("rejected".into(), f.clone()),
                    fs::read(self.root.join("rejected").join(&f)).unwrap(),
                );
            }
        }
        out
    }

    /// Response files for input NAME (names `SEQ-NAME.resp`).
    pub fn responses_for(&self, name: &str) -> Vec<((String, String), Vec<u8>)> {
        // outbound/SENDER/SEQ-NAME.resp, rejected/NAME.resp or rejected/SEQ-NAME.resp.
        let suffix = format!("-{name}.resp");
        let plain = format!("{name}.resp");
        self.responses()
            .into_iter()
            .filter(|((dir, f), _)| {
                (f.ends_with(&suffix) && f.len() == suffix.len() + 20) || (dir == "rejected" && *f == plain)
            })
            .collect()
    }

    /// The one response of input NAME; panics unless there is exactly one.
    pub fn response(&self, name: &str) -> Vec<u8> {
        let mut v = self.responses_for(name);
        assert_eq!(
            v.len(),
            1,
            "responses for {name}: {:?}",
            v.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        v.pop().unwrap().1
    }

    /// Every journal line.
    pub fn journal(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for f in self.entries("journal") {
            let text = fs::read_to_string(self.root.join("journal").join(f)).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
        lines
    }

    /// Files left behind by the daemon's writers (`.ecertd-tmp-*`).
    pub fn temp_files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        let mut dirs = vec![self.root.join("rejected"), self.root.join("journal")];
        for s in self.entries("outbound") {
            dirs.push(self.root.join("outbound").join(s));
        }
        for d in dirs {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_name().as_bytes().starts_with(b".ecertd-tmp-") {
                    v.push(e.path());
                }
            }
        }
        v
    }

    /// Whether nothing waits in the drop folders or in work/.
    pub fn idle(&self) -> bool {
        self.entries("inbound/abi").is_empty()
            && self.entries("inbound/ecert").is_empty()
            && self.entries("work").is_empty()
    }

    pub fn store(&self) -> ecertd::store::Store {
        ecertd::store::Store::open(&self.root.join("ecertd.db")).expect("open store")
    }

    /// `(id, used, replayed)` of every certificate whose balance differs from its events.
    pub fn ledger_mismatches(&self) -> Vec<(i64, i64, i64)> {
        self.store().read(|tx| tx.ledger_mismatches()).expect("ledger")
    }

    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        self.store().read(|tx| tx.counts()).expect("counts")
    }
}

/// Waits for `cond`, panicking with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `ecertd serve`.
pub struct Daemon {
    child: Option<Child>,
    pub log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// The log so far, one string.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a JSON log line whose message is `message`; returns it parsed.
    pub fn wait_log(&mut self, message: &str, limit: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            for l in self.log.lock().unwrap().iter() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                    if v["fields"]["message"] == message {
                        return v;
                    }
                }
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("daemon exited ({st}) before logging {message:?}:\n{}", self.log_text());
            }
            if start.elapsed() > limit {
                panic!("no log {message:?} within {limit:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address a listener reports (`TCP endpoint listening` / `metrics endpoint listening`).
    pub fn addr(&mut self, message: &str) -> SocketAddr {
        let v = self.wait_log(message, Duration::from_secs(20));
        v["fields"]["addr"]
            .as_str()
            .expect("addr field")
            .parse()
            .expect("socket address")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGTERM once the daemon is up (its handlers are installed before it
    /// logs `ecertd serving`), then waits up to `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.wait_log("ecertd serving", Duration::from_secs(60));
        self.signal(libc::SIGTERM);
        self.wait_exit(limit)
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                self.child = None;
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return st;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not exit within {limit:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: a crash at an arbitrary instant.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads exactly one TCP response: records up to and including the Z record
/// of the last batch answered, `batches` batches in all.
pub fn read_batches(stream: &mut impl Read, batches: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut seen = 0;
    let mut byte = [0u8; 1];
    let mut line = Vec::new();
    while seen < batches {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        out.push(byte[0]);
        line.push(byte[0]);
        if byte[0] == b'\n' {
            if line.first() == Some(&b'Z') {
                seen += 1;
            }
            line.clear();
        }
    }
    Ok(out)
}

/// LF line ends to CRLF (a TCP answer of a response file's bytes).
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + bytes.len() / 80);
    for &b in bytes {
        if b == b'\n' {
            v.push(b'\r');
        }
        v.push(b);
    }
    v
}

pub fn write_all(stream: &mut impl Write, bytes: &[u8]) {
    stream.write_all(bytes).expect("write");
}

// ---------------------------------------------------------------------------
// A deterministic workload.

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn rec(s: &str) -> String {
    assert!(s.len() <= 80, "record too long: {s:?}");
    format!("{s:<80}\n")
}

/// One batch of records between its A and Z.
pub fn batch(sender: &str, password: &str, app: &str, reference: &str, filer: &str, details: &[String]) -> String {
    let mut s = String::new();
    s += &rec(&format!(
        "A1001{sender}{password}031526     {app}          {:2}{:20}{reference:<21}",
        "", ""
    ));
    s += &rec(&format!("B  2704{filer}{app}"));
    for d in details {
        s += &rec(d);
    }
    s += &rec(&format!("Y  2704{filer}{app}{:05}", details.len()));
    s += &rec(&format!("Z1001{sender}      031526"));
    s
}

pub const IOR: &str = "12-3456789AB";
pub const OTHER_IOR: &str = "98-7654321CD";

/// A certificate add: G1 + G2.
pub fn certificate(country: &str, number: &str, hundredths: u64) -> Vec<String> {
    vec![
        format!("G1A{country}{number:<10}Q0201      {hundredths:012}KG 20260101202612312026{IOR}"),
        format!("G2EXPORTER {number}"),
    ]
}

/// Entry number digits (7 + check digit) for filer ABC.
pub fn entry_digits(n: u32) -> String {
    let seven = format!("{:07}", n % 10_000_000);
    let arr: [u8; 7] = seven.as_bytes().try_into().unwrap();
    let check = ecertd::types::entry_check_digit(b"ABC", &arr).unwrap();
    format!("{seven}{check}")
}

/// An entry summary: action A/R with lines `(country, certificate, hundredths)`, or D.
pub fn entry(action: char, n: u32, ior: &str, lines: &[(&str, String, u64)]) -> Vec<String> {
    let mut v = vec![format!("10{action}ABC  {} 2704REF1        02", entry_digits(n))];
    if action == 'D' {
        v[0] = format!("10DABC  {} 2704REF1", entry_digits(n));
        return v;
    }
    v.push(format!("11{ior}"));
    for (i, (country, cert, q)) in lines.iter().enumerate() {
        v.push(format!("40  {:03} {country}", i + 1));
        v.push(format!("500201300080{:23}{q:012}KG", ""));
        v.push(format!("52EX{cert}"));
    }
    v
}

/// The files of a crash/load workload: `(channel, name, bytes)`, in the order
/// they are to be processed (names sort in that order).
pub fn workload(seed: u64, files: usize) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut certs: Vec<(&'static str, String)> = Vec::new();
    // Certificates first: two files per country, two batches each.
    for (country, sender, pw) in [("AU", "AU1", "PWAU01"), ("NZ", "NZ1", "PWNZ01")] {
        for f in 0..2 {
            let mut text = String::new();
            for b in 0..2 {
                let mut details = Vec::new();
                for c in 0..4 {
                    let number = format!("9{country}{:05}W", f * 100 + b * 10 + c);
                    details.extend(certificate(country, &number, 50_000 + rng.below(4) * 50_000));
                    certs.push((country, number));
                }
                text += &batch(sender, pw, "GT", &format!("W-{country}-{f}-{b}"), sender, &details);
            }
            out.push((
                "ecert",
                format!("f{:04}-gt-{country}{f}.txt", out.len()),
                text.into_bytes(),
            ));
        }
    }
    let mut next_entry = 3_000_000u32;
    let mut live: Vec<u32> = Vec::new();
    let mut sent: Vec<String> = Vec::new();
    while out.len() < files {
        let i = out.len();
        let kind = rng.below(100);
        let name;
        let mut channel = "abi";
        let mut text = String::new();
        if kind < 6 {
            // An importer usage query: its answer shows every claim so far.
            name = format!("f{i:04}-ec.txt");
            text += &batch("ABC", "PWABC1", "EC", "", "ABC", &[format!("C1I{IOR}")]);
        } else if kind < 9 {
            // Does not authenticate: the response goes to rejected/.
            name = format!("f{i:04}-badpw.txt");
            text += &batch(
                "ABC",
                "WRONG1",
                "AE",
                &format!("W-BAD-{i}"),
                "ABC",
                &entry('A', 9_000_000 + i as u32, IOR, &[]),
            );
        } else if kind < 11 {
            // Records outside any batch, then a good batch.
            name = format!("f{i:04}-stray.txt");
            text += "stray record\n";
            text += &batch("ABC", "PWABC1", "EC", "", "ABC", &[format!("C1I{IOR}")]);
        } else if kind < 13 {
            // An entry summary on the wrong channel (X07).
            name = format!("f{i:04}-wrongchannel.txt");
            channel = "ecert";
            next_entry += 1;
            text += &batch("ABC", "PWABC1", "AE", "", "ABC", &entry('A', next_entry, IOR, &[]));
        } else if kind < 17 && !sent.is_empty() {
            // A batch sent again: same bytes (duplicate) or same reference with other bytes (X13).
            name = format!("f{i:04}-again.txt");
            let k = rng.below(sent.len() as u64) as usize;
            let old = sent[k].clone();
            if rng.chance(50) {
                text += &old;
            } else {
                text += &old.replacen("REF1     ", "REF2     ", 1);
            }
        } else {
            name = format!("f{i:04}-ae.txt");
            let batches = 1 + rng.below(3);
            for b in 0..batches {
                let mut details = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    let lines: Vec<(&str, String, u64)> = (0..1 + rng.below(2))
                        .map(|_| {
                            let (c, n) = &certs[rng.below(certs.len() as u64) as usize];
                            (*c, n.clone(), 1_000 + rng.below(60) * 1_000)
                        })
                        .collect();
                    let r = rng.below(100);
                    if r < 12 && !live.is_empty() {
                        let n = live[rng.below(live.len() as u64) as usize];
                        details.extend(entry('R', n, IOR, &lines));
                    } else if r < 18 && !live.is_empty() {
                        let k = rng.below(live.len() as u64) as usize;
                        let n = live.swap_remove(k);
                        details.extend(entry('D', n, IOR, &[]));
                    } else {
                        next_entry += 1;
                        let ior = if r < 24 { OTHER_IOR } else { IOR };
                        details.extend(entry('A', next_entry, ior, &lines));
                        live.push(next_entry);
                    }
                }
                let reference = if rng.chance(15) {
                    String::new()
                } else {
                    format!("W-{i}-{b}")
                };
                let one = batch("ABC", "PWABC1", "AE", &reference, "ABC", &details);
                if !reference.is_empty() {
                    sent.push(one.clone());
                }
                text += &one;
            }
        }
        out.push((channel, name, text.into_bytes()));
    }
    out
}

/// Writes a workload into the drop folders, in order (mtimes follow the order).
pub fn drop_workload(spool: &Spool, files: &[(&'static str, String, Vec<u8>)]) {
    for (ch, name, bytes) in files {
        spool.drop_file(ch, name, bytes);
    }
}

/// Whether the daemon closes the connection within `limit` (reads EOF or a reset).
pub fn closed_within(c: &mut std::net::TcpStream, limit: Duration) -> bool {
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A large AE file (`entries` entry summaries, `per_batch` to a batch, up
/// to four lines each) and `spools` spools holding the certificates it claims,
/// filed through `ecertd process`; with the answer `ecertd process` gives
/// the file on the first spool (which it changes).
pub fn large_ae_workload(spools: usize, entries: u64, per_batch: u64) -> (Vec<Spool>, Vec<u8>, String) {
    use ecertd::gen::{self, EntryMix, Population, Rng, COUNTRIES};
    let pop = Population {
        certificates: 40,
        per_ior: 4,
        certified: 5_000,
    };
    let mix = EntryMix {
        entries,
        entries_per_batch: per_batch,
        max_lines: 4,
        refused_share: 0.2,
        claim: 1_000,
        first_number: 1,
    };
    let mut ae = Vec::new();
    gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(9), "DL").unwrap();
    let spools: Vec<Spool> = (0..spools).map(|_| Spool::new()).collect();
    for s in &spools {
        for &(country, id) in &COUNTRIES[2..] {
            let pw = gen::password(id);
            s.ok(&[
                "sender",
                "add",
                "--id",
                id,
                "--kind",
                "country",
                "--country",
                country,
                "--password",
                &pw,
            ]);
        }
        for c in 0..COUNTRIES.len() {
            let mut gt = Vec::new();
            gen::write_gt(&mut gt, &pop, c, 10, "DL").unwrap();
            let file = s.dir.path().join(format!("gt-{c}.txt"));
            fs::write(&file, &gt).unwrap();
            s.ok(&["process", file.to_str().unwrap(), "--channel", "ecert"]);
        }
    }
    let file = spools[0].dir.path().join("ae.txt");
    fs::write(&file, &ae).unwrap();
    let want = spools[0].ok(&["process", file.to_str().unwrap(), "--channel", "abi"]);
    (spools, ae, want)
}
