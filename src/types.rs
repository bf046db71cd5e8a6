//! Identifiers, quantities and dates of identifiers.md, as newtypes whose
//! constructors are the only way in: a value of these types is well formed.

use std::fmt;

use nom::bytes::complete::take_while_m_n;
use nom::combinator::all_consuming;
use nom::IResult;

/// Exact hundredths of a unit. Arithmetic is checked: a sum that would not
/// fit is an error, never a wrapped value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hundredths(u64);

/// The largest quantity a 12-digit field can carry.
pub const MAX_QUANTITY: u64 = 999_999_999_999;

impl Hundredths {
    pub const ZERO: Hundredths = Hundredths(0);

    pub fn new(v: u64) -> Self {
        Hundredths(v)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Hundredths) -> Option<Hundredths> {
        self.0.checked_add(other.0).map(Hundredths)
    }

    pub fn checked_sub(self, other: Hundredths) -> Option<Hundredths> {
        self.0.checked_sub(other.0).map(Hundredths)
    }

    /// Parses a 12-digit `N, 2 dec` field.
    pub fn parse(field: &[u8]) -> Option<Hundredths> {
        parse_digits(field).map(Hundredths)
    }

    /// Appends what `Display` writes (`1234.50`) to `out`, without the
    /// formatting machinery: an accepted claim's narrative carries one, and
    /// a large file renders hundreds of thousands of them.
    pub fn push_decimal(self, out: &mut Vec<u8>) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut units = self.0 / 100;
        loop {
            at -= 1;
            digits[at] = b'0' + (units % 10) as u8;
            units /= 10;
            if units == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[at..]);
        let cents = (self.0 % 100) as u8;
        out.extend_from_slice(&[b'.', b'0' + cents / 10, b'0' + cents % 10]);
    }
}

impl fmt::Display for Hundredths {
    /// `1234.50`: what a person reads in a narrative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

fn digits(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while_m_n(1, 19, |b: u8| b.is_ascii_digit())(input)
}

/// Parses a field made only of digits (1 to 19 of them) with nom.
pub fn parse_digits(field: &[u8]) -> Option<u64> {
    let (_, ds) = all_consuming(digits)(field).ok()?;
    Some(ds.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')))
}

/// A calendar date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

fn is_leap(y: u16) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u16, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A date that exists on the calendar (years 1 to 9999).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// `CCYYMMDD`.
    pub fn parse_ccyymmdd(field: &[u8]) -> Option<Date> {
        if field.len() != 8 {
            return None;
        }
        let v = parse_digits(field)?;
        Date::new((v / 10_000) as u16, (v / 100 % 100) as u8, (v % 100) as u8)
    }

    /// `MMDDYY`, years 2000-2099.
    pub fn parse_mmddyy(field: &[u8]) -> Option<Date> {
        if field.len() != 6 {
            return None;
        }
        let v = parse_digits(field)?;
        Date::new(2000 + (v % 100) as u16, (v / 10_000) as u8, (v / 100 % 100) as u8)
    }

    /// `YYYY-MM-DD`, as given on the command line.
    pub fn parse_iso(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        Date::new(
            parse_digits(&b[0..4])? as u16,
            parse_digits(&b[5..7])? as u8,
            parse_digits(&b[8..10])? as u8,
        )
    }

    /// Today's date in UTC.
    pub fn today_utc() -> Date {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Date::from_days_since_epoch((secs / 86_400) as i64)
    }

    /// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    pub fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let y = (yoe + era * 400 + i64::from(m <= 2)) as u16;
        Date {
            year: y,
            month: m,
            day: d,
        }
    }

    /// The date as the integer `CCYYMMDD`.
    pub fn ccyymmdd(self) -> u32 {
        u32::from(self.year) * 10_000 + u32::from(self.month) * 100 + u32::from(self.day)
    }

    pub fn from_ccyymmdd(v: u32) -> Option<Date> {
        Date::new((v / 10_000) as u16, (v / 100 % 100) as u8, (v % 100) as u8)
    }

