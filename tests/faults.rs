//! Faults of the store and the disk, through the real binary: the store
//! full, read-only or locked by another process, the outbound folder
//! unwritable, the database file corrupted.
//!
//! Tests run as root, so permissions cannot make these faults: the daemon's
//! fault-injection seam (`ECERTD_FAULT_FILE`, see src/fault.rs) turns them
//! on and off while it runs, with SQLite's own mechanisms where it has them
//! (`max_page_count` gives a genuine `SQLITE_FULL`, `query_only` a genuine
//! `SQLITE_READONLY`); the lock is a genuine one, held by this test process
//! through its own connection.
//!
//! Each fault must be reported in the log, must leave nothing acknowledged
//! that was not committed (no response file, no journal line, the input
//! kept in `work/`), and must clear by itself: every input then has exactly
//! one response, byte for byte that of a fault-free run, and the ledger
//! replays. Inputs waiting behind a failing store are not processed ahead
//! of it (they would see a ledger without its certificates).

mod daemon_support;
mod hardening_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use daemon_support::*;
use hardening_support::*;

/// Certificates of the GT input: enough that committing it needs new pages
/// whatever room the store's pages have left. Its stored response (one
/// record a certificate) is then larger than a store page, so it needs an
/// overflow page of its own (`reference` checks the size).
const CERTS: usize = 250;

fn cert_number(i: usize) -> String {
    format!("9AU{i:05}F")
}

/// A GT file of `CERTS` certificates, then an AE file claiming some of them.
fn inputs() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut details = Vec::new();
    for i in 0..CERTS {
        details.extend(certificate("AU", &cert_number(i), 1_000_000));
    }
    let gt = batch("AU1", "PWAU01", "GT", "F-GT-1", "AU1", &details);
    let mut details = Vec::new();
    for e in 0..5u32 {
        let lines = [
            ("AU", cert_number(e as usize), 250_000u64),
            ("AU", cert_number(e as usize + 1), 100_000u64),
        ];
        details.extend(entry('A', 4_000_000 + e, IOR, &lines));
    }
    let ae = batch("ABC", "PWABC1", "AE", "F-AE-1", "ABC", &details);
    vec![
        ("ecert", "gt.txt".to_string(), gt.into_bytes()),
        ("abi", "ae.txt".to_string(), ae.into_bytes()),
    ]
}

/// A TCP batch: an importer query with a reference (so that it writes).
fn tcp_query(reference: &str) -> String {
    batch("ABC", "PWABC1", "EC", reference, "ABC", &[format!("C1I{IOR}")])
}

