//! EC → EZ (importer usage) and GQ → GR (country usage) queries (queries.md).
//!
//! Checking a query is pure; the engine answers it from the store and the
//! records are written here.

use crate::codes::Code;
use crate::envelope::{Block, Problem, ResponseWriter};
use crate::layout::{self, FieldState, Layout};
use crate::model::{Certificate, UsageEvent};
use crate::record::RawBatch;
use crate::store::UsageCondition;
use crate::types::{CertificateNumber, Country, Date, IorNumber};

/// The query records of a block: anything but `id` is X10; filler must be blank.
pub fn split(raw: &RawBatch, block: &Block, id: &[u8; 2], problems: &mut Vec<Problem>) -> Vec<usize> {
    let layout = layout::get(std::str::from_utf8(id).unwrap_or("C1"));
    let filler = layout.field("filler");
    let mut out = Vec::new();
    for i in block.details() {
        let rec = raw.record(i);
        let Some(bytes) = rec.fixed() else { continue };
        if &bytes[..2] != id {
            problems.push(Problem::at(i, &rec, 1, Code::X10, "record identifier"));
            continue;
        }
        if filler.state(filler.slice(bytes)) == FieldState::Invalid {
            problems.push(Problem::at_field(i, &rec, filler, Code::X02));
        }
        out.push(i);
    }
    out
}

/// A valid importer usage query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImporterQuery {
    /// Every certificate naming the IOR, optionally of one quota year.
    ByIor { ior: IorNumber, quota_year: Option<u16> },
    /// One certificate, which must name the IOR.
    One {
        ior: IorNumber,
        country: Country,
        number: CertificateNumber,
    },
}

/// A query's problems, each with the column it sorts at.
#[derive(Clone, Debug, Default)]
pub struct Refusal(pub Vec<(usize, Code)>);

