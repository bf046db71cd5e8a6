//! Helpers shared by the application tests (certificates, entries, queries,
//! duplicate batches, ledger model, concurrency).
//!
//! Inputs are built field by field from the layouts of the spec (not from
//! the program's own layout tables), padded to 80 characters, in A/B…Y/Z
//! envelopes whose Y counts the detail records. Expected response records are
//! built the same way, independently of the program's renderer, so a test
//! compares the program against the spec and not against itself.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ecertd::engine::{Engine, Session};
use ecertd::envelope::{Channel, SenderKind};
use ecertd::model::{Certificate, Sender};
use ecertd::store::{Store, StoreError, Sync};
use ecertd::types::{CertificateNumber, Country, Date, FilerCode};

/// The business date of the spec examples.
pub fn date() -> Date {
    Date::new(2026, 3, 15).unwrap()
}

pub fn ymd(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

/// The IOR numbers used throughout.
pub const IOR_A: &str = "12-3456789AB";
pub const IOR_B: &str = "98-7654321CD";
pub const IOR_C: &str = "073802-00093";

// ---------------------------------------------------------------- fields --

/// `value` left-justified in `len` characters (panics if it does not fit).
pub fn fit(value: &str, len: usize) -> String {
    assert!(value.len() <= len, "{value:?} is longer than {len}");
    format!("{value:<len$}")
}

/// `value` right-justified, zero-filled in `len` digits.
pub fn num(value: u64, len: usize) -> String {
    let s = format!("{value:0len$}");
    assert_eq!(s.len(), len, "{value} does not fit in {len} digits");
    s
}

/// A record padded with spaces to 80 characters.
pub fn pad(s: &str) -> String {
    assert!(s.len() <= 80, "record longer than 80: {s:?}");
    assert!(s.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    format!("{s:<80}")
}

/// MMDDYY of a date.
pub fn mmddyy(d: Date) -> String {
    format!("{:02}{:02}{:02}", d.month, d.day, d.year % 100)
}

/// CCYYMMDD of a date.
pub fn ccyymmdd(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year, d.month, d.day)
}

// ------------------------------------------------------- entry numbers --

/// The check digit of identifiers.md, written from its text.
pub fn check_digit(filer: &str, digits7: &str) -> u32 {
    assert_eq!(filer.len(), 3);
    assert_eq!(digits7.len(), 7);
    let value = |c: char| -> u32 {
        if let Some(d) = c.to_digit(10) {
            return d;
        }
        // A..I = 1..9, J..R = 1..9, S..Z = 2..9
        let i = c as u32 - 'A' as u32;
        match i {
            0..=8 => i + 1,
            9..=17 => i - 8,
            _ => i - 16,
        }
    };
    let mut total = 0;
    for (k, c) in filer.chars().chain(digits7.chars()).enumerate() {
        let v = value(c);
        if k % 2 == 0 {
            total += v;
        } else {
            let mut p = v * 2;
            if p > 9 {
                p += 1;
            }
            total += p % 10;
        }
    }
    (10 - total % 10) % 10
}

/// Positions 9-16 of a `10` record: the 7 digits and their check digit.
pub fn entry_no(filer: &str, digits7: &str) -> String {
    format!("{digits7}{}", check_digit(filer, digits7))
}

// ------------------------------------------------------------ envelope --

/// An input batch: one A, blocks of (filer, detail records), one Z.
pub struct BatchSpec<'a> {
    pub sender: &'a str,
    pub password: &'a str,
    pub app: &'a str,
    pub reference: &'a str,
    pub blocks: Vec<(&'a str, Vec<String>)>,
}

pub fn a_in(sender: &str, password: &str, app: &str, reference: &str) -> String {
    pad(&format!(
        "A1001{}{}031526     {}{}  {}{}",
        fit(sender, 3),
        fit(password, 6),
        fit(app, 2),
        " ".repeat(10),
        " ".repeat(20),
        fit(reference, 21)
    ))
}

pub fn b_in(filer: &str, app: &str) -> String {
    pad(&format!("B  2704{}{}", fit(filer, 3), app))
}

pub fn y_in(filer: &str, app: &str, count: usize) -> String {
    pad(&format!("Y  2704{}{}{}", fit(filer, 3), app, num(count as u64, 5)))
}

pub fn z_in(sender: &str) -> String {
    pad(&format!("Z1001{}      031526", fit(sender, 3)))
}

impl BatchSpec<'_> {
    pub fn records(&self) -> Vec<String> {
        let mut v = vec![a_in(self.sender, self.password, self.app, self.reference)];
        for (filer, details) in &self.blocks {
            v.push(b_in(filer, self.app));
            for d in details {
                assert_eq!(d.len(), 80, "detail record not 80: {d:?}");
                v.push(d.clone());
            }
            v.push(y_in(filer, self.app, details.len()));
        }
        v.push(z_in(self.sender));
        v
    }

    /// The batch as bytes, each record followed by LF.
    pub fn bytes(&self) -> Vec<u8> {
        join(&self.records()).into_bytes()
    }
}