    /// The date as the integer `MMDDYY`.
    pub fn mmddyy(self) -> u32 {
        u32::from(self.month) * 10_000 + u32::from(self.day) * 100 + u32::from(self.year % 100)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Writes a fixed-width identifier type with its validating constructor.
macro_rules! fixed_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The bytes as written in the record.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The text, trailing spaces removed.
            pub fn as_str(&self) -> &str {
                std::str::from_utf8(&self.0).unwrap_or("").trim_end()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

fixed_id!(
    /// An importer of record number in its 12-byte form, hyphens included.
    IorNumber,
    12
);
fixed_id!(
    /// A certificate number: 1 to 10 of A-Z, 0-9 and `-`, space-filled.
    CertificateNumber,
    10
);
fixed_id!(
    /// A 3-character filer code (A-Z, 0-9).
    FilerCode,
    3
);
fixed_id!(
    /// A two-letter country code.
    Country,
    2
);
fixed_id!(
    /// A unit of measure of identifiers.md, left-justified in 3 characters.
    Unit,
    3
);
fixed_id!(
    /// HTS coverage: 4 to 10 digits, space-filled.
    HtsCoverage,
    10
);

fn suffix_char(b: u8) -> bool {
    b.is_ascii_digit() || (b.is_ascii_uppercase() && !matches!(b, b'I' | b'O' | b'Z'))
}

fn digits_at(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

impl IorNumber {
    /// Accepts the three formats of identifiers.md, byte for byte.
    pub fn parse(field: &[u8]) -> Option<IorNumber> {
        let b: [u8; 12] = field.try_into().ok()?;
        let ein =
            digits_at(&b[0..2]) && b[2] == b'-' && digits_at(&b[3..10]) && suffix_char(b[10]) && suffix_char(b[11]);
        let ssn = digits_at(&b[0..3])
            && b[3] == b'-'
            && digits_at(&b[4..6])
            && b[6] == b'-'
            && digits_at(&b[7..11])
            && b[11] == b' ';
        let cbp = digits_at(&b[0..6]) && b[6] == b'-' && digits_at(&b[7..12]);
        (ein || ssn || cbp).then_some(IorNumber(b))
    }

    /// Rebuilds a stored IOR number (already validated when it was stored).
    pub fn from_stored(s: &str) -> Option<IorNumber> {
        let mut b = [b' '; 12];
        let src = s.as_bytes();
        if src.len() > 12 {
            return None;
        }
        b[..src.len()].copy_from_slice(src);
        IorNumber::parse(&b)
    }
}

impl CertificateNumber {
    pub fn parse(field: &[u8]) -> Option<CertificateNumber> {
        let b: [u8; 10] = field.try_into().ok()?;
        let len = b.iter().position(|&c| c == b' ').unwrap_or(10);
        let ok = len > 0
            && b[..len]
                .iter()
                .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-')
            && b[len..].iter().all(|&c| c == b' ');
        ok.then_some(CertificateNumber(b))
    }

    pub fn from_stored(s: &str) -> Option<CertificateNumber> {
        pad::<10>(s).and_then(|b| CertificateNumber::parse(&b))
    }
}

fn pad<const N: usize>(s: &str) -> Option<[u8; N]> {
    let src = s.as_bytes();
    if src.len() > N {
        return None;
    }
    let mut b = [b' '; N];
    b[..src.len()].copy_from_slice(src);
    Some(b)
}

impl FilerCode {
    pub fn parse(field: &[u8]) -> Option<FilerCode> {
        let b: [u8; 3] = field.try_into().ok()?;
        b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            .then_some(FilerCode(b))
    }

    pub fn from_stored(s: &str) -> Option<FilerCode> {
        FilerCode::parse(s.as_bytes())
    }
}

impl Country {
    pub fn parse(field: &[u8]) -> Option<Country> {
        let b: [u8; 2] = field.try_into().ok()?;
        b.iter().all(u8::is_ascii_uppercase).then_some(Country(b))
    }

    pub fn from_stored(s: &str) -> Option<Country> {
        Country::parse(s.as_bytes())
    }
}

/// The units of identifiers.md.
pub const UNITS: &[&str] = &["KG", "T", "SME", "M2", "DOZ", "NO", "L"];

impl Unit {
    pub fn parse(field: &[u8]) -> Option<Unit> {
        let b: [u8; 3] = field.try_into().ok()?;
        let text = std::str::from_utf8(&b).ok()?;
        (UNITS.contains(&text.trim_end()) && !text.starts_with(' ')).then_some(Unit(b))
    }

    pub fn from_stored(s: &str) -> Option<Unit> {
        pad::<3>(s).and_then(|b| Unit::parse(&b))
    }
}

impl HtsCoverage {
    pub fn parse(field: &[u8]) -> Option<HtsCoverage> {
        let b: [u8; 10] = field.try_into().ok()?;
        let len = b.iter().position(|&c| c == b' ').unwrap_or(10);
        (len >= 4 && digits_at(&b[..len]) && b[len..].iter().all(|&c| c == b' ')).then_some(HtsCoverage(b))
    }

    pub fn from_stored(s: &str) -> Option<HtsCoverage> {
        pad::<10>(s).and_then(|b| HtsCoverage::parse(&b))
    }

    /// Whether a 10-digit HTS number begins with this coverage.
    pub fn covers(&self, hts: &[u8; 10]) -> bool {
        let p = self.as_str().as_bytes();
        hts.starts_with(p)
    }
}

/// Certificate programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Tariff-rate quota: export certificates, `52` type `EX`.
    Quota,
    /// Tariff preference level: certificates of eligibility, `52` type `CE`.
    PreferenceLevel,
}

impl Program {
    pub fn parse(b: u8) -> Option<Program> {
        match b {
            b'Q' => Some(Program::Quota),
            b'P' => Some(Program::PreferenceLevel),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Program::Quota => b'Q',
            Program::PreferenceLevel => b'P',
        }
    }

    /// The `52` type code that claims certificates of this program.
    pub fn license_type(self) -> &'static [u8; 2] {
        match self {
            Program::Quota => b"EX",
            Program::PreferenceLevel => b"CE",
        }
    }
}

/// An entry number: filer code, 7 digits and the check digit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryNumber {
    pub filer: FilerCode,
    /// The 7 digits and the check digit, as in positions 9-16 of the `10` record.
    digits: [u8; 8],
}

impl fmt::Debug for EntryNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryNumber({self})")
    }
}

