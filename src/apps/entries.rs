//! AE → AX: entry summaries whose lines claim certificates (entry-summary.md).

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::codes::Code;
use crate::envelope::{Block, Problem, ResponseWriter};
use crate::layout::{self, FieldState};
use crate::model::{Certificate, Claim, EntryState};
use crate::record::RawBatch;
use crate::store::{ClaimChange, EntryChange};
use crate::types::{CertificateNumber, Country, Date, EntryNumber, FilerCode, Hundredths, IorNumber, Unit};

use super::{sort_problems, TxnProblem};

/// Entry types eligible for quota (identifiers.md).
const ELIGIBLE_TYPES: [&[u8; 2]; 8] = [b"02", b"06", b"07", b"12", b"23", b"32", b"38", b"52"];

/// One line item: its `40` and the `50` and `52` records after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub rec40: usize,
    /// Inline: a line almost always has one `50` and one `52`, and a
    /// group's lines are parsed on one thread and freed on another.
    pub rec50: SmallVec<[usize; 1]>,
    pub rec52: SmallVec<[usize; 1]>,
    /// Index of the line's last record.
    pub last: usize,
}

/// One entry summary: a `10` and what follows up to the next `10` or the Y.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub rec10: usize,
    pub rec11: Option<usize>,
    pub lines: Vec<Line>,
}

/// Groups a block into entry summaries, reporting record identifiers that
/// cannot be AE records (X10) and records out of place (X11). Other
/// two-character records are passed over.
pub fn split(raw: &RawBatch, block: &Block, problems: &mut Vec<Problem>) -> Vec<Transaction> {
    let mut txns: Vec<Transaction> = Vec::new();
    scan(raw, block, problems, |placed| {
        if let Placed::Entry(i) = placed {
            txns.push(Transaction {
                rec10: i,
                rec11: None,
                lines: Vec::new(),
            });
            return;
        }
        // `scan` places nothing else before a `10`.
        let Some(t) = txns.last_mut() else { return };
        match placed {
            Placed::Entry(_) => {}
            Placed::Ior(i) => t.rec11 = Some(i),
            Placed::Line(i) => t.lines.push(Line {
                rec40: i,
                rec50: SmallVec::new(),
                rec52: SmallVec::new(),
                last: i,
            }),
            Placed::Tariff(i) | Placed::License(i) | Placed::Other(i) => {
                // `scan` places these only after a `40`.
                let Some(line) = t.lines.last_mut() else { return };
                match placed {
                    Placed::Tariff(_) => line.rec50.push(i),
                    Placed::License(_) => line.rec52.push(i),
                    _ => {}
                }
                line.last = i;
            }
        }
    });
    txns
}

/// The problems [`split`] reports, without building the transactions.
pub fn split_problems(raw: &RawBatch, block: &Block, problems: &mut Vec<Problem>) {
    scan(raw, block, problems, |_| {});
}

/// Where [`scan`] places a record of a block.
#[derive(Clone, Copy, Debug)]
enum Placed {
    /// A `10`: a new entry summary.
    Entry(usize),
    /// The `11` right after its `10`.
    Ior(usize),
    /// A `40`: a new line of the current entry summary.
    Line(usize),
    /// A `50` of the current line.
    Tariff(usize),
    /// A `52` of the current line.
    License(usize),
    /// Another record passed over within the current line.
    Other(usize),
}