/// Records joined with LF after each.
pub fn join(records: &[String]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(r);
        s.push('\n');
    }
    s
}

/// The demo senders: (id, password, kind, country).
pub const SENDERS: &[(&str, &str, &str, &str)] = &[
    ("AU1", "PWAU01", "country", "AU"),
    ("NZ1", "PWNZ01", "country", "NZ"),
    ("MX1", "PWMX01", "country", "MX"),
    ("ABC", "PWABC1", "broker", ""),
    ("DEF", "PWDEF1", "broker", ""),
];

pub fn password(sender: &str) -> &'static str {
    SENDERS.iter().find(|s| s.0 == sender).map(|s| s.1).unwrap()
}

pub fn register_senders(store: &mut Store) {
    for (id, pw, kind, country) in SENDERS {
        let sender = Sender {
            id: id.to_string(),
            kind: if *kind == "broker" {
                SenderKind::Broker
            } else {
                SenderKind::Country
            },
            country: Country::parse(country.as_bytes()),
            filers: vec![],
        };
        store.add_sender(&sender, pw).unwrap();
    }
}

// ------------------------------------------------- expected responses --

/// Response application of an input application.
pub fn response_app(app: &str) -> &'static str {
    match app {
        "GT" => "GS",
        "GQ" => "GR",
        "AE" => "AX",
        "EC" => "EZ",
        _ => panic!("app {app}"),
    }
}

pub fn a_out(sender: &str, app: &str, reference: &str, d: Date) -> String {
    pad(&format!(
        "A1001{}      {}     {}{}  {}{}",
        fit(sender, 3),
        mmddyy(d),
        app,
        " ".repeat(10),
        " ".repeat(20),
        fit(reference, 21)
    ))
}

pub fn b_out(filer: &str, app: &str) -> String {
    pad(&format!("B  2704{}{}", fit(filer, 3), app))
}

pub fn y_out(filer: &str, app: &str, count: usize) -> String {
    pad(&format!("Y  2704{}{}{}", fit(filer, 3), app, num(count as u64, 5)))
}

pub fn z_out(sender: &str, d: Date) -> String {
    pad(&format!("Z1001{}      {}", fit(sender, 3), mmddyy(d)))
}

/// The whole response to a one-block batch with these detail records.
pub fn response(sender: &str, app_in: &str, reference: &str, filer: &str, details: &[String], d: Date) -> String {
    let app = response_app(app_in);
    let mut v = vec![a_out(sender, app, reference, d), b_out(filer, app)];
    v.extend(details.iter().cloned());
    v.push(y_out(filer, app, details.len()));
    v.push(z_out(sender, d));
    join(&v)
}

