//! Terminal safety through the real binary: control bytes and escape
//! sequences (ESC [31m, NUL, BEL 0x07, the 8-bit CSI 0x9B, DEL) in file
//! names dropped into inbound/, in file contents and in TCP batches never
//! reach the journal, the daemon's log (text format, what an operator's
//! terminal shows), the `.why` notes, the responses, or the output of
//! `explain`, `check` and `status` unescaped.

mod daemon_support;
mod hardening_support;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::*;
use hardening_support::*;

/// Hostile file names (refused unread; NUL cannot be in a name).
const NAMES: &[&[u8]] = &[
    b"red\x1b[31mALERT\x1b[0m.txt",
    b"bell\x07\x07.txt",
    b"csi\x9b31m.txt",
    b"del\x7f.txt",
    b"title\x1b]0;owned\x07.txt",
    b"nl\n2026-03-15T00:00:00.000Z input=forged.txt claim=x",
    b"cr\rback.txt",
];

/// A record padded to 80 bytes (bytes, so that anything can be in it).
fn rec(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(80, b' ');
    v.push(b'\n');
    v
}

/// Hostile contents: `(name, bytes)`.
fn contents() -> Vec<(String, Vec<u8>)> {
    let good = batch("ABC", "PWABC1", "EC", "", "ABC", &[format!("C1I{IOR}")]).into_bytes();
    let mut out = Vec::new();
    // Escape sequences in every kind of record of an otherwise good batch.
    let mut v = Vec::new();
    v.extend(rec(
        b"A1001ABCPWABC1031526     EC                                \x1b[31mREF\x1b[0m\x07",
    ));
    v.extend(rec(b"B  2704ABCEC\x1b[2J"));
    v.extend(rec(b"C1I12-3456789AB\x00\x07\x9b31m\x7f"));
    v.extend(rec(b"Y  2704ABCEC00001"));
    v.extend(rec(b"Z1001ABC      031526"));
    out.push(("escapes.txt".to_string(), v));
    // A sender field holding an escape sequence (does not authenticate).
    let mut v = Vec::new();
    v.extend(rec(b"A1001\x1b[3PWABC1031526     EC"));
    v.extend(rec(b"B  2704ABCEC"));
    v.extend(rec(b"C1I12-3456789AB"));
    v.extend(rec(b"Y  2704ABCEC00001"));
    v.extend(rec(b"Z1001\x1b[3      031526"));
    out.push(("sender-esc.txt".to_string(), v));
    // Stray records of control bytes before a good batch.
    let mut v = b"\x1b]0;owned\x07\n\x9b2J\x00\x00\n\x7f\x7f\x7f\n".to_vec();
    v.extend(&good);
    out.push(("stray.txt".to_string(), v));
    // Every byte value.
    out.push(("binary.txt".to_string(), (0u8..=255).cycle().take(2048).collect()));
    // Long lines of escapes (over 80 bytes, over 1024 bytes).
    let mut v = b"\x1b[31m".repeat(40);
    v.push(b'\n');
    v.extend(b"\x9b".repeat(3000));
    v.push(b'\n');
    v.extend(&good);
    out.push(("long.txt".to_string(), v));
    out
}

/// The daemon, killed if the test fails before stopping it.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn assert_safe(what: &str, bytes: &[u8]) {
    assert!(terminal_safe(bytes), "{what}: unescaped {}", first_unsafe(bytes));
}

