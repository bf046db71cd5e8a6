//! A deterministic workload generator: spec-valid GT, AE, EC and GQ files
//! from counts and a seed, for benchmarks and soak tests.
//!
//! Certificates are numbered: certificate `i` belongs to country
//! `COUNTRIES[i % n]`, has number `C{i:09}` and names IOR `i / per_ior`
//! (CBP-assigned form), so AE and query files can name them without reading
//! the GT files back.

use std::io::{self, Write};

use crate::layout;
use crate::model::CertificateTerms;
use crate::store::{ClaimChange, EntryChange};
use crate::types::{
    entry_check_digit, CertificateNumber, Country, Date, EntryNumber, FilerCode, HtsCoverage, Hundredths, IorNumber,
    Program, Unit,
};

/// Countries and the sender IDs that speak for them.
pub const COUNTRIES: &[(&str, &str)] = &[("AU", "AU1"), ("NZ", "NZ1"), ("UY", "UY1"), ("AR", "AR1")];

/// Demo password of a generated sender (the README's demo credentials):
/// `PWAU01` for AU1, `PWABC1` for ABC.
pub fn password(sender: &str) -> String {
    match sender.as_bytes() {
        [a, b, b'1'] if a.is_ascii_uppercase() && b.is_ascii_uppercase() && COUNTRIES.iter().any(|c| c.1 == sender) => {
            format!("PW{}01", &sender[..2])
        }
        _ => format!("PW{sender}1"),
    }
}

/// A small, fast, deterministic generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// The shape of a generated certificate population.
#[derive(Clone, Copy, Debug)]
pub struct Population {
    pub certificates: u64,
    /// Certificates naming each IOR.
    pub per_ior: u64,
    /// Certified quantity of each, in hundredths.
    pub certified: u64,
}

impl Population {
    pub fn country(&self, i: u64) -> (&'static str, &'static str) {
        COUNTRIES[(i % COUNTRIES.len() as u64) as usize]
    }

    pub fn number(&self, i: u64) -> String {
        format!("C{i:09}")
    }

    pub fn ior(&self, i: u64) -> String {
        ior_of(i / self.per_ior.max(1))
    }
}

/// The IOR number of IOR index `k`, in the CBP-assigned form.
pub fn ior_of(k: u64) -> String {
    format!("{:06}-{:05}", k / 100_000, k % 100_000)
}

fn envelope_a(sender: &str, app: &str, reference: &str) -> [u8; 80] {
    layout::get("A")
        .blank()
        .text("site", b"1001")
        .text("sender", sender.as_bytes())
        .text("password", password(sender).as_bytes())
        .number("date", 31526)
        .text("app", app.as_bytes())
        .text("reference", reference.as_bytes())
        .finish()
}

fn envelope_b(filer: &str, app: &str) -> [u8; 80] {
    layout::get("B")
        .blank()
        .text("port", b"2704")
        .text("filer", filer.as_bytes())
        .text("app", app.as_bytes())
        .finish()
}

fn envelope_y(filer: &str, app: &str, count: u64) -> [u8; 80] {
    layout::get("Y")
        .blank()
        .text("port", b"2704")
        .text("filer", filer.as_bytes())
        .text("app", app.as_bytes())
        .number("count", count)
        .finish()
}

fn envelope_z(sender: &str) -> [u8; 80] {
    layout::get("Z")
        .blank()
        .text("site", b"1001")
        .text("sender", sender.as_bytes())
        .number("date", 31526)
        .finish()
}

fn line(w: &mut impl Write, rec: &[u8; 80]) -> io::Result<()> {
    w.write_all(rec)?;
    w.write_all(b"\n")
}

/// Writes one batch of detail records with its envelope.
fn batch(
    w: &mut impl Write,
    sender: &str,
    filer: &str,
    app: &str,
    reference: &str,
    details: &[[u8; 80]],
) -> io::Result<()> {
    line(w, &envelope_a(sender, app, reference))?;
    line(w, &envelope_b(filer, app))?;
    for d in details {
        line(w, d)?;
    }
    line(w, &envelope_y(filer, app, details.len() as u64))?;
    line(w, &envelope_z(sender))
}

