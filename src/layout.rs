//! Record layouts as data.
//!
//! The tables in `record-layouts/*.md` are compiled into the binary and parsed
//! once. Everything that reads or writes a record goes through them: field
//! slicing, class checks, rendering, `check` and `explain`.

use std::sync::OnceLock;

use crate::codes::Code;

/// The record-layout documents, in the order `explain` lists them.
pub const SOURCES: &[(&str, &str)] = &[
    ("envelope.md", include_str!("../record-layouts/envelope.md")),
    ("certificates.md", include_str!("../record-layouts/certificates.md")),
    ("entry-summary.md", include_str!("../record-layouts/entry-summary.md")),
    ("queries.md", include_str!("../record-layouts/queries.md")),
];

/// Field classes of envelope.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A-Z and space.
    A,
    /// 0-9, right-justified, zero-filled.
    N,
    /// A-Z, 0-9 and space.
    AN,
    /// Any printable ASCII.
    X,
    /// Filler: spaces only.
    S,
    /// Not used by this system; never checked.
    I,
}

/// Designation of an inbound field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Designation {
    Mandatory,
    Conditional,
    Optional,
    /// Output records and filler.
    None,
}

/// One row of a layout table.
#[derive(Debug)]
pub struct Field {
    pub key: &'static str,
    /// 0-based offset of the first byte.
    pub start: usize,
    pub len: usize,
    pub class: Class,
    pub designation: Designation,
    /// Condition reported when an inbound field is missing or of the wrong class.
    pub code: Option<Code>,
    pub name: &'static str,
}

/// What a field holds, judged by its class and designation alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldState {
    /// All spaces in a field that is not filler.
    Absent,
    /// Holds only what its class allows.
    Valid,
    /// Holds something its class forbids.
    Invalid,
}

impl Field {
    /// The first column (1-based) of the field.
    pub fn column(&self) -> usize {
        self.start + 1
    }

    /// The last column (1-based) of the field.
    pub fn end_column(&self) -> usize {
        self.start + self.len
    }

    /// The field's bytes in an 80-byte record.
    #[inline]
    pub fn slice<'a>(&self, record: &'a [u8]) -> &'a [u8] {
        &record[self.start..self.start + self.len]
    }

    /// Classifies the field's bytes (one pass over a class table).
    #[inline]
    pub fn state(&self, bytes: &[u8]) -> FieldState {
        if self.class == Class::I {
            return FieldState::Valid;
        }
        let mask = class_mask(self.class);
        let mut all = 0xffu8;
        let mut blank = true;
        for &b in bytes {
            all &= CLASS_TABLE[b as usize];
            blank &= b == b' ';
        }
        match self.class {
            Class::I => FieldState::Valid,
            Class::S if blank => FieldState::Valid,
            Class::S => FieldState::Invalid,
            _ if blank => FieldState::Absent,
            _ if all & mask == mask => FieldState::Valid,
            _ => FieldState::Invalid,
        }
    }

    /// The syntax problem of this field in `record`, if any: a wrong class,
    /// filler that is not blank, or a mandatory field left blank.
    pub fn syntax_problem(&self, record: &[u8]) -> Option<Code> {
        match self.state(self.slice(record)) {
            FieldState::Invalid => self.code,
            FieldState::Absent if self.designation == Designation::Mandatory => self.code,
            _ => None,
        }
    }
}

const BIT_A: u8 = 1;
const BIT_N: u8 = 2;
const BIT_AN: u8 = 4;
const BIT_X: u8 = 8;
const BIT_S: u8 = 16;

/// For each byte, the classes that allow it.
static CLASS_TABLE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        let mut bits = BIT_X;
        if b == b' ' {
            bits |= BIT_A | BIT_AN | BIT_S;
        }
        if b >= b'A' && b <= b'Z' {
            bits |= BIT_A | BIT_AN;
        }
        if b >= b'0' && b <= b'9' {
            bits |= BIT_N | BIT_AN;
        }
        t[b as usize] = bits;
        b += 1;
    }
    t
};

fn class_mask(class: Class) -> u8 {
    match class {
        Class::A => BIT_A,
        Class::N => BIT_N,
        Class::AN => BIT_AN,
        Class::X => BIT_X,
        Class::S => BIT_S,
        Class::I => 0,
    }
}