impl fmt::Display for EntryNumber {
    /// `FFF-NNNNNNN-C` (filer code, number, check digit), as on paper.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = std::str::from_utf8(&self.digits).unwrap_or("????????");
        write!(f, "{}-{}-{}", self.filer, &d[..7], &d[7..])
    }
}

/// The value of one character in the check-digit computation.
fn check_value(c: u8) -> Option<u32> {
    const LETTERS: [u8; 26] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9,
    ];
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(LETTERS[usize::from(c - b'A')])),
        _ => None,
    }
}

/// The check digit of identifiers.md over filer code + 7 digits.
pub fn entry_check_digit(filer: &[u8; 3], number: &[u8; 7]) -> Option<u8> {
    let mut total = 0u32;
    for (i, &c) in filer.iter().chain(number.iter()).enumerate() {
        let v = check_value(c)?;
        if i % 2 == 0 {
            total += v;
        } else {
            let doubled = v * 2;
            let doubled = if doubled > 9 { doubled + 1 } else { doubled };
            total += doubled % 10;
        }
    }
    Some(((10 - total % 10) % 10) as u8)
}

impl EntryNumber {
    /// Parses positions 9-16 against the filer code; `None` when the digits or
    /// the check digit are wrong.
    pub fn parse(filer: FilerCode, field: &[u8]) -> Option<EntryNumber> {
        let digits: [u8; 8] = field.try_into().ok()?;
        if !digits_at(&digits) {
            return None;
        }
        let number: [u8; 7] = digits[..7].try_into().ok()?;
        let check = entry_check_digit(filer.as_bytes(), &number)?;
        (digits[7] == b'0' + check).then_some(EntryNumber { filer, digits })
    }

    /// The 8 bytes of positions 9-16.
    pub fn digits(&self) -> &[u8; 8] {
        &self.digits
    }

