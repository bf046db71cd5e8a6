//! Concurrent submissions claiming one certificate (rules.md, "The ledger":
//! batches are serializable, `used` never exceeds `certified`):
//!
//! - threads, each with its own `Store::open` on one database file and its own
//!   `Engine`, processing different multi-batch files;
//! - several `ecertd process` processes at once on one store.
//!
//! Every file gets a complete response; the accepted claims add up to the
//! certificate's `used`; the C00 balances chain like some one-at-a-time order.

mod apps_support;

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use apps_support::*;
use ecertd::engine::{Engine, Session};
use ecertd::envelope::Channel;
use ecertd::store::{Store, StoreError};

const CERT: &str = "9AU12345B";
/// 5000.00 KG.
const CERTIFIED: u64 = 500_000;
const FILES: usize = 4;
const BATCHES: usize = 40;
const ENTRIES: usize = 3;

/// Claim size of file `f`: 10.00, 20.00, 30.00, 40.00 KG; the demand of all
/// files (12000.00 KG) is well above the certificate.
fn qty(f: usize) -> u64 {
    (f as u64 + 1) * 1_000
}

fn digits(f: usize, b: usize, i: usize) -> String {
    format!("{:07}", 1_000_000 + f * 1000 + b * 10 + i)
}

/// A file of BATCHES batches of ENTRIES one-line entries, each claiming qty(f).
fn file(f: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for b in 0..BATCHES {
        let details: Vec<String> = (0..ENTRIES)
            .flat_map(|i| entry("A", "ABC", &digits(f, b, i), IOR_A, &[beef(1, qty(f), CERT)]))
            .collect();
        let reference = format!("F{f}-B{b}");
        let spec = BatchSpec {
            sender: "ABC",
            password: "PWABC1",
            app: "AE",
            reference: &reference,
            blocks: vec![("ABC", details)],
        };
        out.extend(spec.bytes());
    }
    out
}

fn gt_file() -> Vec<u8> {
    BatchSpec {
        sender: "AU1",
        password: "PWAU01",
        app: "GT",
        reference: "",
        blocks: vec![("AU1", cert(&G1::add("AU", CERT).qty(CERTIFIED), "EXPORTER"))],
    }
    .bytes()
}

/// One accepted or refused claim, as the response tells it.
#[derive(Debug)]
struct Claim {
    qty: u64,
    /// Some(left after the claim) when accepted.
    left: Option<u64>,
}

/// Checks that `resp` answers file `f` completely and returns its claims.
fn claims_of(f: usize, resp: &[u8]) -> Vec<Claim> {
    let text = String::from_utf8(resp.to_vec()).unwrap();
    let records: Vec<&str> = text.lines().collect();
    assert!(text.ends_with('\n'));
    // Split into batches at the A records.
    let mut batches: Vec<Vec<&str>> = Vec::new();
    for r in &records {
        assert_eq!(r.len(), 80, "{r:?}");
        if r.starts_with('A') {
            batches.push(Vec::new());
        }
        batches.last_mut().expect("response starts with A").push(r);
    }
    assert_eq!(batches.len(), BATCHES, "file {f}: one response batch per input batch");
    let mut claims = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let reference = format!("F{f}-B{b}");
        let details: Vec<String> = detail_records(&(batch.join("\n") + "\n"), "ABC", "AE", &reference, date());
        // Each entry: E0 SUMMRY, then E0/E1 C00 + final A, or E0/E1 Q05 + final R.
        assert_eq!(details.len() % 4, 0, "file {f} batch {b}: {details:#?}");
        for (i, t) in details.chunks(4).enumerate() {
            let e = entry_no("ABC", &digits(f, b, i));
            assert_eq!(t[0], e0_summary("ABC", &e, 3 + 5 * i as u32));
            assert_eq!(t[1], e0_line("ABC", &e, "001", 7 + 5 * i as u32));
            if t[3] == e1_accepted("ABC", &e, 1) {
                let narrative = t[2][10..50].trim_end();
                let left = narrative
                    .strip_prefix("CLAIM APPLIED, LEFT ")
                    .and_then(|s| s.strip_suffix(" KG"))
                    .unwrap_or_else(|| panic!("{t:#?}"));
                let (units, cents) = left.split_once('.').unwrap();
                let left = units.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap();
                assert_eq!(
                    t[2],
                    e1_c00(&format!("{}.{:02}", left / 100, left % 100), "KG", "ABC", &e)
                );
                claims.push(Claim {
                    qty: qty(f),
                    left: Some(left),
                });
            } else {
                assert_eq!(t[2], e1_problem("Q05", "ABC", &e), "{t:#?}");
                assert_eq!(t[3], e1_rejected("ABC", &e));
                claims.push(Claim {
                    qty: qty(f),
                    left: None,
                });
            }
        }
    }
    assert_eq!(claims.len(), BATCHES * ENTRIES);
    claims
}