/// Whether a byte is allowed by a class (spaces are allowed everywhere a
/// field may be padded; N fields are checked by their own parsers).
#[inline]
pub fn class_allows(class: Class, b: u8) -> bool {
    let mask = class_mask(class);
    CLASS_TABLE[b as usize] & mask == mask
}

/// One record's layout.
#[derive(Debug)]
pub struct Layout {
    /// The record identifier: `A`, `G1`, `50`, ...
    pub id: &'static str,
    pub title: &'static str,
    /// The document the table came from.
    pub source: &'static str,
    pub fields: Vec<Field>,
    /// The checks of `fields` compiled to column masks, for [`Layout::syntax_clean`].
    plan: Plan,
}

/// A layout's syntax checks as masks over the 80 columns (bit `i` is
/// position `i + 1`): built from the fields that can report a problem.
#[derive(Debug, Default)]
struct Plan {
    /// Columns that must hold A-Z or a space (class A).
    alpha: u128,
    /// Columns that must hold A-Z, 0-9 or a space (class AN).
    alnum: u128,
    /// Columns that must hold a space (class S).
    space: u128,
    /// N fields: all digits or all spaces.
    numeric: Vec<u128>,
    /// Mandatory fields: not all spaces.
    mandatory: Vec<u128>,
}

impl Plan {
    fn new(fields: &[Field]) -> Plan {
        let mut plan = Plan::default();
        for f in fields {
            // The identifier decides the layout and is not checked again; a
            // field without a condition code reports nothing.
            if f.start == 0 || f.code.is_none() || f.start + f.len > 80 || f.len == 0 {
                continue;
            }
            let mask = ((1u128 << f.len) - 1) << f.start;
            match f.class {
                Class::A => plan.alpha |= mask,
                Class::AN => plan.alnum |= mask,
                Class::S => plan.space |= mask,
                Class::N => plan.numeric.push(mask),
                // Every byte of a well-formed record is printable.
                Class::X | Class::I => {}
            }
            if f.designation == Designation::Mandatory && !matches!(f.class, Class::S | Class::I) {
                plan.mandatory.push(mask);
            }
        }
        plan
    }
}

/// For each of the 80 columns of a record: whether it holds a space, A-Z, 0-9.
#[derive(Clone, Copy)]
struct ColumnMasks {
    space: u128,
    upper: u128,
    digit: u128,
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn column_masks(record: &[u8; 80]) -> ColumnMasks {
    use std::arch::x86_64::*;
    let (mut space, mut upper, mut digit) = (0u128, 0u128, 0u128);
    for (k, chunk) in record.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline; the load is unaligned
        // and reads exactly the 16 bytes of `chunk`.
        let (s, u, d) = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            let s = _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8));
            let a = _mm_sub_epi8(v, _mm_set1_epi8(b'A' as i8));
            let u = _mm_cmpeq_epi8(_mm_min_epu8(a, _mm_set1_epi8(25)), a);
            let z = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
            let d = _mm_cmpeq_epi8(_mm_min_epu8(z, _mm_set1_epi8(9)), z);
            (_mm_movemask_epi8(s), _mm_movemask_epi8(u), _mm_movemask_epi8(d))
        };
        let shift = 16 * k;
        space |= u128::from(s as u16) << shift;
        upper |= u128::from(u as u16) << shift;
        digit |= u128::from(d as u16) << shift;
    }
    ColumnMasks { space, upper, digit }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn column_masks(record: &[u8; 80]) -> ColumnMasks {
    let (mut space, mut upper, mut digit) = (0u128, 0u128, 0u128);
    for (i, &b) in record.iter().enumerate() {
        space |= u128::from(b == b' ') << i;
        upper |= u128::from(b.is_ascii_uppercase()) << i;
        digit |= u128::from(b.is_ascii_digit()) << i;
    }
    ColumnMasks { space, upper, digit }
}