/// GT batches adding certificates `range` of one country's sender, `per_batch` to a batch.
pub fn write_gt(
    w: &mut impl Write,
    pop: &Population,
    country_index: usize,
    per_batch: usize,
    tag: &str,
) -> io::Result<u64> {
    let (country, sender) = COUNTRIES[country_index];
    let (g1, g2) = (layout::get("G1"), layout::get("G2"));
    let mut details = Vec::with_capacity(per_batch * 2);
    let mut batches = 0u64;
    let mut i = country_index as u64;
    while i < pop.certificates {
        details.push(
            g1.blank()
                .text("action", b"A")
                .text("country", country.as_bytes())
                .text("number", pop.number(i).as_bytes())
                .text("program", b"Q")
                .text("hts", b"0201")
                .number("quantity", pop.certified)
                .text("unit", b"KG")
                .number("issue_date", 20260101)
                .number("expiry_date", 20261231)
                .number("quota_year", 2026)
                .text("ior", pop.ior(i).as_bytes())
                .finish(),
        );
        details.push(g2.blank().text("exporter", b"GENERATED BEEF EXPORTS PTY LTD").finish());
        i += COUNTRIES.len() as u64;
        if details.len() >= per_batch * 2 || i >= pop.certificates {
            batches += 1;
            batch(w, sender, sender, "GT", &format!("{tag}-{batches}"), &details)?;
            details.clear();
        }
    }
    Ok(batches)
}

/// Parameters of generated entry summaries.
#[derive(Clone, Copy, Debug)]
pub struct EntryMix {
    pub entries: u64,
    pub entries_per_batch: u64,
    pub max_lines: u64,
    /// Share of entries carrying a claim that must be refused.
    pub refused_share: f64,
    /// Quantity claimed by each line, in hundredths.
    pub claim: u64,
    /// First 7-digit entry number.
    pub first_number: u64,
}

/// Counts of what a generated AE stream holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryCounts {
    pub batches: u64,
    pub entries: u64,
    pub claims: u64,
    pub refused_entries: u64,
    pub bytes: u64,
}

/// AE batches from broker ABC (filer ABC) claiming generated certificates.
/// A refused entry has one bad line: an over-claim, a wrong IOR or an unknown certificate.
pub fn write_ae(
    w: &mut impl Write,
    pop: &Population,
    mix: &EntryMix,
    rng: &mut Rng,
    tag: &str,
) -> io::Result<EntryCounts> {
    let (l10, l11, l40, l50, l52) = (
        layout::get("10"),
        layout::get("11"),
        layout::get("40"),
        layout::get("50"),
        layout::get("52"),
    );
    let mut counts = EntryCounts::default();
    let mut details: Vec<[u8; 80]> = Vec::new();
    let mut in_batch = 0;
    for e in 0..mix.entries {
        let n = (mix.first_number + e) % 10_000_000;
        let digits = format!("{n:07}");
        let check = entry_check_digit(b"ABC", digits.as_bytes().try_into().unwrap_or(&[b'0'; 7])).unwrap_or(0);
        // All lines of an entry claim certificates of one IOR.
        let first = rng.below(pop.certificates);
        let ior_index = first / pop.per_ior.max(1);
        let refused = rng.chance(mix.refused_share);
        let bad_line = if refused { Some(rng.below(mix.max_lines)) } else { None };
        let lines = 1 + rng.below(mix.max_lines);
        details.push(
            l10.blank()
                .text("action", b"A")
                .text("filer", b"ABC")
                .text("entry_number", format!("{digits}{check}").as_bytes())
                .text("port", b"2704")
                .text("reference", b"GEN")
                .text("entry_type", b"02")
                .finish(),
        );
        details.push(l11.blank().text("ior", ior_of(ior_index).as_bytes()).finish());
        let lines = lines.max(bad_line.map(|b| b + 1).unwrap_or(0));
        for l in 0..lines {
            let base = ior_index * pop.per_ior.max(1);
            let span = pop.per_ior.max(1).min(pop.certificates.saturating_sub(base)).max(1);
            let mut cert = base + rng.below(span);
            let mut quantity = mix.claim;
            let mut number = pop.number(cert);
            if bad_line == Some(l) {
                match rng.below(3) {
                    0 => quantity = pop.certified + 1,
                    1 => cert = (cert + pop.per_ior) % pop.certificates.max(1),
                    _ => number = format!("U{:09}", rng.below(1_000_000_000)),
                }
                if !number.starts_with('U') {
                    number = pop.number(cert);
                }
            }
            let (country, _) = pop.country(cert);
            details.push(
                l40.blank()
                    .number("line", l + 1)
                    .text("origin", country.as_bytes())
                    .finish(),
            );
            details.push(
                l50.blank()
                    .text("hts", b"0201300080")
                    .number("quantity1", quantity)
                    .text("unit1", b"KG")
                    .text("quantity2", b"")
                    .text("quantity3", b"")
                    .finish(),
            );
            details.push(
                l52.blank()
                    .text("type", b"EX")
                    .text("number", number.as_bytes())
                    .finish(),
            );
            counts.claims += 1;
        }
        counts.entries += 1;
        if refused {
            counts.refused_entries += 1;
        }
        in_batch += 1;
        if in_batch >= mix.entries_per_batch || e + 1 == mix.entries {
            counts.batches += 1;
            batch(w, "ABC", "ABC", "AE", &format!("{tag}-{}", counts.batches), &details)?;
            counts.bytes += (details.len() as u64 + 4) * 81;
            details.clear();
            in_batch = 0;
        }
    }
    Ok(counts)
}

