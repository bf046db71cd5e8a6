//! GT → GS: countries add, replace and cancel certificates (certificates.md).

use crate::codes::Code;
use crate::envelope::{Block, Problem, ResponseWriter};
use crate::layout::{self, FieldState, Layout};
use crate::model::{Certificate, CertificateTerms};
use crate::record::RawBatch;
use crate::types::{CertificateNumber, Country, Date, HtsCoverage, Hundredths, IorNumber, Program, Unit};

use super::TxnProblem;

/// One G1 with its optional G2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// 0-based index of the G1 record in the batch.
    pub g1: usize,
    pub g2: Option<usize>,
}

fn layouts() -> (&'static Layout, &'static Layout) {
    (layout::get("G1"), layout::get("G2"))
}

/// Groups a block's records into transactions, reporting record identifiers
/// other than G1/G2 (X10), a G2 out of place (X11) and filler (X02).
pub fn split(raw: &RawBatch, block: &Block, problems: &mut Vec<Problem>) -> Vec<Transaction> {
    let (g1, g2) = layouts();
    let mut txns: Vec<Transaction> = Vec::new();
    for i in block.details() {
        let rec = raw.record(i);
        let Some(bytes) = rec.fixed() else { continue };
        match &bytes[..2] {
            b"G1" => {
                check_filler(g1, i, &rec, problems);
                txns.push(Transaction { g1: i, g2: None });
            }
            b"G2" => {
                check_filler(g2, i, &rec, problems);
                let allowed = match txns.last() {
                    Some(t) if t.g2.is_none() => raw.record(t.g1).bytes.get(2) != Some(&b'X'),
                    _ => false,
                };
                match txns.last_mut() {
                    Some(t) if allowed => t.g2 = Some(i),
                    _ => problems.push(Problem::at(i, &rec, 0, Code::X11, "G2 without its G1")),
                }
            }
            _ => problems.push(Problem::at(i, &rec, 1, Code::X10, "record identifier")),
        }
    }
    txns
}

fn check_filler(layout: &Layout, i: usize, rec: &crate::record::Record<'_>, problems: &mut Vec<Problem>) {
    let f = layout.field("filler");
    if f.state(f.slice(rec.bytes)) == FieldState::Invalid {
        problems.push(Problem::at_field(i, rec, f, Code::X02));
    }
}

/// The certificate a transaction is about, when its country and number are readable.
pub fn key(raw: &RawBatch, t: &Transaction) -> Option<(Country, CertificateNumber)> {
    let g1 = layout::get("G1");
    let rec = raw.record(t.g1).bytes;
    Some((
        Country::parse(g1.get(rec, "country"))?,
        CertificateNumber::parse(g1.get(rec, "number"))?,
    ))
}

/// What a transaction does to the store when accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Add(CertificateTerms),
    Replace { id: i64, terms: CertificateTerms },
    Cancel { id: i64 },
}

/// The rules' verdict on one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub problems: Vec<TxnProblem>,
    pub effect: Option<Effect>,
    /// Remaining quantity after the action (for the final S1).
    pub remaining: Hundredths,
}

