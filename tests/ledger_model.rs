//! A property test of the ledger: random sequences of GT and AE batches
//! (adds, replaces, deletes, cancels, over-claims, wrong IOR, wrong origin)
//! run through the engine and through a small in-memory model written from
//! the spec. After every batch they must agree on every transaction's
//! condition codes, C00 balances and final disposition, and on every
//! certificate's certified / used / cancelled / IOR and every entry's state;
//! `used` never exceeds `certified`, and replaying the usage events gives
//! `used` (Tx::ledger_mismatches() is empty).
//!
//! 128 cases by default; ECERTD_LONG_TESTS=1 runs 2048 (PROPTEST_CASES wins
//! over both).

mod apps_support;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use apps_support::*;
use ecertd::store::StoreError;
use ecertd::types::{EntryNumber, FilerCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Certificates 0 and 1 are added at the start of every case; 2 only if a step adds it.
const NCERT: usize = 3;
const INITIAL: usize = 2;
const NENTRY: usize = 3;
const IORS: [&str; 2] = [IOR_A, IOR_B];

fn cert_no(k: usize) -> String {
    format!("9AUP{k}")
}

fn digits(e: usize) -> String {
    format!("{:07}", 1_000_001 + e)
}

#[derive(Clone, Debug)]
enum CertOp {
    Add { k: usize, qty: u64, ior: usize },
    Replace { k: usize, qty: u64, ior: usize },
    Cancel { k: usize },
}

#[derive(Clone, Debug)]
struct LineSpec {
    k: usize,
    qty: u64,
    /// Origin NZ instead of AU: the certificate is then looked for under NZ.
    wrong_origin: bool,
}

#[derive(Clone, Debug)]
enum EntryOp {
    Add {
        e: usize,
        ior: usize,
        lines: Vec<LineSpec>,
    },
    Replace {
        e: usize,
        ior: usize,
        lines: Vec<LineSpec>,
    },
    Delete {
        e: usize,
    },
    /// A replace repeating the entry's claims in force, each lowered by up to
    /// `lower` (kept claims); resolved against the model when sent.
    Resend {
        e: usize,
        lower: u64,
    },
    /// An add (under the first entry number never used, else `e`) claiming
    /// exactly what is left of certificate `k`; resolved when sent.
    Fill {
        e: usize,
        k: usize,
    },
}

/// One batch: 1 to 3 transactions of one application.
#[derive(Clone, Debug)]
enum Step {
    Gt(Vec<CertOp>),
    Ae(Vec<EntryOp>),
}

fn ior_index() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0usize, 0, 0, 0, 0, 1])
}

/// Certified quantities: mostly from a small set, so that sums of claims land
/// exactly on balances; sometimes anything.
fn cert_qty() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => prop::sample::select(vec![100u64, 200, 300, 500, 1000]),
        1 => 1..=100_000u64,
    ]
}

/// A replace's quantity: often small, so that it falls below what is used (G17).
fn replace_qty() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(vec![50u64, 100, 150, 200, 300]),
        1 => cert_qty(),
    ]
}

fn line_qty() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => prop::sample::select(vec![50u64, 100, 100, 150, 200, 250, 300, 500]),
        1 => 1..=60_000u64,
    ]
}

fn cert_op() -> impl Strategy<Value = CertOp> {
    prop_oneof![
        4 => (0..NCERT, cert_qty(), ior_index()).prop_map(|(k, qty, ior)| CertOp::Add { k, qty, ior }),
        2 => (0..NCERT, replace_qty(), ior_index()).prop_map(|(k, qty, ior)| CertOp::Replace { k, qty, ior }),
        2 => (0..NCERT).prop_map(|k| CertOp::Cancel { k }),
    ]
}

fn line_spec() -> impl Strategy<Value = LineSpec> {
    (0..NCERT, line_qty(), prop::bool::weighted(0.08)).prop_map(|(k, qty, wrong_origin)| LineSpec {
        k,
        qty,
        wrong_origin,
    })
}