/// EC batches: type I queries for random IORs of the population.
pub fn write_ec(w: &mut impl Write, pop: &Population, queries: u64, rng: &mut Rng, tag: &str) -> io::Result<u64> {
    let c1 = layout::get("C1");
    let iors = (pop.certificates / pop.per_ior.max(1)).max(1);
    let details: Vec<[u8; 80]> = (0..queries)
        .map(|_| {
            c1.blank()
                .text("kind", b"I")
                .text("ior", ior_of(rng.below(iors)).as_bytes())
                .text("quota_year", b"")
                .finish()
        })
        .collect();
    for (i, chunk) in details.chunks(1000).enumerate() {
        batch(w, "ABC", "ABC", "EC", &format!("{tag}-{}", i + 1), chunk)?;
    }
    Ok(queries)
}

/// GQ batches: type C queries for random certificates of one country.
pub fn write_gq(
    w: &mut impl Write,
    pop: &Population,
    country_index: usize,
    queries: u64,
    rng: &mut Rng,
    tag: &str,
) -> io::Result<u64> {
    let (country, sender) = COUNTRIES[country_index];
    let q1 = layout::get("Q1");
    let per_country = (pop.certificates / COUNTRIES.len() as u64).max(1);
    let details: Vec<[u8; 80]> = (0..queries)
        .map(|_| {
            let i = rng.below(per_country) * COUNTRIES.len() as u64 + country_index as u64;
            q1.blank()
                .text("kind", b"C")
                .text("country", country.as_bytes())
                .text("number", pop.number(i).as_bytes())
                .text("condition", b"")
                .text("issued_from", b"")
                .text("issued_to", b"")
                .finish()
        })
        .collect();
    for (i, chunk) in details.chunks(1000).enumerate() {
        batch(w, sender, sender, "GQ", &format!("{tag}-{}", i + 1), chunk)?;
    }
    Ok(queries)
}

/// A synthetic ledger for [`crate::store::Store::load_synthetic`]: the
/// certificates of `population` (numbered as everywhere in this module,
/// with the terms `write_gt` transmits) and `usage_events` debits from
/// accepted entry summaries of broker ABC, each entry claiming 1 to
/// `max_lines` random certificates of one IOR (as `write_ae` does). Loading
/// through the pipeline is too slow for tens of millions of rows; the store
/// applies these values through the same writes as the pipeline.
///
/// The events are spread evenly over the IORs (every IOR gets
/// `usage_events / IORs`, ±1) and the entries come IOR by IOR, so that the
/// load touches the store in key order: the rows are what random arrival
/// would leave, but b-tree pages end up fuller than organic growth leaves
/// them.
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub population: Population,
    /// Usage events (debits) to create in all.
    pub usage_events: u64,
    /// Lines of an entry: 1 to this many, uniformly.
    pub max_lines: u64,
    /// Quantity of each debit, in hundredths.
    pub claim: u64,
    pub seed: u64,
    /// Date of the usage events.
    pub business_date: Date,
    /// Certificates or entries per load transaction.
    pub per_commit: u64,
    /// SQLite page cache while loading, in MiB.
    pub cache_mib: u64,
}