    pub fn digits_str(&self) -> &str {
        std::str::from_utf8(&self.digits).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_worked_example() {
        assert_eq!(entry_check_digit(b"ABC", b"1234567"), Some(6));
        let filer = FilerCode::parse(b"ABC").unwrap();
        assert!(EntryNumber::parse(filer, b"12345676").is_some());
        assert!(EntryNumber::parse(filer, b"12345675").is_none());
        assert_eq!(
            EntryNumber::parse(filer, b"12345676").unwrap().to_string(),
            "ABC-1234567-6"
        );
    }

    #[test]
    fn check_digit_table() {
        // Computed by hand with the rules of identifiers.md.
        let table: &[(&[u8; 3], &[u8; 7], u8)] = &[
            (b"ABC", b"1234567", 6),
            (b"ABC", b"1234568", 4),
            (b"ABC", b"1234569", 2),
            (b"ABC", b"0000000", 2),
            (b"000", b"0000000", 0),
            (b"000", b"0000001", 8),
            (b"000", b"0000010", 9),
            (b"ZZZ", b"9999999", 0),
            (b"DEF", b"0000001", 7),
            (b"12A", b"5555555", 5),
        ];
        for (filer, number, want) in table {
            assert_eq!(
                entry_check_digit(filer, number),
                Some(*want),
                "{:?} {:?}",
                filer,
                number
            );
        }
        assert_eq!(entry_check_digit(b"ab1", b"1234567"), None);
    }

    #[test]
    fn ior_formats() {
        for ok in [&b"12-3456789AB"[..], b"66-053115000", b"123-45-6789 ", b"073802-00093"] {
            assert!(IorNumber::parse(ok).is_some(), "{:?}", std::str::from_utf8(ok));
        }
        for bad in [
            &b"12-3456789AI"[..], // I not allowed in a suffix
            b"12-3456789OZ",
            b"1-23456789AB",
            b"12 3456789AB",
            b"123-45-67890",
            b"123-45-6789X",
            b"073802-0009 ",
            b"0738020-0093",
            b"            ",
            b"12-3456789ab",
            b"123456789012",
        ] {
            assert!(IorNumber::parse(bad).is_none(), "{:?}", std::str::from_utf8(bad));
        }
    }

    #[test]
    fn dates() {
        assert!(Date::parse_ccyymmdd(b"20240229").is_some());
        assert!(Date::parse_ccyymmdd(b"20250229").is_none());
        assert!(Date::parse_ccyymmdd(b"20261301").is_none());
        assert!(Date::parse_ccyymmdd(b"2026 101").is_none());
        assert_eq!(Date::parse_mmddyy(b"031526"), Date::new(2026, 3, 15));
        assert_eq!(Date::new(2026, 3, 15).unwrap().mmddyy(), 31526);
        assert_eq!(Date::from_days_since_epoch(0), Date::new(1970, 1, 1).unwrap());
        assert_eq!(Date::from_days_since_epoch(20_527), Date::new(2026, 3, 15).unwrap());
        assert_eq!(Date::parse_iso("2026-03-15"), Date::new(2026, 3, 15));
    }

    #[test]
    fn quantities() {
        assert_eq!(Hundredths::parse(b"000000123450"), Some(Hundredths::new(123_450)));
        assert_eq!(Hundredths::new(123_450).to_string(), "1234.50");
        assert_eq!(Hundredths::parse(b"0000001234 0"), None);
        assert_eq!(Hundredths::new(u64::MAX).checked_add(Hundredths::new(1)), None);
        assert_eq!(Hundredths::new(1).checked_sub(Hundredths::new(2)), None);
    }

    #[test]
    fn certificate_numbers_and_coverage() {
        assert!(CertificateNumber::parse(b"9AU12345B ").is_some());
        assert!(CertificateNumber::parse(b"AU-2026-01").is_some());
        assert!(CertificateNumber::parse(b"9AU 12345B").is_none());
        assert!(CertificateNumber::parse(b"          ").is_none());
        assert!(CertificateNumber::parse(b"9au12345b ").is_none());
        let c = HtsCoverage::parse(b"0201      ").unwrap();
        assert!(c.covers(b"0201300080"));
        assert!(!c.covers(b"0202300080"));
        assert!(HtsCoverage::parse(b"020       ").is_none());
        assert!(HtsCoverage::parse(b"02 01     ").is_none());
        assert!(Unit::parse(b"KG ").is_some());
        assert!(Unit::parse(b" KG").is_none());
        assert!(Unit::parse(b"LBS").is_none());
    }
}