/// The fault-free run: responses by input, journal length, store counts.
struct Reference {
    responses: BTreeMap<String, Vec<u8>>,
    journal: usize,
    counts: Vec<(&'static str, i64)>,
}

fn reference(files: &[(&'static str, String, Vec<u8>)]) -> Reference {
    let s = Spool::new();
    let mut d = s.start(&[], &[]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    for (ch, name, bytes) in files {
        s.drop_file(ch, name, bytes);
        wait_until(Duration::from_secs(30), name, || {
            !s.responses_for(name).is_empty() && s.idle()
        });
    }
    assert!(d.terminate(Duration::from_secs(20)).success());
    let responses: BTreeMap<String, Vec<u8>> = files.iter().map(|(_, n, _)| (n.clone(), s.response(n))).collect();
    let page = ecertd::store::NEW_STORE_PAGE_SIZE as usize;
    assert!(responses["gt.txt"].len() > page, "the GT response fits in one page");
    Reference {
        responses,
        journal: s.journal().len(),
        counts: s.counts(),
    }
}

/// The claim ID in work/ of input `name`, once claimed.
fn claimed(s: &Spool, name: &str) -> String {
    let mut found = None;
    wait_until(Duration::from_secs(20), &format!("{name} claimed"), || {
        found = s.entries("work").into_iter().find(|c| c.ends_with(&format!("-{name}")));
        found.is_some()
    });
    found.unwrap()
}

/// Failure log lines of one claim whose error contains `error`.
fn failures(d: &Daemon, claim: &str, error: &str, n: usize) -> Vec<serde_json::Value> {
    let (claim, error) = (claim.to_string(), error.to_string());
    wait_logs(
        d,
        "processing failed; the file stays in work/ and is retried",
        n,
        Duration::from_secs(30),
        move |v| {
            v["fields"]["claim"] == claim.as_str()
                && v["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(error.as_str()))
        },
    )
}

/// Nothing acknowledged: no response file, no journal line, the claims in work/.
fn nothing_acknowledged(s: &Spool, claims: &[&str]) {
    assert!(
        s.responses().is_empty(),
        "responses during the fault: {:?}",
        s.responses().keys()
    );
    assert!(s.journal().is_empty(), "journal during the fault: {:?}", s.journal());
    assert!(s.temp_files().is_empty(), "{:?}", s.temp_files());
    let work = s.entries("work");
    for c in claims {
        assert!(work.iter().any(|w| w == c), "{c} not kept in work/: {work:?}");
    }
    assert!(s.entries("archive").is_empty());
}

/// After the fault: one response per input, byte for byte the reference.
fn matches_reference(s: &Spool, files: &[(&'static str, String, Vec<u8>)], want: &Reference) {
    wait_until(Duration::from_secs(60), "responses after the fault cleared", || {
        files.iter().all(|(_, n, _)| !s.responses_for(n).is_empty()) && s.idle()
    });
    for (_, name, _) in files {
        let got = s.response(name);
        assert!(
            got == want.responses[name],
            "response to {name} differs from the fault-free run:\n--- want\n{}\n--- got\n{}",
            String::from_utf8_lossy(&want.responses[name]),
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(s.responses().len(), files.len());
    assert_eq!(s.entries("archive").len(), files.len());
    assert!(s.ledger_mismatches().is_empty(), "{:?}", s.ledger_mismatches());
    assert_eq!(s.counts(), want.counts, "store counts");
}

/// The store faults the daemon can be given.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StoreFault {
    Full,
    ReadOnly,
    /// A genuine lock: another connection (this process) holds BEGIN EXCLUSIVE.
    Locked,
}

/// One cycle: the fault on; the GT input fails again and again; the AE
/// input arrives and waits behind it; a TCP batch is not answered (store
/// faults that refuse every write); the fault clears; everything ends as
/// in a fault-free run.
fn store_fault_cycle(fault: StoreFault) {
    let files = inputs();
    let want = reference(&files);
    let s = Spool::new();
    let fault_file = s.dir.path().join("faults");
    let (error, name) = match fault {
        StoreFault::Full => ("database or disk is full", "store-full"),
        StoreFault::ReadOnly => ("attempt to write a readonly database", "store-readonly"),
        StoreFault::Locked => ("database is locked", ""),
    };
    fs::write(&fault_file, format!("{name}\n")).unwrap();
    let counts_before = s.counts();
    let mut d = s.start(
        &["--listen", "127.0.0.1:0"],
        &[
            ("ECERTD_FAULT_FILE", fault_file.to_str().unwrap()),
            ("ECERTD_RETRY_MAX_MS", "4000"),
            ("ECERTD_STORE_BUSY_TIMEOUT_MS", "200"),
        ],
    );
    let addr = d.addr("TCP endpoint listening");
    d.wait_log(
        "fault injection enabled (ECERTD_FAULT_FILE); for tests only",
        Duration::from_secs(5),
    );
    d.wait_log("ecertd serving", Duration::from_secs(20));
    // The lock: this process's own connection (opened, then a write lock
    // taken once the daemon runs), held until released. While it is held,
    // this process cannot open the store again (opening migrates, a write).
    let mut holder = None;
    if fault == StoreFault::Locked {
        let mut st = s.store();
        st.execute_raw("BEGIN EXCLUSIVE").unwrap();
        holder = Some(st);
    }
    let started = Instant::now();
    let (gt, ae) = (&files[0], &files[1]);
    s.drop_file(gt.0, &gt.1, &gt.2);
    let gt_claim = claimed(&s, &gt.1);
    let seen = failures(&d, &gt_claim, error, 3);
    let line = &seen[0];
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(line["fields"]["retry_in_ms"].as_u64().is_some(), "{line}");
    if fault != StoreFault::Locked {
        d.wait_log("fault injection: store faults changed", Duration::from_secs(5));
    }
    // A later input must not overtake the failing one.
    s.drop_file(ae.0, &ae.1, &ae.2);
    let ae_claim = claimed(&s, &ae.1);
    if fault != StoreFault::Full {
        // A TCP batch needs a write: no answer, nothing journaled.
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(tcp_query("F-TCP-1").as_bytes()).unwrap();
        assert!(
            read_batches(&mut c, 1).is_err(),
            "a TCP batch was answered during the fault"
        );
    } else {
        std::thread::sleep(Duration::from_millis(700));
    }
    nothing_acknowledged(&s, &[&gt_claim, &ae_claim]);
    if holder.is_none() {
        assert_eq!(s.counts(), counts_before, "something was committed during the fault");
    }
    let during = started.elapsed();
    // The fault clears.
    fs::write(&fault_file, "").unwrap();
    if let Some(mut st) = holder.take() {
        st.execute_raw("ROLLBACK").unwrap();
    }
    let cleared = Instant::now();
    matches_reference(&s, &files, &want);
    let recovered = cleared.elapsed();
    assert_eq!(s.journal().len(), want.journal, "journal lines");
    // The TCP batch that was not answered was not committed either.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(tcp_query("F-TCP-1").as_bytes()).unwrap();
    read_batches(&mut c, 1).unwrap();
    drop(c);
    wait_until(Duration::from_secs(10), "TCP journal line", || {
        s.journal().len() == want.journal + 1
    });
    let last = s.journal().pop().unwrap();
    assert!(last.contains(" outcome=processed "), "{last}");
    let fails = log_lines(&d, "processing failed; the file stays in work/ and is retried").len();
    eprintln!(
        "{fault:?}: {fails} failed attempts logged over {during:?} of fault; recovered {recovered:?} after it cleared"
    );
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// `store-full`: a genuine SQLITE_FULL (the store capped at its size).
#[test]
fn store_full_is_reported_retried_and_recovered() {
    store_fault_cycle(StoreFault::Full);
}

/// `store-readonly`: a genuine SQLITE_READONLY (`query_only`).
#[test]
fn store_readonly_is_reported_retried_and_recovered() {
    store_fault_cycle(StoreFault::ReadOnly);
}

/// Another process holds the store's write lock: SQLITE_BUSY after
/// `store_busy_timeout_ms`, retried until the lock goes.
#[test]
fn store_locked_by_another_process_is_waited_out() {
    store_fault_cycle(StoreFault::Locked);
}

/// `outbound-unwritable`: the batches are committed but the response
/// cannot be published: no response, no journal line, the input stays in
/// work/, the store knows it unpublished; once writable, the stored
/// response is published (nothing applied twice).
#[test]
fn outbound_unwritable_publishes_the_stored_response_later() {
    let files = inputs();
    let want = reference(&files);
    let s = Spool::new();
    let fault_file = s.dir.path().join("faults");
    fs::write(&fault_file, "outbound-unwritable\n").unwrap();
    let mut d = s.start(
        &[],
        &[
            ("ECERTD_FAULT_FILE", fault_file.to_str().unwrap()),
            ("ECERTD_RETRY_MAX_MS", "1000"),
        ],
    );
    d.wait_log("ecertd serving", Duration::from_secs(20));
    let (gt, ae) = (&files[0], &files[1]);
    s.drop_file(gt.0, &gt.1, &gt.2);
    let gt_claim = claimed(&s, &gt.1);
    failures(
        &d,
        &gt_claim,
        "Permission denied (os error 13) (injected fault outbound-unwritable)",
        2,
    );
    s.drop_file(ae.0, &ae.1, &ae.2);
    let ae_claim = claimed(&s, &ae.1);
    let line = failures(&d, &ae_claim, "outbound-unwritable", 2).remove(0);
    let err = line["fields"]["error"].as_str().unwrap();
    assert!(err.starts_with("publishing outbound/ABC/"), "{err}");
    nothing_acknowledged(&s, &[&gt_claim, &ae_claim]);
    // Committed, not published.
    for c in [&gt_claim, &ae_claim] {
        let rec = s.store().read(|tx| tx.input(c)).unwrap().expect("input record");
        assert!(rec.complete && !rec.published, "{rec:?}");
    }
    let counts_during = s.counts();
    assert_eq!(counts_during, want.counts, "the commits happened once");
    fs::write(&fault_file, "# cleared\n").unwrap();
    matches_reference(&s, &files, &want);
    assert_eq!(s.journal().len(), want.journal);
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// Overwrites `len` bytes of the database at `offset` with garbage.
fn scribble(path: &std::path::Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom};
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let junk: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(37).wrapping_add(11)).collect();
    f.write_all(&junk).unwrap();
    f.sync_all().unwrap();
}

/// A spool whose store holds the examples' certificates, with an input
/// waiting in the drop folder and the daemon stopped.
fn spool_with_waiting_input() -> Spool {
    let s = Spool::new();
    let mut d = s.start(&[], &[]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    s.drop_file("ecert", "01.txt", &data("01-gt-certificates.txt"));
    wait_until(Duration::from_secs(30), "01", || s.responses().len() == 1 && s.idle());
    assert!(d.terminate(Duration::from_secs(20)).success());
    assert!(!s.root.join("ecertd.db-wal").exists() || fs::metadata(s.root.join("ecertd.db-wal")).unwrap().len() == 0);
    s.drop_file("abi", "02.txt", &data("02-ae-claim.txt"));
    s
}

/// The spool after a refused start: the input still waiting, nothing claimed,
/// published, journaled or filed since.
fn untouched(s: &Spool) {
    assert_eq!(s.entries("inbound/abi"), vec!["02.txt"]);
    assert!(s.entries("work").is_empty(), "{:?}", s.entries("work"));
    assert_eq!(s.entries("archive").len(), 1);
    assert_eq!(s.responses().len(), 1);
    assert_eq!(s.journal().len(), 1);
    assert!(s.entries("rejected").is_empty());
}

/// A database file whose header is garbage: `serve` exits non-zero at once
/// with an error naming the store, and claims nothing.
#[test]
fn corrupt_database_header_stops_the_start() {
    let s = spool_with_waiting_input();
    let db = s.root.join("ecertd.db");
    scribble(&db, 0, 100);
    let mut d = s.start(&[], &[]);
    let st = d.wait_exit(Duration::from_secs(30));
    assert!(!st.success(), "serve on a corrupt store exited {st}");
    let log = d.log_text();
    assert!(
        log.contains(&format!("opening store {}", db.display())) && log.contains("file is not a database"),
        "{log}"
    );
    untouched(&s);
    // status and query refuse too, with the same clear error.
    let out = s.cmd().arg("status").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("file is not a database"));
}

/// A daemon started while another process holds the store waits
/// `store_busy_timeout_ms` for it (not a fixed time), then stops with a
/// clear error and claims nothing.
#[test]
fn store_locked_at_start_waits_the_configured_time() {
    let s = spool_with_waiting_input();
    let mut holder = s.store();
    holder.execute_raw("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let mut d = s.start(&[], &[("ECERTD_STORE_BUSY_TIMEOUT_MS", "300")]);
    let st = d.wait_exit(Duration::from_secs(20));
    let waited = started.elapsed();
    assert!(!st.success(), "serve on a locked store exited {st}");
    assert!(
        waited < Duration::from_secs(10),
        "waited {waited:?}, not the configured 300 ms"
    );
    let log = d.log_text();
    assert!(log.contains("database is locked"), "{log}");
    untouched(&s);
    holder.execute_raw("ROLLBACK").unwrap();
}

/// A database whose pages (past the header) are garbage: the start-up
/// check finds it; `serve` exits non-zero naming the corruption, and
/// claims nothing.
#[test]
fn corrupt_database_pages_stop_the_start() {
    let s = spool_with_waiting_input();
    let db = s.root.join("ecertd.db");
    let len = fs::metadata(&db).unwrap().len();
    let page = 4096u64;
    assert!(len > 4 * page, "store of {len} bytes");
    // Every page but the first (the schema) scribbled over.
    scribble(&db, page, (len - page) as usize);
    let mut d = s.start(&[], &[]);
    let st = d.wait_exit(Duration::from_secs(30));
    assert!(!st.success(), "serve on a corrupt store exited {st}");
    let log = d.log_text();
    assert!(log.contains("malformed"), "{log}");
    untouched(&s);
}

/// One page of the store damaged where start-up does not look (the
/// certificates), found by trying each page on a copy: start-up succeeds;
/// the first input that reads a certificate fails with the corruption
/// named in the log, stays in work/ unanswered, and holds back the inputs
/// after it (they are not applied to a damaged ledger).
#[test]
fn corrupt_page_found_at_run_time_stops_processing() {
    let s = spool_with_waiting_input();
    let db = s.root.join("ecertd.db");
    let page = 4096u64;
    let pages = fs::metadata(&db).unwrap().len() / page;
    let probe = s.dir.path().join("probe.db");
    let damaged = (1..pages)
        .rev()
        .find(|p| {
            fs::copy(&db, &probe).unwrap();
            scribble(&probe, p * page, page as usize);
            let run = |args: &[&str]| s.cmd().arg("--db").arg(&probe).args(args).output().unwrap();
            run(&["status"]).status.success() && !run(&["query", "certificate", "AU", "9AU12345B"]).status.success()
        })
        .expect("a page that only certificate reads touch");
    scribble(&db, damaged * page, page as usize);
    let mut d = s.start(&[], &[("ECERTD_RETRY_MAX_MS", "1000")]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    let claim = claimed(&s, "02.txt");
    let line = failures(&d, &claim, "database disk image is malformed", 2).remove(0);
    assert_eq!(line["fields"]["held_back"], 0, "{line}");
    s.drop_file("abi", "05.txt", &data("05-ec-query.txt"));
    let later = claimed(&s, "05.txt");
    let held = failures(&d, &claim, "malformed", 3);
    assert!(held.iter().any(|l| l["fields"]["held_back"] == 1), "{held:?}");
    assert!(
        log_lines(&d, "processing failed; the file stays in work/ and is retried")
            .iter()
            .all(|l| l["fields"]["claim"] == claim.as_str()),
        "the later input was tried on a damaged store"
    );
    assert_eq!(s.responses().len(), 1, "{:?}", s.responses().keys());
    assert_eq!(s.journal().len(), 1);
    assert_eq!(s.entries("work"), {
        let mut v = vec![claim.clone(), later.clone()];
        v.sort();
        v
    });
    assert!(d.terminate(Duration::from_secs(20)).success());
}