impl Layout {
    /// Whether a well-formed record (80 printable bytes) has no syntax
    /// problem in any field but the identifier: every field holds what its
    /// class allows, filler is blank and mandatory fields are present. When
    /// this says `false`, [`Field::syntax_problem`] tells which fields.
    #[inline]
    pub fn syntax_clean(&self, record: &[u8; 80]) -> bool {
        let p = &self.plan;
        let m = column_masks(record);
        let alpha = m.upper | m.space;
        let alnum = alpha | m.digit;
        if (p.alpha & !alpha) | (p.alnum & !alnum) | (p.space & !m.space) != 0 {
            return false;
        }
        p.numeric.iter().all(|&f| f & !m.digit == 0 || f & !m.space == 0)
            && p.mandatory.iter().all(|&f| f & !m.space != 0)
    }

    /// The field named `key`. Layout keys are fixed by the code that uses them
    /// and a test reaches every one, so a missing key is a programming error.
    pub fn field(&self, key: &str) -> &Field {
        self.fields
            .iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| panic!("layout {} has no field {key}", self.id))
    }

    /// The bytes of field `key` in `record`.
    #[inline]
    pub fn get<'a>(&self, record: &'a [u8], key: &str) -> &'a [u8] {
        self.field(key).slice(record)
    }

    /// The field covering a 1-based column.
    pub fn field_at(&self, column: usize) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.column() <= column && column <= f.end_column())
    }

    /// Splits a record into its fields with nom, in layout order.
    pub fn split<'a>(&'a self, record: &'a [u8]) -> Vec<(&'a Field, &'a [u8])> {
        let mut rest = record;
        let mut out = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let taken: nom::IResult<&[u8], &[u8]> = nom::bytes::complete::take(field.len)(rest);
            match taken {
                Ok((tail, value)) => {
                    out.push((field, value));
                    rest = tail;
                }
                Err(_) => break,
            }
        }
        out
    }

    /// A blank record of this layout for rendering.
    pub fn blank(&'static self) -> RecordBuf {
        RecordBuf::new(self)
    }
}

/// An 80-byte output record being filled field by field. `Copy`, so that a
/// record rendered many times can start from one filled template.
#[derive(Clone, Copy)]
pub struct RecordBuf {
    layout: &'static Layout,
    bytes: [u8; 80],
}

impl RecordBuf {
    fn new(layout: &'static Layout) -> Self {
        let mut bytes = [b' '; 80];
        for f in &layout.fields {
            if f.class == Class::N {
                bytes[f.start..f.start + f.len].fill(b'0');
            }
        }
        bytes[..layout.id.len()].copy_from_slice(layout.id.as_bytes());
        RecordBuf { layout, bytes }
    }

    /// Writes text left-justified and space-filled, cut at the field's length.
    pub fn text(self, key: &str, value: &[u8]) -> Self {
        let f = self.layout.field(key);
        self.text_in(f, value)
    }

    /// [`RecordBuf::text`] for a field already looked up (a hot loop).
    pub fn text_in(mut self, f: &Field, value: &[u8]) -> Self {
        let dst = &mut self.bytes[f.start..f.start + f.len];
        dst.fill(b' ');
        let n = value.len().min(f.len);
        dst[..n].copy_from_slice(&value[..n]);
        self
    }

    /// Writes a number right-justified and zero-filled. Values too wide for
    /// the field are written as all nines rather than cut (they cannot occur
    /// for quantities, which are bounded by their 12-digit input fields).
    pub fn number(self, key: &str, value: u64) -> Self {
        let f = self.layout.field(key);
        self.number_in(f, value)
    }

    /// [`RecordBuf::number`] for a field already looked up (a hot loop).
    pub fn number_in(mut self, f: &Field, value: u64) -> Self {
        let dst = &mut self.bytes[f.start..f.start + f.len];
        let mut v = value;
        let max = 10u64.checked_pow(f.len as u32).map(|m| m - 1).unwrap_or(u64::MAX);
        if v > max {
            v = max;
        }
        for slot in dst.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self
    }

    /// Copies bytes as read into a field of the same width (padding or
    /// cutting otherwise), replacing anything unprintable with `?`.
    pub fn as_read(self, key: &str, value: &[u8]) -> Self {
        let f = self.layout.field(key);
        self.as_read_in(f, value)
    }

    /// [`RecordBuf::as_read`] for a field already looked up (a hot loop).
    pub fn as_read_in(mut self, f: &Field, value: &[u8]) -> Self {
        let dst = &mut self.bytes[f.start..f.start + f.len];
        dst.fill(b' ');
        for (slot, &b) in dst.iter_mut().zip(value) {
            *slot = if (0x20..=0x7e).contains(&b) { b } else { b'?' };
        }
        self
    }