/// The grouping rules of [`split`]: reports X10 and X11 and tells `place`
/// where every other record goes.
#[inline]
fn scan(raw: &RawBatch, block: &Block, problems: &mut Vec<Problem>, mut place: impl FnMut(Placed)) {
    // The current entry summary: its `10`, whether it has its `11`, whether it has a line.
    let mut current: Option<(usize, bool, bool)> = None;
    for i in block.details() {
        let rec = raw.record(i);
        let Some(bytes) = rec.fixed() else { continue };
        let id = [bytes[0], bytes[1]];
        if !id.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            problems.push(Problem::at(i, &rec, 1, Code::X10, "record identifier"));
            continue;
        }
        if &id == b"10" {
            current = Some((i, false, false));
            place(Placed::Entry(i));
            continue;
        }
        let Some((rec10, with11, with_line)) = current.as_mut() else {
            problems.push(Problem::at(i, &rec, 0, Code::X11, "record before the first 10"));
            continue;
        };
        match &id {
            b"11" => {
                if !*with11 && i == *rec10 + 1 {
                    *with11 = true;
                    place(Placed::Ior(i));
                } else {
                    problems.push(Problem::at(i, &rec, 0, Code::X11, "11 not right after its 10"));
                }
            }
            b"40" => {
                *with_line = true;
                place(Placed::Line(i));
            }
            b"50" | b"52" => {
                if *with_line {
                    place(if &id == b"50" {
                        Placed::Tariff(i)
                    } else {
                        Placed::License(i)
                    });
                } else {
                    problems.push(Problem::at(i, &rec, 0, Code::X11, "50 or 52 before any 40"));
                }
            }
            _ => {
                if *with_line {
                    place(Placed::Other(i));
                }
            }
        }
    }
}

/// The action of a `10` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Add,
    Replace,
    Delete,
}

/// A `50` record with a valid HTS number: the HTS number, and its three
/// quantities with their state and unit.
type Tariff = ([u8; 10], [(Option<Hundredths>, FieldState, [u8; 3]); 3]);

/// A line's claim on a certificate, as read.
#[derive(Clone, Debug)]
struct LineClaim {
    line: usize,
    line_number: u16,
    rec52: usize,
    last: usize,
    country: Country,
    number: CertificateNumber,
    license: [u8; 2],
    /// The line's `50` records with a valid HTS number: (HTS, quantities by
    /// unit); inline, as [`Line`]'s records.
    tariffs: SmallVec<[Tariff; 1]>,
    /// No field problem on any record of the line.
    clean: bool,
}

/// The fields of an entry summary, read and checked without the store.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub action: Option<Action>,
    pub entry: Option<EntryNumber>,
    pub ior: Option<IorNumber>,
    problems: Vec<TxnProblem>,
    claims: Vec<LineClaim>,
}

impl Parsed {
    /// The certificates the claims name.
    pub fn certificates(&self) -> impl Iterator<Item = (Country, CertificateNumber)> + '_ {
        self.claims.iter().map(|c| (c.country, c.number))
    }
}

/// Reads the fields of a transaction and reports their problems.
pub fn parse(raw: &RawBatch, t: &Transaction, block_filer: &[u8; 3]) -> Parsed {
    let l10 = layout::get("10");
    let r10 = raw.record(t.rec10).bytes;
    let mut problems = Vec::new();
    let at10 = |key: &str, code: Code, problems: &mut Vec<TxnProblem>| {
        problems.push(TxnProblem::new(t.rec10, l10.field(key).column(), code));
    };

    let action = match l10.get(r10, "action")[0] {
        b'A' => Some(Action::Add),
        b'R' => Some(Action::Replace),
        b'D' => Some(Action::Delete),
        _ => None,
    };
    if action.is_none() {
        at10("action", Code::E08, &mut problems);
    }
    let filer = FilerCode::parse(l10.get(r10, "filer"));
    if filer.is_none_or(|f| f.as_bytes() != block_filer) {
        at10("filer", Code::E07, &mut problems);
    }
    let entry = filer.and_then(|f| EntryNumber::parse(f, l10.get(r10, "entry_number")));
    if filer.is_some() && entry.is_none() {
        at10("entry_number", Code::E01, &mut problems);
    }
    if l10.field("port").syntax_problem(r10).is_some() {
        at10("port", Code::E13, &mut problems);
    }
    let mut parsed = Parsed {
        action,
        entry,
        ior: None,
        problems,
        claims: Vec::new(),
    };
    if !matches!(action, Some(Action::Add | Action::Replace)) {
        return parsed;
    }
    if !ELIGIBLE_TYPES.iter().any(|t| l10.get(r10, "entry_type") == &t[..]) {
        at10("entry_type", Code::E06, &mut parsed.problems);
    }
    match t.rec11 {
        Some(i) => {
            parsed.ior = IorNumber::parse(layout::get("11").get(raw.record(i).bytes, "ior"));
            if parsed.ior.is_none() {
                parsed
                    .problems
                    .push(TxnProblem::new(i, layout::get("11").field("ior").column(), Code::E05));
            }
        }
        None => parsed
            .problems
            .push(TxnProblem::new(t.rec10, 0, Code::E05).sorted_at(t.rec10, 81)),
    }
    let mut previous_line: u16 = 0;
    for line in &t.lines {
        read_line(raw, line, &mut previous_line, &mut parsed);
    }
    parsed
}