/// A batch rejection: A, blank B, X0/X1 pairs, final X1 999, Y, Z.
pub fn rejection(sender: &str, app_out: &str, reference: &str, problems: &[(u32, u32, &str, &str)], d: Date) -> String {
    let mut v = vec![a_out(sender, app_out, reference, d), pad("B")];
    let mut n = 0;
    for (record, column, id, code) in problems {
        v.push(pad(&format!(
            "X0{}{}{}",
            num(*record as u64, 6),
            num(*column as u64, 2),
            fit(id, 2)
        )));
        v.push(pad(&format!("X1 F{code}   {}", fit(x_narrative(code), 40))));
        n += 2;
    }
    v.push(pad(&format!("X1RF999   {}", fit("BATCH REJECTED", 40))));
    n += 1;
    v.push(pad(&format!("Y           {}", num(n, 5))));
    v.push(z_out(sender, d));
    join(&v)
}

fn x_narrative(code: &str) -> &'static str {
    match code {
        "X02" => "DATA FOUND IN FILLER",
        "X08" => "SENDER NOT AUTHORIZED",
        "X13" => "BATCH REFERENCE REUSED",
        _ => panic!("narrative of {code} not in the test table"),
    }
}

/// The narratives of rules.md, copied from the spec tables.
pub fn narrative(family: char, code: &str) -> &'static str {
    match (family, code) {
        ('G', "000") => "CERTIFICATE ACCEPTED",
        ('G', "999") => "CERTIFICATE REJECTED",
        ('G', "G01") => "IOR NUMBER MISSING",
        ('G', "G02") => "IOR NUMBER INVALID",
        ('G', "G03") => "CERTIFICATE ALREADY ON FILE",
        ('G', "G04") => "CERTIFICATE NOT ON FILE",
        ('G', "G05") => "CERTIFICATE CANCELLED",
        ('G', "G06") => "COUNTRY DOES NOT MATCH SENDER",
        ('G', "G07") => "CERTIFICATE NUMBER INVALID",
        ('G', "G08") => "ACTION CODE INVALID",
        ('G', "G09") => "PROGRAM CODE INVALID",
        ('G', "G10") => "HTS COVERAGE INVALID",
        ('G', "G11") => "QUANTITY INVALID",
        ('G', "G12") => "UNIT OF MEASURE INVALID",
        ('G', "G13") => "ISSUE DATE INVALID",
        ('G', "G14") => "EXPIRY DATE INVALID",
        ('G', "G15") => "QUOTA YEAR INVALID",
        ('G', "G16") => "EXPORTER NAME MISSING",
        ('G', "G17") => "QUANTITY BELOW QUANTITY USED",
        ('G', "G18") => "UNIT CANNOT CHANGE AFTER USE",
        ('E', "000") => "ENTRY SUMMARY ACCEPTED",
        ('E', "999") => "ENTRY SUMMARY REJECTED",
        ('E', "E01") => "ENTRY NUMBER INVALID",
        ('E', "E02") => "ENTRY ALREADY ON FILE",
        ('E', "E03") => "ENTRY NOT ON FILE",
        ('E', "E04") => "ENTRY NUMBER PREVIOUSLY DELETED",
        ('E', "E05") => "IOR NUMBER MISSING OR INVALID",
        ('E', "E06") => "ENTRY TYPE NOT ELIGIBLE FOR QUOTA",
        ('E', "E07") => "FILER CODE DOES NOT MATCH BLOCK",
        ('E', "E08") => "ACTION CODE INVALID",
        ('E', "E09") => "LINE NUMBER INVALID OR OUT OF ORDER",
        ('E', "E10") => "COUNTRY OF ORIGIN INVALID",
        ('E', "E11") => "HTS NUMBER INVALID",
        ('E', "E12") => "QUANTITY OR UNIT INVALID",
        ('E', "E13") => "PORT CODE MISSING",
        ('E', "E14") => "MORE THAN ONE 52 RECORD ON LINE",
        ('E', "E15") => "CERTIFICATE NUMBER INVALID",
        ('E', "Q01") => "CERTIFICATE NOT ON FILE",
        ('E', "Q11") => "COUNTRY OF ORIGIN DOES NOT MATCH CERT",
        ('E', "Q12") => "CERTIFICATE TYPE DOES NOT MATCH PROGRAM",
        ('E', "Q06") => "HTS NOT COVERED BY CERTIFICATE",
        ('E', "Q07") => "UNIT DOES NOT MATCH CERTIFICATE",
        ('E', "Q08") => "QUANTITY MUST BE GREATER THAN ZERO",
        ('E', "Q03") => "CERTIFICATE CANCELLED",
        ('E', "Q04") => "CERTIFICATE EXPIRED",
        ('E', "Q10") => "CERTIFICATE NOT YET ISSUED",
        ('E', "Q09") => "QUOTA YEAR DOES NOT MATCH ENTRY DATE",
        ('E', "Q02") => "IOR DOES NOT MATCH CERTIFICATE",
        ('E', "Q05") => "QUANTITY EXCEEDS CERTIFICATE BALANCE",
        ('R', "R01") => "QUERY TYPE INVALID",
        ('R', "R02") => "IOR NUMBER INVALID",
        ('R', "R03") => "IOR NOT AUTHORIZED FOR FILER",
        ('R', "R04") => "CERTIFICATE NOT ON FILE",
        ('R', "R05") => "COUNTRY DOES NOT MATCH SENDER",
        ('R', "R06") => "CONDITION CODE INVALID",
        ('R', "R07") => "DATE RANGE INVALID",
        ('R', "R08") => "COUNTRY OR CERTIFICATE NUMBER MISSING",
        ('R', "R09") => "QUOTA YEAR INVALID",
        _ => panic!("no narrative for {family} {code}"),
    }
}