#[test]
fn control_bytes_never_reach_a_terminal_unescaped() {
    let s = Spool::new();
    s.ok(&["grant", "--filer", "ABC", "--ior", IOR]);
    // `status` on hostile names waiting in the drop folder (no daemon yet).
    let abi = s.inbound("abi");
    for n in NAMES {
        fs::write(abi.join(OsStr::from_bytes(n)), b"x").unwrap();
    }
    let out = s.cmd().arg("status").output().unwrap();
    assert!(out.status.success());
    assert_safe("status", &out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inbound/abi/"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = s.cmd().args(["status", "--json"]).output().unwrap();
    assert_safe("status --json", &out.stdout);

    // The daemon, logging as text to a file (what a terminal would show).
    let log_path = s.dir.path().join("daemon.log");
    let mut child = {
        let mut c: Command = s.cmd();
        c.args(["serve", "--listen", "127.0.0.1:0"])
            .env("ECERTD_POLL_INTERVAL_MS", "50")
            .env("ECERTD_LOG_FORMAT", "text")
            .env("ECERTD_LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log_path).unwrap());
        Child(c.spawn().unwrap())
    };
    let log = || fs::read(&log_path).unwrap_or_default();
    let mut addr = None;
    wait_until(Duration::from_secs(30), "TCP endpoint", || {
        let text = String::from_utf8_lossy(&log()).into_owned();
        addr = text
            .lines()
            .find(|l| l.contains("TCP endpoint listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split(' ').next())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        addr.is_some()
    });
    let addr = addr.unwrap();
    // Hostile names dropped while it runs, in both channels.
    let ecert = s.inbound("ecert");
    for n in NAMES {
        let mut name = n.to_vec();
        name.extend(b"-2");
        fs::write(ecert.join(OsStr::from_bytes(&name)), b"y").unwrap();
    }
    // Hostile contents.
    let files = contents();
    for (name, bytes) in &files {
        s.drop_file("abi", name, bytes);
    }
    // Hostile TCP batches: escapes (answered), then a NUL (closes the connection).
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let no_nul: Vec<u8> = files[0].1.iter().map(|&b| if b == 0 { 1 } else { b }).collect();
    c.write_all(&no_nul).unwrap();
    let answer = read_batches(&mut c, 1).unwrap();
    // CRLF line ends are the protocol's; anything else must be safe.
    let lf = String::from_utf8_lossy(&answer).replace("\r\n", "\n");
    assert!(answer.ends_with(b"\r\n"));
    assert_safe("TCP answer", lf.as_bytes());
    c.write_all(b"A1001\x1b[31m\x00\n").unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c, &mut rest);
    assert_safe("TCP after NUL", &rest);

    wait_until(Duration::from_secs(60), "everything handled", || {
        s.idle() && files.iter().all(|(n, _)| !s.responses_for(n).is_empty())
    });
    std::thread::sleep(Duration::from_millis(300));
    // SIGTERM; the log ends with the stop.
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    assert!(child.0.wait().unwrap().success());

    // The hostile names: moved to rejected/ under safe names, with notes that escape them.
    let rejected = s.entries("rejected");
    let notes: Vec<String> = rejected
        .iter()
        .filter(|n| n.ends_with(".why"))
        .map(|n| fs::read_to_string(s.root.join("rejected").join(n)).unwrap())
        .collect();
    for n in s.entries("rejected") {
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'),
            "unsafe name in rejected/: {n:?}"
        );
    }
    let refused: Vec<&String> = notes.iter().filter(|n| n.contains("name not accepted")).collect();
    assert_eq!(refused.len(), 2 * NAMES.len(), "{notes:#?}");
    for n in &notes {
        assert_safe("a .why note", n.as_bytes());
    }
    let all_notes = notes.concat();
    for want in [
        "red\\x1B[31mALERT\\x1B[0m.txt",
        "bell\\x07\\x07.txt",
        "csi\\x9B31m.txt",
        "del\\x7F.txt",
        "nl\\x0A2026",
    ] {
        assert!(all_notes.contains(want), "no note shows {want}:\n{all_notes}");
    }
    // The log (text): every line safe, the refusals named in escaped form.
    let log = log();
    assert_safe("daemon log", &log);
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("red\\x1B[31mALERT"), "{text}");
    assert!(text.contains("refused a drop-folder entry"), "{text}");
    assert!(
        !text.contains("input=forged.txt claim=x\n"),
        "a forged line in the log:\n{text}"
    );
    // The journal: safe, one line per batch, no forged line.
    for f in s.entries("journal") {
        let j = fs::read(s.root.join("journal").join(&f)).unwrap();
        assert_safe("journal", &j);
        assert!(!String::from_utf8_lossy(&j).contains("input=forged.txt"));
    }
    assert!(s.journal().iter().any(|l| l.contains(" input=escapes.txt ")));
    // The responses: safe (X0 shows unprintable identifiers as `?`).
    for ((dir, f), bytes) in s.responses() {
        assert_safe(&format!("response {dir}/{f}"), &bytes);
    }
    // explain and check on every hostile input and on its response.
    for (name, bytes) in &files {
        let p = s.dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        let resp = s.dir.path().join(format!("{name}.resp"));
        fs::write(&resp, s.response(name)).unwrap();
        for (cmd, file) in [("explain", &p), ("check", &p), ("explain", &resp)] {
            let out = s.cmd().arg(cmd).arg(file).output().unwrap();
            assert_safe(&format!("{cmd} {name} stdout"), &out.stdout);
            assert_safe(&format!("{cmd} {name} stderr"), &out.stderr);
            assert!(
                !out.stdout.is_empty() || !out.stderr.is_empty(),
                "{cmd} {name}: no output"
            );
        }
    }
    let out = s
        .cmd()
        .arg("explain")
        .arg(s.dir.path().join("escapes.txt"))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("\\x1B[31mREF") && shown.contains("\\x00\\x07\\x9B31m\\x7F"),
        "{shown}"
    );
    // Files named with escapes given to explain/check/process (say, by a
    // loop over inbound/): their output and errors show the names escaped.
    let evil = s.dir.path().join(OsStr::from_bytes(b"evil\x1b[31m\x9b\x07.txt"));
    fs::write(&evil, &files[0].1).unwrap();
    let missing = s.dir.path().join(OsStr::from_bytes(b"no\x1b[31msuch"));
    for file in [&evil, &missing] {
        for cmd in ["explain", "check", "process"] {
            let mut c = s.cmd();
            c.arg(cmd).arg(file);
            if cmd == "process" {
                c.args(["--channel", "abi"]);
            }
            let out = c.output().unwrap();
            assert_safe(&format!("{cmd} on a hostile name, stdout"), &out.stdout);
            assert_safe(&format!("{cmd} on a hostile name, stderr"), &out.stderr);
            if file == &missing {
                assert!(!out.status.success());
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("no\\x1B[31msuch"),
                    "{cmd}"
                );
            }
        }
    }
    let out = s.cmd().arg("check").arg(&evil).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("evil\\x1B[31m\\x9B\\x07.txt:line"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