    pub fn finish(self) -> [u8; 80] {
        self.bytes
    }
}

/// Errors in the embedded layout tables.
#[derive(Debug, thiserror::Error)]
#[error("record-layouts/{file} line {line}: {message}")]
pub struct LayoutError {
    pub file: &'static str,
    pub line: usize,
    pub message: String,
}

/// Parses one layout document.
pub fn parse_document(file: &'static str, text: &'static str) -> Result<Vec<Layout>, LayoutError> {
    let mut layouts: Vec<Layout> = Vec::new();
    let err = |line: usize, message: String| LayoutError { file, line, message };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(heading) = line.strip_prefix("## ") {
            let (id, title) = heading.split_once(' ').unwrap_or((heading, ""));
            layouts.push(Layout {
                id,
                title: title.trim(),
                source: file,
                fields: Vec::new(),
                plan: Plan::default(),
            });
            continue;
        }
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&'static str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&"pos") || cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        let Some(layout) = layouts.last_mut() else {
            return Err(err(n, "table row before any `## ID` heading".into()));
        };
        if cells.len() != 7 {
            return Err(err(n, format!("expected 7 cells, found {}", cells.len())));
        }
        let (first, last) = match cells[0].split_once('-') {
            Some((a, b)) => (a, b),
            None => (cells[0], cells[0]),
        };
        let first: usize = first
            .parse()
            .map_err(|_| err(n, format!("bad position {:?}", cells[0])))?;
        let last: usize = last
            .parse()
            .map_err(|_| err(n, format!("bad position {:?}", cells[0])))?;
        let len: usize = cells[1]
            .parse()
            .map_err(|_| err(n, format!("bad length {:?}", cells[1])))?;
        if first == 0 || last < first || last - first + 1 != len {
            return Err(err(n, format!("positions {} do not give length {len}", cells[0])));
        }
        let class = match cells[2] {
            "A" => Class::A,
            "N" => Class::N,
            "AN" => Class::AN,
            "X" => Class::X,
            "S" => Class::S,
            "I" => Class::I,
            other => return Err(err(n, format!("unknown class {other:?}"))),
        };
        let designation = match cells[3] {
            "M" => Designation::Mandatory,
            "C" => Designation::Conditional,
            "O" => Designation::Optional,
            "-" => Designation::None,
            other => return Err(err(n, format!("unknown designation {other:?}"))),
        };
        let code = match cells[5] {
            "-" => None,
            c => Some(Code::from_wire(c).ok_or_else(|| err(n, format!("unknown condition code {c:?}")))?),
        };
        layout.fields.push(Field {
            key: cells[4],
            start: first - 1,
            len,
            class,
            designation,
            code,
            name: cells[6],
        });
    }
    for layout in &mut layouts {
        layout.plan = Plan::new(&layout.fields);
    }
    Ok(layouts)
}

/// Every layout of the contract.
pub fn all() -> &'static [Layout] {
    static ALL: OnceLock<Vec<Layout>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        for (file, text) in SOURCES {
            match parse_document(file, text) {
                Ok(mut layouts) => v.append(&mut layouts),
                // The tables are compiled in and tested; a bad table is a build defect.
                Err(e) => panic!("{e}"),
            }
        }
        v
    })
}

/// The layout of record `id`.
pub fn by_id(id: &str) -> Option<&'static Layout> {
    by_id_bytes(id.as_bytes())
}

/// The layout of the record identifier `id` as read.
pub fn by_id_bytes(id: &[u8]) -> Option<&'static Layout> {
    let key = id_key(id)?;
    static INDEX: OnceLock<Vec<(u16, usize)>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        all()
            .iter()
            .enumerate()
            .filter_map(|(i, l)| id_key(l.id.as_bytes()).map(|k| (k, i)))
            .collect()
    });
    index.iter().find(|(k, _)| *k == key).map(|&(_, i)| &all()[i])
}

/// One- and two-character identifiers as a number, for a quick look-up.
fn id_key(id: &[u8]) -> Option<u16> {
    match id {
        [a] => Some(u16::from(*a) << 8 | u16::from(b' ')),
        [a, b] => Some(u16::from(*a) << 8 | u16::from(*b)),
        _ => None,
    }
}