// ------------------------------------------------------------ GT / GS --

/// A G1 record, field by field (certificates.md). Every field is a string
/// written as is into its positions, so tests can put invalid values in.
#[derive(Clone, Debug)]
pub struct G1 {
    pub action: String,
    pub country: String,
    pub number: String,
    pub program: String,
    pub hts: String,
    pub quantity: String,
    pub unit: String,
    pub issued: String,
    pub expires: String,
    pub year: String,
    pub ior: String,
}

impl G1 {
    /// A valid add: program Q, coverage 0201, 20000.00 KG, 2026, IOR_A.
    pub fn add(country: &str, number: &str) -> G1 {
        G1 {
            action: "A".into(),
            country: country.into(),
            number: number.into(),
            program: "Q".into(),
            hts: "0201".into(),
            quantity: num(2_000_000, 12),
            unit: "KG".into(),
            issued: "20260101".into(),
            expires: "20261231".into(),
            year: "2026".into(),
            ior: IOR_A.into(),
        }
    }

    pub fn replace(country: &str, number: &str) -> G1 {
        G1 {
            action: "R".into(),
            ..G1::add(country, number)
        }
    }

    /// A cancel: positions 16-73 blank.
    pub fn cancel(country: &str, number: &str) -> G1 {
        G1 {
            action: "X".into(),
            program: String::new(),
            hts: String::new(),
            quantity: String::new(),
            unit: String::new(),
            issued: String::new(),
            expires: String::new(),
            year: String::new(),
            ior: String::new(),
            ..G1::add(country, number)
        }
    }

    pub fn qty(mut self, hundredths: u64) -> G1 {
        self.quantity = num(hundredths, 12);
        self
    }

    pub fn set(mut self, f: impl FnOnce(&mut G1)) -> G1 {
        f(&mut self);
        self
    }

    pub fn rec(&self) -> String {
        pad(&format!(
            "G1{}{}{}{}{}{}{}{}{}{}{}",
            fit(&self.action, 1),
            fit(&self.country, 2),
            fit(&self.number, 10),
            fit(&self.program, 1),
            fit(&self.hts, 10),
            fit(&self.quantity, 12),
            fit(&self.unit, 3),
            fit(&self.issued, 8),
            fit(&self.expires, 8),
            fit(&self.year, 4),
            fit(&self.ior, 12),
        ))
    }
}