fn read_line(raw: &RawBatch, line: &Line, previous: &mut u16, parsed: &mut Parsed) {
    let (l40, l50, l52) = (layout::get("40"), layout::get("50"), layout::get("52"));
    let start = parsed.problems.len();
    let problems = &mut parsed.problems;
    let mut report = |rec: usize, column: usize, code: Code| {
        problems.push(TxnProblem::new(rec, column, code).on_line(line.rec40));
    };
    let r40 = raw.record(line.rec40).bytes;
    let line_number = crate::types::parse_digits(l40.get(r40, "line"))
        .filter(|n| (1..=999).contains(n))
        .map(|n| n as u16);
    match line_number {
        Some(n) if n > *previous => *previous = n,
        _ => report(line.rec40, l40.field("line").column(), Code::E09),
    }
    let origin = Country::parse(l40.get(r40, "origin"));
    if origin.is_none() {
        report(line.rec40, l40.field("origin").column(), Code::E10);
    }

    let mut tariffs = SmallVec::new();
    for &i in &line.rec50 {
        let r = raw.record(i).bytes;
        let hts_field = l50.field("hts");
        let hts: Option<[u8; 10]> = hts_field
            .slice(r)
            .try_into()
            .ok()
            .filter(|h: &[u8; 10]| h.iter().all(u8::is_ascii_digit));
        if hts.is_none() {
            report(i, hts_field.column(), Code::E11);
        }
        let mut quantities = [(None, FieldState::Absent, [b' '; 3]); 3];
        for (k, slot) in quantities.iter_mut().enumerate() {
            let qf = l50.field(["quantity1", "quantity2", "quantity3"][k]);
            let uf = l50.field(["unit1", "unit2", "unit3"][k]);
            let (qb, ub) = (qf.slice(r), uf.slice(r));
            let (qs, us) = (qf.state(qb), uf.state(ub));
            if qs == FieldState::Invalid || (qs == FieldState::Valid) != (us == FieldState::Valid) {
                let column = if qs == FieldState::Invalid || us != FieldState::Invalid {
                    qf.column()
                } else {
                    uf.column()
                };
                report(i, column, Code::E12);
            } else if us == FieldState::Invalid {
                report(i, uf.column(), Code::E12);
            }
            let mut unit = [b' '; 3];
            unit.copy_from_slice(ub);
            *slot = (Hundredths::parse(qb), qs, unit);
        }
        if let Some(h) = hts {
            tariffs.push((h, quantities));
        }
    }

    let mut claim: Option<(usize, [u8; 2], Option<CertificateNumber>)> = None;
    for (n, &i) in line.rec52.iter().enumerate() {
        let r = raw.record(i).bytes;
        if n > 0 {
            report(i, 0, Code::E14);
        }
        let tf = l52.field("type");
        if tf.syntax_problem(r).is_some() {
            report(i, tf.column(), Code::E15);
            continue;
        }
        let license: [u8; 2] = [tf.slice(r)[0], tf.slice(r)[1]];
        if &license != b"EX" && &license != b"CE" {
            continue;
        }
        let nf = l52.field("number");
        let number = CertificateNumber::parse(nf.slice(r));
        if number.is_none() {
            report(i, nf.column(), Code::E15);
        }
        if claim.is_none() {
            claim = Some((i, license, number));
        }
    }
    let clean = parsed.problems.len() == start;
    if let (Some((rec52, license, Some(number))), Some(country), Some(line_number)) = (claim, origin, line_number) {
        parsed.claims.push(LineClaim {
            line: line.rec40,
            line_number,
            rec52,
            last: line.last,
            country,
            number,
            license,
            tariffs,
            clean,
        });
    }
}