fn entry_op() -> impl Strategy<Value = EntryOp> {
    let lines = || prop::collection::vec(line_spec(), 0..=3);
    prop_oneof![
        4 => (0..NENTRY, ior_index(), lines()).prop_map(|(e, ior, lines)| EntryOp::Add { e, ior, lines }),
        3 => (0..NENTRY, ior_index(), lines()).prop_map(|(e, ior, lines)| EntryOp::Replace { e, ior, lines }),
        1 => (0..NENTRY).prop_map(|e| EntryOp::Delete { e }),
        4 => (0..NENTRY, prop::sample::select(vec![0u64, 0, 50, 100])).prop_map(|(e, lower)| EntryOp::Resend { e, lower }),
        1 => (0..NENTRY, 0..NCERT).prop_map(|(e, k)| EntryOp::Fill { e, k }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => prop::collection::vec(cert_op(), 1..=3).prop_map(Step::Gt),
        2 => prop::collection::vec(entry_op(), 1..=3).prop_map(Step::Ae),
    ]
}

// ------------------------------------------------------------- model --

#[derive(Clone, Debug, PartialEq, Eq)]
struct MCert {
    certified: u64,
    used: u64,
    cancelled: bool,
    ior: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum MEntry {
    Active {
        version: u32,
        ior: usize,
        claims: Vec<(u16, usize, u64)>,
    },
    /// Deleted, keeping the version it had.
    Deleted { version: u32 },
}

#[derive(Default, Debug)]
struct Model {
    certs: HashMap<usize, MCert>,
    entries: HashMap<usize, MEntry>,
}

/// What a GT transaction should get: problem codes, and on acceptance the remaining quantity.
#[derive(Debug, PartialEq, Eq)]
struct GtOutcome {
    codes: Vec<String>,
    remaining: Option<u64>,
}

/// What an AE transaction should get: (line, code) problems (line 0: the entry),
/// (line, left) claims applied, and on acceptance the version written.
#[derive(Debug, PartialEq, Eq)]
struct AeOutcome {
    problems: Vec<(u16, String)>,
    applied: Vec<(u16, u64)>,
    version: Option<u32>,
}

impl Model {
    /// A `Resend` as the replace it stands for; other operations as they are.
    fn resolve(&self, op: &EntryOp) -> EntryOp {
        if let EntryOp::Fill { e, k } = *op {
            let e = (0..NENTRY).find(|e| !self.entries.contains_key(e)).unwrap_or(e);
            let (qty, ior) = match self.certs.get(&k) {
                Some(c) if c.certified > c.used => (c.certified - c.used, c.ior),
                Some(c) => (1, c.ior),
                None => (1, 0),
            };
            return EntryOp::Add {
                e,
                ior,
                lines: vec![LineSpec {
                    k,
                    qty,
                    wrong_origin: false,
                }],
            };
        }
        let EntryOp::Resend { e, lower } = *op else {
            return op.clone();
        };
        match self.entries.get(&e) {
            Some(MEntry::Active { ior, claims, .. }) => EntryOp::Replace {
                e,
                ior: *ior,
                lines: claims
                    .iter()
                    .map(|&(_, k, q)| LineSpec {
                        k,
                        qty: q - lower.min(q - 1),
                        wrong_origin: false,
                    })
                    .collect(),
            },
            _ => EntryOp::Replace {
                e,
                ior: 0,
                lines: vec![],
            },
        }
    }

    fn gt(&mut self, op: &CertOp) -> GtOutcome {
        let refuse = |codes: Vec<&str>| GtOutcome {
            codes: codes.into_iter().map(String::from).collect(),
            remaining: None,
        };
        match *op {
            CertOp::Add { k, qty, ior } => {
                if self.certs.contains_key(&k) {
                    return refuse(vec!["G03"]);
                }
                self.certs.insert(
                    k,
                    MCert {
                        certified: qty,
                        used: 0,
                        cancelled: false,
                        ior,
                    },
                );
                GtOutcome {
                    codes: vec![],
                    remaining: Some(qty),
                }
            }
            CertOp::Replace { k, qty, ior } => {
                let Some(c) = self.certs.get_mut(&k) else {
                    return refuse(vec!["G04"]);
                };
                // By field: certificate number (G05), then quantity (G17).
                let mut codes = vec![];
                if c.cancelled {
                    codes.push("G05");
                }
                if qty < c.used {
                    codes.push("G17");
                }
                if !codes.is_empty() {
                    return refuse(codes);
                }
                c.certified = qty;
                c.ior = ior;
                GtOutcome {
                    codes: vec![],
                    remaining: Some(qty - c.used),
                }
            }
            CertOp::Cancel { k } => {
                let Some(c) = self.certs.get_mut(&k) else {
                    return refuse(vec!["G04"]);
                };
                if c.cancelled {
                    return refuse(vec!["G05"]);
                }
                c.cancelled = true;
                GtOutcome {
                    codes: vec![],
                    remaining: Some(c.certified - c.used),
                }
            }
        }
    }

    fn ae(&mut self, op: &EntryOp) -> AeOutcome {
        let (e, action) = match op {
            EntryOp::Add { e, .. } => (*e, 'A'),
            EntryOp::Replace { e, .. } => (*e, 'R'),
            EntryOp::Delete { e } => (*e, 'D'),
            EntryOp::Resend { .. } | EntryOp::Fill { .. } => panic!("resolve it first"),
        };
        let state = self.entries.get(&e).cloned();
        let mut problems: Vec<(u16, String)> = vec![];
        let entry_code = match (action, &state) {
            ('A', Some(MEntry::Active { .. })) => Some("E02"),
            ('A', Some(MEntry::Deleted { .. })) => Some("E04"),
            ('R' | 'D', None) => Some("E03"),
            ('R' | 'D', Some(MEntry::Deleted { .. })) => Some("E04"),
            _ => None,
        };
        if let Some(c) = entry_code {
            problems.push((0, c.to_string()));
        }
        let old: Vec<(u16, usize, u64)> = match &state {
            Some(MEntry::Active { claims, .. }) => claims.clone(),
            _ => vec![],
        };
        let mut applied = vec![];
        let mut new_claims = vec![];
        if let EntryOp::Add { ior, lines, .. } | EntryOp::Replace { ior, lines, .. } = op {
            let replacing = action == 'R';
            let mut old_on: HashMap<usize, u64> = HashMap::new();
            if replacing {
                for &(_, k, q) in &old {
                    *old_on.entry(k).or_default() += q;
                }
            }
            // The entry's new total per certificate (lines whose certificate is found).
            let mut new_total: HashMap<usize, u64> = HashMap::new();
            for l in lines
                .iter()
                .filter(|l| !l.wrong_origin && self.certs.contains_key(&l.k))
            {
                *new_total.entry(l.k).or_default() += l.qty;
            }
            let mut running: HashMap<usize, u64> = HashMap::new();
            for (i, l) in lines.iter().enumerate() {
                let line = (i + 1) as u16;
                let Some(c) = self.certs.get(&l.k) else {
                    problems.push((line, "Q01".into()));
                    continue;
                };
                if l.wrong_origin {
                    // NZ has no certificates; the number is on file for AU only.
                    problems.push((line, "Q11".into()));
                    continue;
                }
                let old_k = old_on.get(&l.k).copied().unwrap_or(0);
                let kept = replacing && new_total[&l.k] <= old_k;
                let mut codes = vec![];
                if c.cancelled && !kept {
                    codes.push("Q03");
                }
                if c.ior != *ior {
                    codes.push("Q02");
                }
                if codes.is_empty() {
                    let available = c.certified - c.used + old_k;
                    let sum = running.get(&l.k).copied().unwrap_or(0) + l.qty;
                    if sum <= available {
                        running.insert(l.k, sum);
                        applied.push((line, available - sum));
                        new_claims.push((line, l.k, l.qty));
                    } else {
                        codes.push("Q05");
                    }
                }
                problems.extend(codes.into_iter().map(|c| (line, c.to_string())));
            }
        }
        if !problems.is_empty() {
            return AeOutcome {
                problems,
                applied: vec![],
                version: None,
            };
        }
        for &(_, k, q) in &old {
            self.certs.get_mut(&k).unwrap().used -= q;
        }
        for &(_, k, q) in &new_claims {
            let c = self.certs.get_mut(&k).unwrap();
            c.used += q;
            assert!(c.used <= c.certified, "model over-claimed");
        }
        let current = match &state {
            Some(MEntry::Active { version, .. }) => *version,
            _ => 0,
        };
        let ior = match op {
            EntryOp::Add { ior, .. } | EntryOp::Replace { ior, .. } => *ior,
            _ => 0,
        };
        let (entry, written) = match action {
            'A' => (
                MEntry::Active {
                    version: 1,
                    ior,
                    claims: new_claims,
                },
                1,
            ),
            'R' => (
                MEntry::Active {
                    version: current + 1,
                    ior,
                    claims: new_claims,
                },
                current + 1,
            ),
            // A delete writes version zeros on its final E1.
            _ => (MEntry::Deleted { version: current }, 0),
        };
        self.entries.insert(e, entry);
        AeOutcome {
            problems,
            applied,
            version: Some(written),
        }
    }
}

// ------------------------------------------------ inputs and responses --

fn gt_records(op: &CertOp) -> Vec<String> {
    match *op {
        CertOp::Add { k, qty, ior } => cert(
            &G1::add("AU", &cert_no(k)).qty(qty).set(|g| g.ior = IORS[ior].into()),
            "EXPORTER",
        ),
        CertOp::Replace { k, qty, ior } => vec![G1::replace("AU", &cert_no(k))
            .qty(qty)
            .set(|g| g.ior = IORS[ior].into())
            .rec()],
        CertOp::Cancel { k } => vec![G1::cancel("AU", &cert_no(k)).rec()],
    }
}

fn ae_records(op: &EntryOp) -> Vec<String> {
    let lines = |ls: &[LineSpec]| -> Vec<Vec<String>> {
        ls.iter()
            .enumerate()
            .map(|(i, l)| {
                let origin = if l.wrong_origin { "NZ" } else { "AU" };
                claim_line(i as u32 + 1, origin, "0201300080", l.qty, "KG", "EX", &cert_no(l.k))
            })
            .collect()
    };
    match op {
        EntryOp::Add { e, ior, lines: ls } => entry("A", "ABC", &digits(*e), IORS[*ior], &lines(ls)),
        EntryOp::Replace { e, ior, lines: ls } => entry("R", "ABC", &digits(*e), IORS[*ior], &lines(ls)),
        EntryOp::Delete { e } => vec![r10("D", "ABC", &entry_no("ABC", &digits(*e)), "2704", "02")],
        EntryOp::Resend { .. } | EntryOp::Fill { .. } => panic!("resolve it first"),
    }
}

/// Splits GS detail records into transactions' outcomes.
fn parse_gs(records: &[String]) -> Vec<GtOutcome> {
    let mut out = vec![];
    let mut codes = vec![];
    for r in records {
        assert!(r.starts_with("S1"), "{r}");
        let (disposition, code, remaining) = (&r[15..16], &r[17..20], &r[60..72]);
        match disposition {
            " " => codes.push(code.to_string()),
            "A" => {
                assert_eq!(code, "000");
                out.push(GtOutcome {
                    codes: std::mem::take(&mut codes),
                    remaining: Some(remaining.parse().unwrap()),
                });
            }
            "R" => {
                assert_eq!((code, remaining), ("999", "000000000000"));
                out.push(GtOutcome {
                    codes: std::mem::take(&mut codes),
                    remaining: None,
                });
            }
            d => panic!("disposition {d:?} in {r}"),
        }
    }
    assert!(codes.is_empty());
    out
}

/// Splits AX detail records into transactions' outcomes.
fn parse_ax(records: &[String]) -> Vec<AeOutcome> {
    let mut out = vec![];
    let mut it = records.iter();
    while let Some(head) = it.next() {
        assert!(head.starts_with("E0SUMMRY"), "{head}");
        let mut o = AeOutcome {
            problems: vec![],
            applied: vec![],
            version: None,
        };
        loop {
            let r = it.next().expect("transaction without its final E1");
            if r.starts_with("E0") {
                let line: u16 = if &r[2..8] == "SUMMRY" {
                    0
                } else {
                    r[19..22].parse().unwrap()
                };
                let e1 = it.next().unwrap();
                assert!(e1.starts_with("E1 "), "{e1}");
                let code = &e1[4..7];
                if code == "C00" {
                    assert_eq!(&e1[3..4], "I");
                    let narrative = e1[10..50].trim_end();
                    let left = narrative
                        .strip_prefix("CLAIM APPLIED, LEFT ")
                        .and_then(|s| s.strip_suffix(" KG"))
                        .unwrap_or_else(|| panic!("C00 narrative {narrative:?}"));
                    let (units, cents) = left.split_once('.').unwrap();
                    assert_eq!(cents.len(), 2);
                    o.applied.push((
                        line,
                        units.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap(),
                    ));
                } else {
                    assert_eq!(&e1[3..4], "F");
                    o.problems.push((line, code.to_string()));
                }
            } else {
                assert!(r.starts_with("E1"), "{r}");
                let version: u32 = r[61..66].parse().unwrap();
                match &r[2..7] {
                    "A 000" => o.version = Some(version),
                    "RF999" => assert_eq!(version, 0),
                    other => panic!("final E1 {other:?}"),
                }
                break;
            }
        }
        out.push(o);
    }
    out
}

// ------------------------------------------------------------ checks --

fn check_state(w: &mut World, model: &Model) -> Result<(), TestCaseError> {
    for k in 0..NCERT {
        let got = w.cert("AU", &cert_no(k));
        match (model.certs.get(&k), got) {
            (None, None) => {}
            (Some(m), Some(c)) => {
                let got = MCert {
                    certified: c.terms.certified.get(),
                    used: c.used.get(),
                    cancelled: c.cancelled,
                    ior: IORS
                        .iter()
                        .position(|i| i.as_bytes() == c.terms.ior.as_bytes())
                        .unwrap(),
                };
                prop_assert_eq!(&got, m, "certificate {}", k);
                prop_assert!(got.used <= got.certified);
            }
            (m, c) => prop_assert!(false, "certificate {}: model {:?}, store {:?}", k, m, c),
        }
    }
    let filer = FilerCode::parse(b"ABC").unwrap();
    for e in 0..NENTRY {
        let number = EntryNumber::parse(filer, entry_no("ABC", &digits(e)).as_bytes()).unwrap();
        let got = w.store.read(|tx| tx.entry(&number)).unwrap();
        let got = got.map(|s| (s.version, s.deleted));
        let want = match model.entries.get(&e) {
            None => None,
            Some(MEntry::Active { version, .. }) => Some((*version, false)),
            Some(MEntry::Deleted { version }) => Some((*version, true)),
        };
        prop_assert_eq!(got, want, "entry {}", e);
    }
    let mismatches = w
        .store
        .read(|tx| -> Result<_, StoreError> { tx.ledger_mismatches() })
        .unwrap();
    prop_assert!(mismatches.is_empty(), "ledger mismatches {:?}", mismatches);
    Ok(())
}

/// How often each outcome was seen, to prove the generator reaches them.
type Coverage = BTreeMap<String, usize>;

fn run_case(w: &mut World, steps: &[Step], seen: &mut Coverage) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Gt(ops) => {
                let records: Vec<String> = ops.iter().flat_map(gt_records).collect();
                let got = parse_gs(&w.gt(&records));
                let want: Vec<GtOutcome> = ops.iter().map(|op| model.gt(op)).collect();
                for (op, o) in ops.iter().zip(&got) {
                    let name = match op {
                        CertOp::Add { .. } => "add",
                        CertOp::Replace { .. } => "replace",
                        CertOp::Cancel { .. } => "cancel",
                    };
                    let verdict = if o.remaining.is_some() { "accepted" } else { "refused" };
                    *seen.entry(format!("GT {name} {verdict}")).or_default() += 1;
                    for c in &o.codes {
                        *seen.entry(c.clone()).or_default() += 1;
                    }
                }
                prop_assert_eq!(got, want, "step {}: {:?}", i, s);
            }
            Step::Ae(ops) => {
                // Each operation is resolved, then run on the model, in batch order.
                let mut records = vec![];
                let mut want: Vec<AeOutcome> = vec![];
                let mut resolved = vec![];
                let mut cancelled_before = vec![];
                for op in ops {
                    let op = model.resolve(op);
                    cancelled_before.push(
                        model
                            .certs
                            .iter()
                            .filter(|c| c.1.cancelled)
                            .map(|c| *c.0)
                            .collect::<Vec<usize>>(),
                    );
                    records.extend(ae_records(&op));
                    want.push(model.ae(&op));
                    resolved.push(op);
                }
                let got = parse_ax(&w.ae(&records));
                for ((op, o), cancelled) in resolved.iter().zip(&got).zip(&cancelled_before) {
                    let name = match op {
                        EntryOp::Add { .. } => "add",
                        EntryOp::Replace { .. } => "replace",
                        EntryOp::Delete { .. } => "delete",
                        EntryOp::Resend { .. } | EntryOp::Fill { .. } => unreachable!("resolved above"),
                    };
                    let verdict = if o.version.is_some() { "accepted" } else { "refused" };
                    *seen.entry(format!("AE {name} {verdict}")).or_default() += 1;
                    for (_, c) in &o.problems {
                        *seen.entry(c.clone()).or_default() += 1;
                    }
                    if o.applied.iter().any(|a| a.1 == 0) {
                        *seen.entry("claim leaving exactly zero".into()).or_default() += 1;
                    }
                    if let (EntryOp::Replace { lines, .. }, Some(_)) = (op, o.version) {
                        if lines.iter().any(|l| cancelled.contains(&l.k)) {
                            *seen
                                .entry("replace keeping a claim on a cancelled certificate".into())
                                .or_default() += 1;
                        }
                    }
                }
                prop_assert_eq!(got, want, "step {}: {:?}", i, resolved);
            }
        }
        check_state(w, &model)?;
    }
    Ok(())
}