pub fn g2(name: &str) -> String {
    pad(&format!("G2{}", fit(name, 35)))
}

/// A G1 with its G2.
pub fn cert(g: &G1, exporter: &str) -> Vec<String> {
    vec![g.rec(), g2(exporter)]
}

/// An S1 record.
pub fn s1(
    country: &str,
    number: &str,
    action: &str,
    disposition: &str,
    severity: &str,
    code: &str,
    remaining: u64,
) -> String {
    pad(&format!(
        "S1{}{}{}{}{}{}{}{}",
        fit(country, 2),
        fit(number, 10),
        fit(action, 1),
        fit(disposition, 1),
        fit(severity, 1),
        code,
        fit(narrative('G', code), 40),
        num(remaining, 12)
    ))
}

/// The S1 records of an accepted transaction.
pub fn s1_ok(country: &str, number: &str, action: &str, remaining: u64) -> Vec<String> {
    vec![s1(country, number, action, "A", " ", "000", remaining)]
}

/// The S1 records of a refused transaction with these problems, in order.
pub fn s1_refused(country: &str, number: &str, action: &str, codes: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = codes
        .iter()
        .map(|c| s1(country, number, action, " ", "F", c, 0))
        .collect();
    v.push(s1(country, number, action, "R", "F", "999", 0));
    v
}

// ------------------------------------------------------------ AE / AX --

pub fn r10(action: &str, filer: &str, entry: &str, port: &str, entry_type: &str) -> String {
    pad(&format!(
        "10{}{}  {} {}{}   {}",
        fit(action, 1),
        fit(filer, 3),
        fit(entry, 8),
        fit(port, 4),
        fit("REF1", 9),
        fit(entry_type, 2)
    ))
}

pub fn r11(ior: &str) -> String {
    pad(&format!("11{}", fit(ior, 12)))
}

pub fn r40(line: &str, origin: &str) -> String {
    pad(&format!("40  {} {}", fit(line, 3), fit(origin, 2)))
}

/// A `50` with up to three (quantity field, unit field) pairs, written as is.
pub fn r50(hts: &str, quantities: &[(&str, &str)]) -> String {
    let mut s = format!("50{}{}", fit(hts, 10), " ".repeat(23));
    for (q, u) in quantities {
        s.push_str(&fit(q, 12));
        s.push_str(&fit(u, 3));
    }
    pad(&s)
}

pub fn r52(kind: &str, number: &str) -> String {
    pad(&format!("52{}{}", fit(kind, 2), fit(number, 10)))
}

/// A claiming line: 40, one 50 with quantity 1, one 52.
pub fn claim_line(
    line: u32,
    origin: &str,
    hts: &str,
    hundredths: u64,
    unit: &str,
    kind: &str,
    number: &str,
) -> Vec<String> {
    vec![
        r40(&num(line as u64, 3), origin),
        r50(hts, &[(&num(hundredths, 12), unit)]),
        r52(kind, number),
    ]
}

/// The usual beef claim: AU origin, HTS 0201300080, KG, EX.
pub fn beef(line: u32, hundredths: u64, number: &str) -> Vec<String> {
    claim_line(line, "AU", "0201300080", hundredths, "KG", "EX", number)
}

/// An entry summary: 10, 11 and lines.
pub fn entry(action: &str, filer: &str, digits7: &str, ior: &str, lines: &[Vec<String>]) -> Vec<String> {
    let mut v = vec![r10(action, filer, &entry_no(filer, digits7), "2704", "02"), r11(ior)];
    for l in lines {
        v.extend(l.iter().cloned());
    }
    v
}

pub fn e0_summary(filer: &str, entry: &str, record: u32) -> String {
    pad(&format!(
        "E0SUMMRY{}{}   {}",
        fit(filer, 3),
        fit(entry, 8),
        num(record as u64, 6)
    ))
}

