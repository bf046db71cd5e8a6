//! The values the ledger keeps, shared by the rules (which decide) and the
//! store (which persists).

use crate::envelope::SenderKind;
use crate::types::{
    CertificateNumber, Country, Date, EntryNumber, FilerCode, HtsCoverage, Hundredths, IorNumber, Program, Unit,
};

/// A certificate on file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The store's key, used by claims and usage events.
    pub id: i64,
    pub terms: CertificateTerms,
    pub used: Hundredths,
    pub cancelled: bool,
}

/// What a country transmits about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateTerms {
    pub country: Country,
    pub number: CertificateNumber,
    pub program: Program,
    pub hts: HtsCoverage,
    pub certified: Hundredths,
    pub unit: Unit,
    pub issued: Date,
    pub expires: Date,
    pub quota_year: u16,
    pub ior: IorNumber,
    /// Exporter name, 35 bytes as read (trailing spaces kept off).
    pub exporter: String,
}

impl Certificate {
    /// `certified − used`; `used ≤ certified` is the ledger's invariant.
    pub fn remaining(&self) -> Hundredths {
        self.terms.certified.checked_sub(self.used).unwrap_or(Hundredths::ZERO)
    }

    /// Status letter of the C2 record: C, E, X, A, the first that applies.
    pub fn status(&self, business_date: Date) -> u8 {
        if self.cancelled {
            b'C'
        } else if business_date > self.terms.expires {
            b'E'
        } else if self.remaining() == Hundredths::ZERO {
            b'X'
        } else {
            b'A'
        }
    }
}

/// An entry summary on file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub version: u32,
    pub deleted: bool,
}

/// A claim in force: one line of an entry drawing on one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub line: u16,
    pub certificate: i64,
    pub quantity: Hundredths,
    /// The entry version that took the claim.
    pub version: u32,
}

/// Debit or credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageKind {
    Debit,
    Credit,
}

impl UsageKind {
    pub fn code(self) -> u8 {
        match self {
            UsageKind::Debit => b'D',
            UsageKind::Credit => b'C',
        }
    }
}

/// One append-only usage event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageEvent {
    pub certificate: i64,
    pub entry: EntryNumber,
    pub line: u16,
    pub kind: UsageKind,
    pub quantity: Hundredths,
    pub date: Date,
    pub version: u32,
}

/// A registered sender, without its password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    pub id: String,
    pub kind: SenderKind,
    pub country: Option<Country>,
    pub filers: Vec<FilerCode>,
}