/// Applies the rules of certificates.md to one transaction. `existing` is the
/// certificate on file under the transaction's key, if any.
pub fn evaluate(raw: &RawBatch, t: &Transaction, sender_country: Country, existing: Option<&Certificate>) -> Decision {
    let (g1, g2) = layouts();
    let rec = raw.record(t.g1).bytes;
    let mut problems = Vec::new();
    let mut report = |key: &str, code: Code| {
        let f = g1.field(key);
        problems.push(TxnProblem::new(t.g1, f.column(), code));
    };

    let action = g1.get(rec, "action")[0];
    if !matches!(action, b'A' | b'R' | b'X') {
        report("action", Code::G08);
    }
    let country = Country::parse(g1.get(rec, "country"));
    let country_ok = country == Some(sender_country);
    if !country_ok {
        report("country", Code::G06);
    }
    let number = CertificateNumber::parse(g1.get(rec, "number"));
    if number.is_none() {
        report("number", Code::G07);
    }
    // The state of the certificate is looked at only for the sender's own country.
    let on_file = if country_ok && number.is_some() { existing } else { None };
    if country_ok && number.is_some() {
        match (action, on_file) {
            (b'A', Some(_)) => report("number", Code::G03),
            (b'R' | b'X', None) => report("number", Code::G04),
            (b'R' | b'X', Some(c)) if c.cancelled => report("number", Code::G05),
            _ => {}
        }
    }

    let mut terms = None;
    if matches!(action, b'A' | b'R') {
        let program = Program::parse(g1.get(rec, "program")[0]);
        if program.is_none() {
            report("program", Code::G09);
        }
        let hts = HtsCoverage::parse(g1.get(rec, "hts"));
        if hts.is_none() {
            report("hts", Code::G10);
        }
        let certified = Hundredths::parse(g1.get(rec, "quantity")).filter(|q| q.get() > 0);
        match certified {
            None => report("quantity", Code::G11),
            Some(q) => {
                if let Some(c) = on_file.filter(|_| action == b'R') {
                    if q < c.used {
                        report("quantity", Code::G17);
                    }
                }
            }
        }
        let unit = Unit::parse(g1.get(rec, "unit"));
        match unit {
            None => report("unit", Code::G12),
            Some(u) => {
                if let Some(c) = on_file.filter(|_| action == b'R') {
                    if u != c.terms.unit && c.used > Hundredths::ZERO {
                        report("unit", Code::G18);
                    }
                }
            }
        }
        let issued = Date::parse_ccyymmdd(g1.get(rec, "issue_date"));
        if issued.is_none() {
            report("issue_date", Code::G13);
        }
        let expires = Date::parse_ccyymmdd(g1.get(rec, "expiry_date")).filter(|e| issued.is_none_or(|i| *e >= i));
        if expires.is_none() {
            report("expiry_date", Code::G14);
        }
        let quota_year = crate::types::parse_digits(g1.get(rec, "quota_year"))
            .filter(|y| (1900..=2999).contains(y))
            .map(|y| y as u16);
        if quota_year.is_none() {
            report("quota_year", Code::G15);
        }
        let ior_field = g1.field("ior");
        let ior = IorNumber::parse(ior_field.slice(rec));
        if ior.is_none() {
            let code = if ior_field.state(ior_field.slice(rec)) == FieldState::Absent {
                Code::G01
            } else {
                Code::G02
            };
            report("ior", code);
        }
        let exporter = match t.g2 {
            Some(i) => {
                let name = g2.get(raw.record(i).bytes, "exporter");
                if name.iter().all(|&b| b == b' ') {
                    problems.push(TxnProblem::new(i, g2.field("exporter").column(), Code::G16));
                    None
                } else {
                    Some(String::from_utf8_lossy(name).trim_end().to_string())
                }
            }
            None if action == b'A' => {
                // The missing G2 is where it should have been: after the G1's fields.
                problems.push(TxnProblem::new(t.g1, 0, Code::G16).sorted_at(t.g1, 81));
                None
            }
            None => on_file.map(|c| c.terms.exporter.clone()),
        };
        if let (Some(country), Some(number), Some(program), Some(hts), Some(certified), Some(unit)) =
            (country, number, program, hts, certified, unit)
        {
            if let (Some(issued), Some(expires), Some(quota_year), Some(ior), Some(exporter)) =
                (issued, expires, quota_year, ior, exporter)
            {
                terms = Some(CertificateTerms {
                    country,
                    number,
                    program,
                    hts,
                    certified,
                    unit,
                    issued,
                    expires,
                    quota_year,
                    ior,
                    exporter,
                });
            }
        }
    }

    let mut d = Decision {
        problems,
        effect: None,
        remaining: Hundredths::ZERO,
    };
    if !d.problems.is_empty() {
        super::sort_problems(&mut d.problems);
        return d;
    }
    match (action, terms, on_file) {
        (b'A', Some(terms), None) => {
            d.remaining = terms.certified;
            d.effect = Some(Effect::Add(terms));
        }
        (b'R', Some(terms), Some(c)) => {
            d.remaining = terms.certified.checked_sub(c.used).unwrap_or(Hundredths::ZERO);
            d.effect = Some(Effect::Replace { id: c.id, terms });
        }
        (b'X', _, Some(c)) => {
            d.remaining = c.remaining();
            d.effect = Some(Effect::Cancel { id: c.id });
        }
        // Unreachable when the checks above pass; refuse rather than guess.
        _ => d.problems.push(TxnProblem::new(t.g1, 0, Code::G08)),
    }
    d
}

/// Writes the S1 records of one transaction.
pub fn render(raw: &RawBatch, t: &Transaction, d: &Decision, w: &mut ResponseWriter) {
    let (g1, s1) = (layout::get("G1"), layout::get("S1"));
    let rec = raw.record(t.g1).bytes;
    let base = || {
        s1.blank()
            .as_read("country", g1.get(rec, "country"))
            .as_read("number", g1.get(rec, "number"))
            .as_read("action", g1.get(rec, "action"))
    };
    for p in &d.problems {
        w.detail(
            base()
                .text("severity", b"F")
                .text("code", p.code.as_str().as_bytes())
                .text("narrative", p.code.narrative().as_bytes())
                .finish(),
        );
    }
    let last = if d.problems.is_empty() {
        base()
            .text("disposition", b"A")
            .text("code", Code::CertificateAccepted.as_str().as_bytes())
            .text("narrative", Code::CertificateAccepted.narrative().as_bytes())
            .number("remaining", d.remaining.get())
    } else {
        base()
            .text("disposition", b"R")
            .text("severity", b"F")
            .text("code", Code::CertificateRejected.as_str().as_bytes())
            .text("narrative", Code::CertificateRejected.narrative().as_bytes())
    };
    w.detail(last.finish());
}