pub fn e0_line(filer: &str, entry: &str, line: &str, record: u32) -> String {
    pad(&format!(
        "E0LINE  {}{}{}{}",
        fit(filer, 3),
        fit(entry, 8),
        fit(line, 3),
        num(record as u64, 6)
    ))
}

pub fn e1(
    disposition: &str,
    severity: &str,
    code: &str,
    narrative: &str,
    filer: &str,
    entry: &str,
    version: u32,
) -> String {
    pad(&format!(
        "E1{}{}{}   {}{}{}{}",
        fit(disposition, 1),
        fit(severity, 1),
        code,
        fit(narrative, 40),
        fit(filer, 3),
        fit(entry, 8),
        num(version as u64, 5)
    ))
}

/// A non-final fatal E1 for `code`.
pub fn e1_problem(code: &str, filer: &str, entry: &str) -> String {
    e1(" ", "F", code, narrative('E', code), filer, entry, 0)
}

/// The C00 of a claim, with the remaining quantity as the spec example words it.
pub fn e1_c00(left: &str, unit: &str, filer: &str, entry: &str) -> String {
    e1(
        " ",
        "I",
        "C00",
        &format!("CLAIM APPLIED, LEFT {left} {unit}"),
        filer,
        entry,
        0,
    )
}

pub fn e1_accepted(filer: &str, entry: &str, version: u32) -> String {
    e1("A", " ", "000", narrative('E', "000"), filer, entry, version)
}

pub fn e1_rejected(filer: &str, entry: &str) -> String {
    e1("R", "F", "999", narrative('E', "999"), filer, entry, 0)
}

/// Where an entry-summary problem is reported.
pub enum At<'a> {
    /// `E0 SUMMRY` naming this record.
    Summary(u32),
    /// `E0 LINE` of this line number naming this record.
    Line(&'a str, u32),
}