/// What the store holds about a certificate a claim names (lent by the
/// store's ledger, not copied).
#[derive(Clone, Debug)]
pub enum CertLookup<'c> {
    Found(&'c Certificate),
    /// The number is on file, but only for another country (Q11).
    OtherCountry,
    Missing,
}

/// A claim applied, for its C00 record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub rec52: usize,
    pub line: usize,
    pub remaining: Hundredths,
    pub unit: Unit,
}

/// The rules' verdict on one entry summary.
#[derive(Clone, Debug)]
pub struct Decision {
    pub problems: Vec<TxnProblem>,
    pub change: Option<EntryChange>,
    pub applied: Vec<Applied>,
}

/// Applies the rules of entry-summary.md and rules.md.
///
/// `state` is the entry on file (if any) and `old` its claims in force;
/// `certs` answers for every certificate the claims name. Transactions are
/// evaluated one after the other, each against the state the ones before left.
pub fn evaluate(
    t: &Transaction,
    mut parsed: Parsed,
    state: Option<&EntryState>,
    old: &[Claim],
    certs: &FxHashMap<(Country, CertificateNumber), CertLookup<'_>>,
    business_date: Date,
) -> Decision {
    let l10 = layout::get("10");
    let entry_column = l10.field("entry_number").column();
    let mut problems = std::mem::take(&mut parsed.problems);
    if parsed.entry.is_some() {
        let code = match (parsed.action, state) {
            (Some(Action::Add), Some(s)) if s.deleted => Some(Code::E04),
            (Some(Action::Add), Some(_)) => Some(Code::E02),
            (Some(Action::Replace | Action::Delete), None) => Some(Code::E03),
            (Some(Action::Replace | Action::Delete), Some(s)) if s.deleted => Some(Code::E04),
            _ => None,
        };
        if let Some(code) = code {
            problems.push(TxnProblem::new(t.rec10, entry_column, code));
        }
    }
    let replacing = parsed.action == Some(Action::Replace);
    let mut old_on: FxHashMap<i64, Hundredths> = FxHashMap::default();
    if replacing {
        for c in old {
            let e = old_on.entry(c.certificate).or_default();
            *e = e.checked_add(c.quantity).unwrap_or(Hundredths::new(u64::MAX));
        }
    }

    // First pass: the claimed quantity of each line, and the entry's new total per certificate.
    struct Derived<'a> {
        claim: &'a LineClaim,
        cert: Option<&'a Certificate>,
        quantity: Option<Hundredths>,
        problems: Vec<Code>,
    }
    let mut derived: Vec<Derived<'_>> = Vec::new();
    let mut new_total: FxHashMap<i64, Hundredths> = FxHashMap::default();
    for claim in &parsed.claims {
        let mut d = Derived {
            claim,
            cert: None,
            quantity: None,
            problems: Vec::new(),
        };
        match certs.get(&(claim.country, claim.number)) {
            Some(&CertLookup::Found(cert)) => {
                d.cert = Some(cert);
                if cert.terms.program.license_type() != &claim.license {
                    d.problems.push(Code::Q12);
                }
                match claim.tariffs.iter().find(|(hts, _)| cert.terms.hts.covers(hts)) {
                    None => d.problems.push(Code::Q06),
                    Some((_, quantities)) => {
                        match quantities
                            .iter()
                            .find(|(_, _, unit)| unit == cert.terms.unit.as_bytes())
                        {
                            None => d.problems.push(Code::Q07),
                            Some((q, state, _)) => match (q, state) {
                                (Some(q), _) if q.get() > 0 => d.quantity = Some(*q),
                                (_, FieldState::Invalid) => {}
                                _ => d.problems.push(Code::Q08),
                            },
                        }
                    }
                }
                if let Some(q) = d.quantity {
                    let e = new_total.entry(cert.id).or_default();
                    *e = e.checked_add(q).unwrap_or(Hundredths::new(u64::MAX));
                }
            }
            Some(CertLookup::OtherCountry) => d.problems.push(Code::Q11),
            Some(CertLookup::Missing) | None => d.problems.push(Code::Q01),
        }
        derived.push(d);
    }

    // Second pass: the certificate's standing, then the balance.
    let mut running: FxHashMap<i64, Hundredths> = FxHashMap::default();
    let mut applied = Vec::new();
    let mut debits = Vec::new();
    for d in &mut derived {
        let Some(cert) = d.cert else { continue };
        let kept = replacing
            && new_total.get(&cert.id).copied().unwrap_or_default()
                <= old_on.get(&cert.id).copied().unwrap_or_default();
        if cert.cancelled && !kept {
            d.problems.push(Code::Q03);
        }
        if business_date > cert.terms.expires && !kept {
            d.problems.push(Code::Q04);
        }
        if business_date < cert.terms.issued {
            d.problems.push(Code::Q10);
        }
        if cert.terms.quota_year != business_date.year && !kept {
            d.problems.push(Code::Q09);
        }
        if parsed.ior.is_some_and(|ior| ior != cert.terms.ior) {
            d.problems.push(Code::Q02);
        }
        if !d.claim.clean || !d.problems.is_empty() {
            continue;
        }
        let Some(q) = d.quantity else { continue };
        let available = cert
            .remaining()
            .checked_add(old_on.get(&cert.id).copied().unwrap_or_default());
        let sum = running.get(&cert.id).copied().unwrap_or_default().checked_add(q);
        match (available, sum) {
            (Some(available), Some(sum)) if sum <= available => {
                running.insert(cert.id, sum);
                applied.push(Applied {
                    rec52: d.claim.rec52,
                    line: d.claim.line,
                    remaining: available.checked_sub(sum).unwrap_or_default(),
                    unit: cert.terms.unit,
                });
                debits.push(ClaimChange {
                    line: d.claim.line_number,
                    certificate: cert.id,
                    quantity: q,
                    version: 0,
                });
            }
            _ => d.problems.push(Code::Q05),
        }
    }
    for d in &derived {
        for &code in &d.problems {
            problems.push(
                TxnProblem::new(d.claim.rec52, 0, code)
                    .on_line(d.claim.line)
                    .sorted_at(d.claim.last, 81),
            );
        }
    }
    sort_problems(&mut problems);

    let mut decision = Decision {
        problems,
        change: None,
        applied: Vec::new(),
    };
    if !decision.problems.is_empty() {
        return decision;
    }
    let (Some(action), Some(entry)) = (parsed.action, parsed.entry) else {
        return decision;
    };
    let credits = |old: &[Claim]| -> Vec<ClaimChange> {
        old.iter()
            .map(|c| ClaimChange {
                line: c.line,
                certificate: c.certificate,
                quantity: c.quantity,
                version: c.version,
            })
            .collect()
    };
    let change = match action {
        Action::Add => EntryChange {
            entry,
            version: 1,
            deleted: false,
            ior: parsed.ior,
            credits: Vec::new(),
            debits,
            date: business_date,
        },
        Action::Replace => EntryChange {
            entry,
            version: state.map(|s| s.version).unwrap_or(0) + 1,
            deleted: false,
            ior: parsed.ior,
            credits: credits(old),
            debits,
            date: business_date,
        },
        Action::Delete => EntryChange {
            entry,
            version: state.map(|s| s.version).unwrap_or(0),
            deleted: true,
            ior: None,
            credits: credits(old),
            debits: Vec::new(),
            date: business_date,
        },
    };
    let mut change = change;
    let version = change.version;
    for d in &mut change.debits {
        d.version = version;
    }
    decision.change = Some(change);
    decision.applied = applied;
    decision
}