/// The claims must read like one-at-a-time processing: accepted claims, by
/// balance left, each take their quantity from the one before; what is left at
/// the end is below every refused claim (the balance only went down).
/// Returns the files' claim sizes in the order they were applied.
fn check_serial(claims: &[Claim], store: &mut Store) -> Vec<u64> {
    let mut accepted: Vec<(u64, u64)> = claims.iter().filter_map(|c| c.left.map(|l| (l, c.qty))).collect();
    accepted.sort_by_key(|a| std::cmp::Reverse(a.0));
    let mut balance = CERTIFIED;
    for (left, q) in &accepted {
        assert_eq!(*left, balance - q, "claims do not chain: {accepted:?}");
        balance = *left;
    }
    let used: u64 = accepted.iter().map(|a| a.1).sum();
    assert_eq!(CERTIFIED - used, balance);
    for c in claims.iter().filter(|c| c.left.is_none()) {
        assert!(
            balance < c.qty,
            "a claim of {} was refused while {} is left",
            c.qty,
            balance
        );
    }
    let (certified, stored_used, events) = store
        .read(|tx| -> Result<_, StoreError> {
            let c = tx
                .certificate(
                    ecertd::types::Country::parse(b"AU").unwrap(),
                    ecertd::types::CertificateNumber::from_stored(CERT).unwrap(),
                )?
                .unwrap();
            let events = tx.usage_events(c.id)?;
            assert!(tx.ledger_mismatches()?.is_empty());
            Ok((c.terms.certified.get(), c.used.get(), events))
        })
        .unwrap();
    assert_eq!(certified, CERTIFIED);
    assert_eq!(stored_used, used, "sum of accepted claims == used");
    assert!(stored_used <= certified);
    assert_eq!(events.len(), accepted.len(), "one debit per accepted claim");
    // Demand exceeds the certificate, so some claims must have been refused.
    assert!(claims.iter().any(|c| c.left.is_none()));
    assert!(claims.iter().any(|c| c.left.is_some()));
    accepted.iter().map(|a| a.1).collect()
}

#[test]
fn threads_with_their_own_connections_never_over_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh_store_file(dir.path());
    {
        let mut store = Store::open(&path).unwrap();
        let mut session = Session::new(Channel::Ecert);
        let resp = process(&mut store, date(), &mut session, &gt_file());
        let want = response("AU1", "GT", "", "AU1", &s1_ok("AU", CERT, "A", CERTIFIED), date());
        assert_eq!(String::from_utf8(resp).unwrap(), want);
    }
    // Lock-step rounds: in each round every thread submits its next batches at
    // once (4 writers contending for the store), so the files' commits
    // interleave; SQLite's busy back-off would otherwise let one connection run
    // its whole file while the others sleep.
    let barrier = Arc::new(Barrier::new(FILES));
    let handles: Vec<_> = (0..FILES)
        .map(|f| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&path).unwrap();
                let mut engine = Engine::new(&mut store, date());
                // One session for the whole file, as for one input.
                let mut session = Session::new(Channel::Abi);
                let input = file(f);
                let batch_len = input.len() / BATCHES;
                // Group commit of 2 batches per transaction for half the files.
                let group = if f % 2 == 0 { 1 } else { 2 };
                let mut out = Vec::new();
                let mut n = 0;
                for round in 0..BATCHES / 2 {
                    barrier.wait();
                    let take = &input[round * 2 * batch_len..(round + 1) * 2 * batch_len];
                    n += engine
                        .process_stream(&mut session, Cursor::new(take.to_vec()), group, |r| {
                            out.extend_from_slice(&r.response);
                            Ok(())
                        })
                        .unwrap();
                }
                assert_eq!(n, BATCHES as u64);
                out
            })
        })
        .collect();
    let mut claims = Vec::new();
    for (f, h) in handles.into_iter().enumerate() {
        claims.extend(claims_of(f, &h.join().unwrap()));
    }
    let mut store = Store::open(&path).unwrap();
    let order = check_serial(&claims, &mut store);
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches >= FILES, "the files' claims did not interleave: {order:?}");
}

#[test]
fn ecertd_processes_at_once_never_over_claim() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store_file(dir.path());
    let exe = env!("CARGO_BIN_EXE_ecertd");
    let run = |input: &Path, channel: &str| {
        Command::new(exe)
            .arg("--db")
            .arg(&db)
            .arg("--root")
            .arg(dir.path())
            .args(["--business-date", "2026-03-15", "process"])
            .arg(input)
            .args(["--channel", channel])
            .env_remove("ECERTD_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let gt = dir.path().join("gt.txt");
    std::fs::write(&gt, gt_file()).unwrap();
    let out = run(&gt, "ecert").wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = response("AU1", "GT", "", "AU1", &s1_ok("AU", CERT, "A", CERTIFIED), date());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);

    let inputs: Vec<_> = (0..FILES)
        .map(|f| {
            let p = dir.path().join(format!("ae-{f}.txt"));
            std::fs::write(&p, file(f)).unwrap();
            p
        })
        .collect();
    let children: Vec<_> = inputs.iter().map(|p| run(p, "abi")).collect();
    let mut claims = Vec::new();
    for (f, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "file {f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        claims.extend(claims_of(f, &out.stdout));
    }
    // Whether the processes interleave is up to the scheduler; the ledger must hold either way.
    let mut store = Store::open(&db).unwrap();
    check_serial(&claims, &mut store);
}