/// The AX records of a refused entry summary.
pub fn ax_refused(filer: &str, entry: &str, rec10: u32, problems: &[(At<'_>, &str)]) -> Vec<String> {
    let mut v = vec![e0_summary(filer, entry, rec10)];
    for (at, code) in problems {
        v.push(match at {
            At::Summary(r) => e0_summary(filer, entry, *r),
            At::Line(l, r) => e0_line(filer, entry, l, *r),
        });
        v.push(e1_problem(code, filer, entry));
    }
    v.push(e1_rejected(filer, entry));
    v
}

/// The AX records of an accepted entry summary: (line, 52 record, left, unit) per claim.
pub fn ax_accepted(
    filer: &str,
    entry: &str,
    rec10: u32,
    claims: &[(&str, u32, &str, &str)],
    version: u32,
) -> Vec<String> {
    let mut v = vec![e0_summary(filer, entry, rec10)];
    for (line, rec, left, unit) in claims {
        v.push(e0_line(filer, entry, line, *rec));
        v.push(e1_c00(left, unit, filer, entry));
    }
    v.push(e1_accepted(filer, entry, version));
    v
}

// ------------------------------------------------------------ queries --

pub fn c1(kind: &str, ior: &str, country: &str, number: &str, year: &str) -> String {
    pad(&format!(
        "C1{}{}{}{}{}",
        fit(kind, 1),
        fit(ior, 12),
        fit(country, 2),
        fit(number, 10),
        fit(year, 4)
    ))
}

pub fn q1(kind: &str, country: &str, number: &str, condition: &str, from: &str, to: &str) -> String {
    pad(&format!(
        "Q1{}{}{}{}{}{}",
        fit(kind, 1),
        fit(country, 2),
        fit(number, 10),
        fit(condition, 2),
        fit(from, 8),
        fit(to, 8)
    ))
}

pub fn c0(kind: &str, ior: &str, country: &str, number: &str, count: u64) -> String {
    pad(&format!(
        "C0{}{}{}{}{}",
        fit(kind, 1),
        fit(ior, 12),
        fit(country, 2),
        fit(number, 10),
        num(count, 8)
    ))
}

/// A C2 record; quantities in hundredths.
#[allow(clippy::too_many_arguments)]
pub fn c2(
    country: &str,
    number: &str,
    program: &str,
    hts: &str,
    unit: &str,
    certified: u64,
    used: u64,
    expiry: &str,
    status: &str,
    year: &str,
) -> String {
    pad(&format!(
        "C2{}{}{}{}{}{}{}{}{}{}{}",
        fit(country, 2),
        fit(number, 10),
        program,
        fit(hts, 10),
        fit(unit, 3),
        num(certified, 12),
        num(used, 12),
        num(certified - used, 12),
        expiry,
        status,
        year
    ))
}

pub fn c4(ior: &str, issued: &str, exporter: &str) -> String {
    pad(&format!("C4{}{}{}", fit(ior, 12), issued, fit(exporter, 35)))
}

pub fn c3(filer: &str, entry: &str, line: u32, kind: &str, hundredths: u64, on: &str, version: u32) -> String {
    pad(&format!(
        "C3{}{}{}{}{}{}{}",
        fit(filer, 3),
        fit(entry, 8),
        num(line as u64, 3),
        kind,
        num(hundredths, 12),
        on,
        num(version as u64, 5)
    ))
}

pub fn c9(code: &str) -> String {
    pad(&format!("C9RF{code}   {}", fit(narrative('R', code), 40)))
}

// --------------------------------------------------------------- world --

/// The bytes of a store file holding the demo senders, built once per test
/// binary (registering hashes each password, which is slow unoptimised).
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("template.db");
        {
            let mut store = Store::open(&path).unwrap();
            register_senders(&mut store);
            store.execute_raw("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        }
        std::fs::read(&path).unwrap()
    })
}

/// A fresh store file with the demo senders in `dir`.
pub fn fresh_store_file(dir: &Path) -> PathBuf {
    let path = dir.join("ecertd.db");
    std::fs::write(&path, template()).unwrap();
    path
}

/// Sessions by (channel, sender): one per sender, like one connection each.
pub type Sessions = HashMap<(Channel, String), Session>;

/// A store with the demo senders, driven through the library API.
pub struct World {
    pub store: Store,
    pub date: Date,
    pub sessions: Sessions,
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = fresh_store_file(dir.path());
        let store = Store::open_with(&path, Sync::Normal).unwrap();
        World {
            store,
            date: date(),
            sessions: HashMap::new(),
            dir,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("ecertd.db")
    }

    /// Processes an input as one file (a fresh session), returning every response byte.
    pub fn send(&mut self, channel: Channel, input: &[u8]) -> Vec<u8> {
        let mut session = Session::new(channel);
        process(&mut self.store, self.date, &mut session, input)
    }

    /// Sends a one-block batch and returns its response detail records,
    /// after checking the response envelope record by record. Batches of
    /// one sender share a session (as over one connection).
    pub fn batch(&mut self, sender: &str, app: &str, reference: &str, details: &[String]) -> Vec<String> {
        let channel = match app {
            "GT" | "GQ" => Channel::Ecert,
            _ => Channel::Abi,
        };
        let spec = BatchSpec {
            sender,
            password: password(sender),
            app,
            reference,
            blocks: vec![(sender, details.to_vec())],
        };
        let session = self
            .sessions
            .entry((channel, sender.to_string()))
            .or_insert_with(|| Session::new(channel));
        let resp = String::from_utf8(process(&mut self.store, self.date, session, &spec.bytes())).unwrap();
        detail_records(&resp, sender, app, reference, self.date)
    }

    pub fn gt(&mut self, details: &[String]) -> Vec<String> {
        self.batch("AU1", "GT", "", details)
    }

    pub fn gt_from(&mut self, sender: &str, details: &[String]) -> Vec<String> {
        self.batch(sender, "GT", "", details)
    }

    pub fn ae(&mut self, details: &[String]) -> Vec<String> {
        self.batch("ABC", "AE", "", details)
    }

    pub fn ec(&mut self, details: &[String]) -> Vec<String> {
        self.batch("ABC", "EC", "", details)
    }

    pub fn gq(&mut self, details: &[String]) -> Vec<String> {
        self.batch("AU1", "GQ", "", details)
    }

    pub fn gq_from(&mut self, sender: &str, details: &[String]) -> Vec<String> {
        self.batch(sender, "GQ", "", details)
    }

    /// Adds accepted certificates from AU1 (asserting each is accepted).
    pub fn add_certs(&mut self, certs: &[G1]) {
        self.add_certs_from("AU1", certs)
    }

    pub fn add_certs_from(&mut self, sender: &str, certs: &[G1]) {
        let mut details = Vec::new();
        let mut want = Vec::new();
        for g in certs {
            details.extend(cert(g, "DOWNS BEEF EXPORTS PTY LTD"));
            let q: u64 = g.quantity.parse().unwrap();
            want.extend(s1_ok(&g.country, &g.number, &g.action, q));
        }
        assert_eq!(self.gt_from(sender, &details), want);
    }

    pub fn cert(&mut self, country: &str, number: &str) -> Option<Certificate> {
        let c = Country::parse(country.as_bytes()).unwrap();
        let n = CertificateNumber::from_stored(number).unwrap();
        self.store.read(|tx| tx.certificate(c, n)).unwrap()
    }

    /// (certified, used) in hundredths.
    pub fn balance(&mut self, country: &str, number: &str) -> (u64, u64) {
        let c = self.cert(country, number).expect("certificate on file");
        (c.terms.certified.get(), c.used.get())
    }

    pub fn usage_event_count(&mut self, country: &str, number: &str) -> usize {
        let c = self.cert(country, number).expect("certificate on file");
        self.store.read(|tx| tx.usage_events(c.id)).unwrap().len()
    }

    pub fn assert_ledger_consistent(&mut self) {
        let m = self
            .store
            .read(|tx| -> Result<_, StoreError> { tx.ledger_mismatches() })
            .unwrap();
        assert!(m.is_empty(), "ledger mismatches: {m:?}");
    }

    pub fn grant(&mut self, filer: &str, ior: &str) {
        let f = FilerCode::parse(filer.as_bytes()).unwrap();
        let i = ecertd::types::IorNumber::parse(fit(ior, 12).as_bytes()).unwrap();
        self.store.grant(f, i).unwrap();
    }
}

/// Runs an input through an engine on `store`, returning every response byte.
pub fn process(store: &mut Store, date: Date, session: &mut Session, input: &[u8]) -> Vec<u8> {
    let mut engine = Engine::new(store, date);
    let mut out = Vec::new();
    engine
        .process_stream(session, Cursor::new(input.to_vec()), 64, |r| {
            out.extend_from_slice(&r.response);
            Ok(())
        })
        .unwrap();
    out
}

/// Checks the envelope of a one-block response and returns its detail records.
pub fn detail_records(resp: &str, sender: &str, app: &str, reference: &str, d: Date) -> Vec<String> {
    assert!(resp.ends_with('\n'), "response ends without LF: {resp:?}");
    let lines: Vec<String> = resp.lines().map(str::to_string).collect();
    for l in &lines {
        assert_eq!(l.len(), 80, "response record not 80: {l:?}\n{resp}");
    }
    assert!(lines.len() >= 4, "short response:\n{resp}");
    let rapp = response_app(app);
    assert_eq!(lines[0], a_out(sender, rapp, reference, d), "\n{resp}");
    assert_eq!(lines[1], b_out(sender, rapp), "\n{resp}");
    let n = lines.len();
    assert_eq!(lines[n - 2], y_out(sender, rapp, n - 4), "\n{resp}");
    assert_eq!(lines[n - 1], z_out(sender, d), "\n{resp}");
    lines[2..n - 2].to_vec()
}

/// Lines of a response as strings (panics on non-UTF-8).
pub fn lines(resp: &[u8]) -> Vec<String> {
    String::from_utf8(resp.to_vec())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}