/// Writes the E0/E1 records of one entry summary.
pub fn render(raw: &RawBatch, t: &Transaction, d: &Decision, w: &mut ResponseWriter) {
    let (l10, l40, e0, e1) = (
        layout::get("10"),
        layout::get("40"),
        layout::get("E0"),
        layout::get("E1"),
    );
    let r10 = raw.record(t.rec10).bytes;
    let filer = l10.get(r10, "filer");
    let number = l10.get(r10, "entry_number");
    // The entry's own fields filled once, and the fields that vary looked up
    // once: an accepted line costs two records.
    let reference_of_entry = e0.blank().as_read("filer", filer).as_read("entry_number", number);
    let (kind, line_field, record_field, line_of_40) = (
        e0.field("kind"),
        e0.field("line"),
        e0.field("record"),
        l40.field("line"),
    );
    let reference = |line: Option<usize>, record: usize| {
        match line {
            Some(l) => reference_of_entry
                .text_in(kind, b"LINE  ")
                .as_read_in(line_field, line_of_40.slice(raw.record(l).bytes)),
            None => reference_of_entry.text_in(kind, b"SUMMRY"),
        }
        .number_in(record_field, record as u64 + 1)
        .finish()
    };
    let condition_of_entry = e1.blank().as_read("filer", filer).as_read("entry_number", number);
    let (disposition_field, severity_field, code_field, narrative_field, version_field) = (
        e1.field("disposition"),
        e1.field("severity"),
        e1.field("code"),
        e1.field("narrative"),
        e1.field("version"),
    );
    let condition = |disposition: &[u8], severity: &[u8], code: Code, narrative: &[u8], version: u32| {
        condition_of_entry
            .text_in(disposition_field, disposition)
            .text_in(severity_field, severity)
            .text_in(code_field, code.as_str().as_bytes())
            .text_in(narrative_field, narrative)
            .number_in(version_field, u64::from(version))
            .finish()
    };
    w.detail(reference(None, t.rec10));
    for p in &d.problems {
        w.detail(reference(p.line, p.record));
        w.detail(condition(b" ", b"F", p.code, p.code.narrative().as_bytes(), 0));
    }
    match &d.change {
        Some(change) => {
            // "…, LEFT 1234.50 KG", built in one buffer for all the claims.
            let mut narrative = Vec::with_capacity(64);
            for a in &d.applied {
                w.detail(reference(Some(a.line), a.rec52));
                narrative.clear();
                narrative.extend_from_slice(Code::C00.narrative().as_bytes());
                narrative.extend_from_slice(b", LEFT ");
                a.remaining.push_decimal(&mut narrative);
                narrative.push(b' ');
                narrative.extend_from_slice(a.unit.as_str().as_bytes());
                w.detail(condition(b" ", b"I", Code::C00, &narrative, 0));
            }
            let version = if change.deleted { 0 } else { change.version };
            w.detail(condition(
                b"A",
                b" ",
                Code::EntryAccepted,
                Code::EntryAccepted.narrative().as_bytes(),
                version,
            ));
        }
        None => w.detail(condition(
            b"R",
            b"F",
            Code::EntryRejected,
            Code::EntryRejected.narrative().as_bytes(),
            0,
        )),
    }
}