/// The exporter name of every generated certificate.
pub const EXPORTER: &str = "GENERATED BEEF EXPORTS PTY LTD";

impl SyntheticSpec {
    /// The terms of certificate `i`, as `write_gt` transmits them.
    pub fn certificate(&self, i: u64) -> CertificateTerms {
        let pop = &self.population;
        let (country, _) = pop.country(i);
        CertificateTerms {
            country: Country::from_stored(country).expect("generated country"),
            number: CertificateNumber::from_stored(&pop.number(i)).expect("generated number"),
            program: Program::parse(b'Q').expect("program Q"),
            hts: HtsCoverage::from_stored("0201").expect("HTS 0201"),
            certified: Hundredths::new(pop.certified),
            unit: Unit::from_stored("KG").expect("unit KG"),
            issued: Date::new(2026, 1, 1).expect("issue date"),
            expires: Date::new(2026, 12, 31).expect("expiry date"),
            quota_year: 2026,
            ior: IorNumber::from_stored(&pop.ior(i)).expect("generated IOR"),
            exporter: EXPORTER.to_string(),
        }
    }

    /// The accepted entry summaries carrying the usage events, in order.
    pub fn entries(&self) -> SyntheticEntries {
        let iors = self.iors();
        SyntheticEntries {
            spec: self.clone(),
            rng: Rng::new(self.seed),
            next: 0,
            ior: 0,
            ior_left: self.events_of_ior(0, iors),
            iors,
        }
    }

    /// IORs of the population (the last one may hold fewer certificates).
    pub fn iors(&self) -> u64 {
        let p = &self.population;
        p.certificates.div_ceil(p.per_ior.max(1))
    }

    fn events_of_ior(&self, k: u64, iors: u64) -> u64 {
        if k >= iors {
            return 0;
        }
        self.usage_events / iors + u64::from(k < self.usage_events % iors)
    }
}

/// Entry summaries of a [`SyntheticSpec`], numbered 1, 2, … (7 digits and
/// check digit, filer ABC), each version 1.
pub struct SyntheticEntries {
    spec: SyntheticSpec,
    rng: Rng,
    next: u64,
    /// The IOR whose entries come now, and its events still to hand out.
    ior: u64,
    ior_left: u64,
    iors: u64,
}

impl SyntheticEntries {
    /// The next entry's change, certificate indexes turned into store ids by
    /// `id`; `None` when all usage events were handed out. Fails past the
    /// 9,999,999 entry numbers of one filer code.
    pub fn next_entry(&mut self, id: impl Fn(u64) -> i64) -> Option<Result<EntryChange, String>> {
        while self.ior_left == 0 {
            if self.ior >= self.iors {
                return None;
            }
            self.ior += 1;
            self.ior_left = self.spec.events_of_ior(self.ior, self.iors);
        }
        let pop = self.spec.population;
        self.next += 1;
        if self.next >= 10_000_000 {
            return Some(Err(format!(
                "more than 9,999,999 entries needed for {} usage events: raise --max-lines",
                self.spec.usage_events
            )));
        }
        let digits = format!("{:07}", self.next);
        let filer = FilerCode::from_stored("ABC").expect("filer ABC");
        let check =
            entry_check_digit(filer.as_bytes(), digits.as_bytes().try_into().expect("7 digits")).expect("digits");
        let entry = EntryNumber::parse(filer, format!("{digits}{check}").as_bytes()).expect("entry number");
        let per_ior = pop.per_ior.max(1);
        let ior_index = self.ior;
        let lines = (1 + self.rng.below(self.spec.max_lines.max(1))).min(self.ior_left);
        self.ior_left -= lines;
        let base = ior_index * per_ior;
        let span = per_ior.min(pop.certificates.saturating_sub(base)).max(1);
        let debits = (0..lines)
            .map(|l| ClaimChange {
                line: (l + 1) as u16,
                certificate: id(base + self.rng.below(span)),
                quantity: Hundredths::new(self.spec.claim),
                version: 1,
            })
            .collect();
        Some(Ok(EntryChange {
            entry,
            version: 1,
            deleted: false,
            ior: IorNumber::from_stored(&ior_of(ior_index)),
            credits: Vec::new(),
            debits,
            date: self.spec.business_date,
        }))
    }
}

#[cfg(test)]
mod tests;