#[test]
fn engine_agrees_with_the_ledger_model() {
    let long = std::env::var("ECERTD_LONG_TESTS").is_ok_and(|v| v == "1");
    let mut config = Config {
        cases: if long { 2048 } else { 128 },
        failure_persistence: None,
        ..Config::default()
    };
    if let Some(n) = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()) {
        config.cases = n;
    }
    let mut runner = TestRunner::new(config);
    // Sessions (and so password checks) are shared by the cases' fresh stores,
    // which all hold the same senders.
    let sessions = RefCell::new(Sessions::new());
    let seen = RefCell::new(Coverage::new());
    // Every case starts by adding the certificates, then runs its steps.
    let case = (
        prop::collection::vec((cert_qty(), ior_index()), INITIAL),
        prop::collection::vec(step(), 1..=24),
    )
        .prop_map(|(initial, mut steps)| {
            let adds = initial
                .into_iter()
                .enumerate()
                .map(|(k, (qty, ior))| CertOp::Add { k, qty, ior })
                .collect();
            steps.insert(0, Step::Gt(adds));
            steps
        });
    let result = runner.run(&case, |steps| {
        let mut w = World::new();
        w.sessions = std::mem::take(&mut *sessions.borrow_mut());
        let r = run_case(&mut w, &steps, &mut seen.borrow_mut());
        *sessions.borrow_mut() = std::mem::take(&mut w.sessions);
        r
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner();
    eprintln!("outcomes seen: {seen:#?}");
    // The generator must reach every rule the model encodes, or the
    // comparison above proves little.
    for what in [
        "GT add accepted",
        "GT add refused",
        "GT replace accepted",
        "GT replace refused",
        "GT cancel accepted",
        "GT cancel refused",
        "AE add accepted",
        "AE add refused",
        "AE replace accepted",
        "AE replace refused",
        "AE delete accepted",
        "AE delete refused",
        "G03",
        "G04",
        "G05",
        "G17",
        "E02",
        "E03",
        "E04",
        "Q01",
        "Q11",
        "Q03",
        "Q02",
        "Q05",
        "claim leaving exactly zero",
        "replace keeping a claim on a cancelled certificate",
    ] {
        assert!(
            seen.get(what).copied().unwrap_or(0) > 0,
            "never saw {what:?}: {seen:#?}"
        );
    }
}

/// The model itself on a hand-made run, so a wrong model cannot pass silently.
#[test]
fn the_model_on_a_known_sequence() {
    let mut m = Model::default();
    let l = |k, qty| LineSpec {
        k,
        qty,
        wrong_origin: false,
    };
    assert_eq!(
        m.gt(&CertOp::Add {
            k: 0,
            qty: 1000,
            ior: 0
        })
        .remaining,
        Some(1000)
    );
    let o = m.ae(&EntryOp::Add {
        e: 0,
        ior: 0,
        lines: vec![l(0, 600), l(0, 500)],
    });
    assert_eq!(o.problems, vec![(2, "Q05".to_string())]);
    let o = m.ae(&EntryOp::Add {
        e: 0,
        ior: 0,
        lines: vec![l(0, 600), l(0, 400)],
    });
    assert_eq!((o.applied, o.version), (vec![(1, 400), (2, 0)], Some(1)));
    assert_eq!(m.gt(&CertOp::Replace { k: 0, qty: 999, ior: 0 }).codes, vec!["G17"]);
    assert_eq!(m.gt(&CertOp::Cancel { k: 0 }).remaining, Some(0));
    let o = m.ae(&EntryOp::Replace {
        e: 0,
        ior: 0,
        lines: vec![l(0, 1000)],
    });
    assert_eq!((o.applied, o.version), (vec![(1, 0)], Some(2)));
    let o = m.ae(&EntryOp::Replace {
        e: 0,
        ior: 1,
        lines: vec![l(0, 1001)],
    });
    assert_eq!(o.problems, vec![(1, "Q03".to_string()), (1, "Q02".to_string())]);
    assert_eq!(m.ae(&EntryOp::Delete { e: 0 }).version, Some(0));
    assert_eq!(m.certs[&0].used, 0);
    assert_eq!(m.ae(&EntryOp::Delete { e: 0 }).problems, vec![(0, "E04".to_string())]);
}