impl Refusal {
    fn add(&mut self, layout: &Layout, key: &str, code: Code) {
        let column = layout.field(key).column();
        if !self.0.contains(&(column, code)) {
            self.0.push((column, code));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn codes(&self) -> Vec<Code> {
        let mut v = self.0.clone();
        v.sort();
        v.dedup_by_key(|p| p.1);
        v.into_iter().map(|(_, c)| c).collect()
    }
}

fn quota_year(bytes: &[u8]) -> Option<u16> {
    crate::types::parse_digits(bytes)
        .filter(|y| (1900..=2999).contains(y))
        .map(|y| y as u16)
}

/// Checks a C1 record. `may_query` tells whether the block's filer may see
/// an IOR; `names_ior` whether a certificate is on file naming the IOR.
/// Nothing about an IOR's certificates is looked at unless access is granted.
pub fn check_importer(
    rec: &[u8],
    may_query: &mut dyn FnMut(&IorNumber) -> bool,
    names_ior: &mut dyn FnMut(Country, CertificateNumber, &IorNumber) -> bool,
) -> Result<ImporterQuery, Refusal> {
    let c1 = layout::get("C1");
    let mut refusal = Refusal::default();
    let kind = c1.get(rec, "kind")[0];
    if !matches!(kind, b'I' | b'C') {
        refusal.add(c1, "kind", Code::R01);
    }
    let ior = IorNumber::parse(c1.get(rec, "ior"));
    let authorized = match &ior {
        None => {
            refusal.add(c1, "ior", Code::R02);
            false
        }
        Some(ior) => {
            let ok = may_query(ior);
            if !ok {
                refusal.add(c1, "ior", Code::R03);
            }
            ok
        }
    };
    let mut one = None;
    if kind == b'C' {
        let country = Country::parse(c1.get(rec, "country"));
        let number = CertificateNumber::parse(c1.get(rec, "number"));
        if country.is_none() {
            refusal.add(c1, "country", Code::R08);
        }
        if number.is_none() {
            refusal.add(c1, "number", Code::R08);
        }
        if let (Some(country), Some(number), Some(ior), true) = (country, number, &ior, authorized) {
            if names_ior(country, number, ior) {
                one = Some((country, number));
            } else {
                refusal.add(c1, "number", Code::R04);
            }
        }
    }
    let year_field = c1.field("quota_year");
    let year = match year_field.state(year_field.slice(rec)) {
        FieldState::Absent => None,
        _ => match quota_year(year_field.slice(rec)) {
            Some(y) => Some(y),
            None => {
                refusal.add(c1, "quota_year", Code::R09);
                None
            }
        },
    };
    if !refusal.is_empty() {
        return Err(refusal);
    }
    match (kind, ior, one) {
        (b'I', Some(ior), _) => Ok(ImporterQuery::ByIor { ior, quota_year: year }),
        (b'C', Some(ior), Some((country, number))) => Ok(ImporterQuery::One { ior, country, number }),
        _ => {
            refusal.add(c1, "kind", Code::R01);
            Err(refusal)
        }
    }
}

/// A valid country usage query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountryQuery {
    One {
        country: Country,
        number: CertificateNumber,
    },
    ByCondition {
        country: Country,
        condition: UsageCondition,
        issued_from: Option<Date>,
        issued_to: Option<Date>,
    },
}

/// Checks a Q1 record against the sender's country. `on_file` tells whether
/// one of the sender's own certificates exists.
pub fn check_country(
    rec: &[u8],
    sender_country: Country,
    on_file: &mut dyn FnMut(Country, CertificateNumber) -> bool,
) -> Result<CountryQuery, Refusal> {
    let q1 = layout::get("Q1");
    let mut refusal = Refusal::default();
    let kind = q1.get(rec, "kind")[0];
    if !matches!(kind, b'C' | b'S') {
        refusal.add(q1, "kind", Code::R01);
    }
    let country = Country::parse(q1.get(rec, "country")).filter(|c| *c == sender_country);
    if country.is_none() {
        refusal.add(q1, "country", Code::R05);
    }
    match kind {
        b'C' => {
            let number = CertificateNumber::parse(q1.get(rec, "number"));
            match (country, number) {
                (_, None) => refusal.add(q1, "number", Code::R08),
                (Some(country), Some(number)) => {
                    if !on_file(country, number) {
                        refusal.add(q1, "number", Code::R04);
                    } else if refusal.is_empty() {
                        return Ok(CountryQuery::One { country, number });
                    }
                }
                (None, Some(_)) => {}
            }
            Err(refusal)
        }
        b'S' => {
            let condition = match q1.get(rec, "condition") {
                b"10" => Some(UsageCondition::Matched),
                b"11" => Some(UsageCondition::Unmatched),
                b"12" => Some(UsageCondition::Cancelled),
                _ => None,
            };
            if condition.is_none() {
                refusal.add(q1, "condition", Code::R06);
            }
            let date = |key: &str, refusal: &mut Refusal| -> Option<Date> {
                let f = q1.field(key);
                match f.state(f.slice(rec)) {
                    FieldState::Absent => None,
                    _ => {
                        let d = Date::parse_ccyymmdd(f.slice(rec));
                        if d.is_none() {
                            refusal.add(q1, key, Code::R07);
                        }
                        d
                    }
                }
            };
            let issued_from = date("issued_from", &mut refusal);
            let issued_to = date("issued_to", &mut refusal);
            if let (Some(f), Some(t)) = (issued_from, issued_to) {
                if f > t {
                    refusal.add(q1, "issued_to", Code::R07);
                }
            }
            match (country, condition) {
                (Some(country), Some(condition)) if refusal.is_empty() => Ok(CountryQuery::ByCondition {
                    country,
                    condition,
                    issued_from,
                    issued_to,
                }),
                _ => Err(refusal),
            }
        }
        _ => Err(refusal),
    }
}

/// Writes the C0 record of a query answer.
pub fn render_reference(rec: &[u8], importer: bool, count: u64, w: &mut ResponseWriter) {
    let c0 = layout::get("C0");
    let out = if importer {
        let c1 = layout::get("C1");
        c0.blank()
            .as_read("kind", c1.get(rec, "kind"))
            .as_read("ior", c1.get(rec, "ior"))
            .as_read("country", c1.get(rec, "country"))
            .as_read("number", c1.get(rec, "number"))
    } else {
        let q1 = layout::get("Q1");
        c0.blank()
            .as_read("kind", q1.get(rec, "kind"))
            .as_read("country", q1.get(rec, "country"))
            .as_read("number", q1.get(rec, "number"))
    };
    w.detail(out.number("count", count).finish());
}

/// Writes the C9 records of a refused query.
pub fn render_refusal(refusal: &Refusal, w: &mut ResponseWriter) {
    let c9 = layout::get("C9");
    for code in refusal.codes() {
        w.detail(
            c9.blank()
                .text("disposition", b"R")
                .text("severity", b"F")
                .text("code", code.as_str().as_bytes())
                .text("narrative", code.narrative().as_bytes())
                .finish(),
        );
    }
}

/// Writes the C2, C4 and C3 records of one certificate.
pub fn render_certificate(cert: &Certificate, events: &[UsageEvent], business_date: Date, w: &mut ResponseWriter) {
    let (c2, c3, c4) = (layout::get("C2"), layout::get("C3"), layout::get("C4"));
    let t = &cert.terms;
    w.detail(
        c2.blank()
            .text("country", t.country.as_bytes())
            .text("number", t.number.as_bytes())
            .text("program", &[t.program.code()])
            .text("hts", t.hts.as_bytes())
            .text("unit", t.unit.as_bytes())
            .number("certified", t.certified.get())
            .number("used", cert.used.get())
            .number("remaining", cert.remaining().get())
            .number("expiry_date", u64::from(t.expires.ccyymmdd()))
            .text("status", &[cert.status(business_date)])
            .number("quota_year", u64::from(t.quota_year))
            .finish(),
    );
    w.detail(
        c4.blank()
            .text("ior", t.ior.as_bytes())
            .number("issue_date", u64::from(t.issued.ccyymmdd()))
            .text("exporter", t.exporter.as_bytes())
            .finish(),
    );
    // A large answer is mostly C3 records: fields looked up once.
    let blank = c3.blank();
    let [filer, entry, line, kind, quantity, date, version] =
        ["filer", "entry_number", "line", "kind", "quantity", "date", "version"].map(|k| c3.field(k));
    for e in events {
        w.detail(
            blank
                .text_in(filer, e.entry.filer.as_bytes())
                .text_in(entry, e.entry.digits())
                .number_in(line, u64::from(e.line))
                .text_in(kind, &[e.kind.code()])
                .number_in(quantity, e.quantity.get())
                .number_in(date, u64::from(e.date.ccyymmdd()))
                .number_in(version, u64::from(e.version))
                .finish(),
        );
    }
}