/// The layout of record `id`, for identifiers fixed in code.
pub fn get(id: &str) -> &'static Layout {
    by_id(id).unwrap_or_else(|| panic!("no layout for record {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_covers_1_to_80_exactly_once() {
        let expected = [
            "A", "B", "Y", "Z", "X0", "X1", "G1", "G2", "S1", "10", "11", "40", "50", "52", "E0", "E1", "C1", "Q1",
            "C0", "C2", "C4", "C3", "C9",
        ];
        let ids: Vec<&str> = all().iter().map(|l| l.id).collect();
        for id in expected {
            assert!(ids.contains(&id), "missing layout {id}");
        }
        assert_eq!(ids.len(), expected.len());
        for layout in all() {
            let mut covered = [0u8; 80];
            for f in &layout.fields {
                for c in covered.iter_mut().skip(f.start).take(f.len) {
                    *c += 1;
                }
            }
            assert!(
                covered.iter().all(|&c| c == 1),
                "layout {} covers {:?}",
                layout.id,
                covered
            );
            assert_eq!(layout.fields[0].start, 0);
            assert_eq!(layout.fields[0].key, "id");
            assert_eq!(layout.fields[0].len, layout.id.len());
        }
    }

    #[test]
    fn inbound_fields_name_a_code_unless_unchecked() {
        for layout in all() {
            let inbound = layout.fields.iter().any(|f| f.designation != Designation::None);
            if !inbound {
                continue;
            }
            for f in &layout.fields {
                let checked = f.class != Class::I && !(f.class == Class::X && f.designation == Designation::Optional);
                if checked && f.key != "reference" {
                    assert!(f.code.is_some(), "{}.{} has no condition code", layout.id, f.key);
                }
            }
        }
    }

    #[test]
    fn renders_by_class() {
        let r = get("S1")
            .blank()
            .text("country", b"AU")
            .text("number", b"9AU12345B")
            .number("remaining", 2_000_000)
            .finish();
        let want = format!("{:<60}{}{:<8}", "S1AU9AU12345B", "000002000000", "");
        assert_eq!(std::str::from_utf8(&r).unwrap(), want);
    }

    #[test]
    fn field_states() {
        let g1 = get("G1");
        let q = g1.field("quantity");
        assert_eq!(q.state(b"000000000100"), FieldState::Valid);
        assert_eq!(q.state(b"            "), FieldState::Absent);
        assert_eq!(q.state(b"00000000010 "), FieldState::Invalid);
        assert_eq!(g1.field("filler").state(b"      x"), FieldState::Invalid);
        assert_eq!(g1.field("country").state(b"au"), FieldState::Invalid);
    }

    #[test]
    fn syntax_clean_agrees_with_the_fields() {
        let bytes = b" AZ09az-!~\\";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for layout in all() {
            for _ in 0..2000 {
                let mut rec = [b' '; 80];
                rec[..layout.id.len()].copy_from_slice(layout.id.as_bytes());
                // Fill each field with digits, letters, spaces or a mix, so that every state occurs.
                for f in &layout.fields[1..] {
                    let style = next() % 5;
                    for b in &mut rec[f.start..f.start + f.len] {
                        *b = match style {
                            0 => b' ',
                            1 => b'0' + (next() % 10) as u8,
                            2 => b'A' + (next() % 26) as u8,
                            3 => b"AZ09 "[(next() % 5) as usize],
                            _ => bytes[(next() % bytes.len() as u64) as usize],
                        };
                    }
                }
                let slow = layout.fields[1..].iter().all(|f| f.syntax_problem(&rec).is_none());
                assert_eq!(
                    layout.syntax_clean(&rec),
                    slow,
                    "{} {:?}",
                    layout.id,
                    std::str::from_utf8(&rec)
                );
            }
        }
    }

    #[test]
    fn split_gives_every_field() {
        let rec = [b' '; 80];
        let parts = get("50").split(&rec);
        assert_eq!(parts.len(), get("50").fields.len());
        assert_eq!(parts.iter().map(|(_, v)| v.len()).sum::<usize>(), 80);
    }
}
