//! Property tests: arbitrary input never panics the framing, the envelope
//! checks or `check`/`explain`; the engine always answers with well-formed
//! response batches, one per input batch; generated valid records round-trip
//! and generated valid certificates are accepted.
//!
//! 256 cases per property; `ECERTD_LONG_TESTS=1` runs 4096.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use proptest::prelude::*;
use proptest::sample::Index;

use ecertd::diagnose;
use ecertd::engine::{BatchResult, Engine, Outcome, Session};
use ecertd::envelope::{self, Channel};
use ecertd::layout::{self, Class, FieldState, Layout};
use ecertd::record::{BatchKind, BatchReader, RawBatch, KEEP};
use ecertd::store::Store;
use ecertd::types::{self, CertificateNumber, Country, Date, HtsCoverage, Hundredths, IorNumber, Unit};

fn cases() -> u32 {
    if std::env::var("ECERTD_LONG_TESTS").as_deref() == Ok("1") {
        4096
    } else {
        256
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- inputs

/// Every input file of the repository: valid and invalid fixtures, golden examples.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut v = Vec::new();
        for dir in ["fixtures/valid", "fixtures/invalid", "tests/golden"] {
            for p in common::files(dir, ".txt") {
                v.push(std::fs::read(p).unwrap());
            }
        }
        assert_eq!(v.len(), 27);
        v
    })
}

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

/// Edits applied to a fixture file.
#[derive(Clone, Debug)]
enum Edit {
    Truncate(Index),
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Inserts line `line` of corpus file `file` before line `at`.
    Splice {
        file: Index,
        line: Index,
        at: Index,
    },
    DropLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Inserts a line of `len` copies of `byte`.
    LongLine {
        at: Index,
        len: usize,
        byte: u8,
    },
    CrlfEverywhere,
    /// Cuts line `line` to a shorter length (often very short: the envelope
    /// fields are in the first 20 columns).
    CutLine(Index, Index, bool),
    /// Lengthens line `line` by a few bytes.
    ExtendLine(Index, Vec<u8>),
    /// Sets one byte of line `line`.
    SetInLine(Index, Index, u8),
}

fn odd_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => 0x20u8..0x7f,
        1 => Just(0u8),
        1 => Just(0xffu8),
        1 => Just(b'\r'),
        1 => Just(b'\n'),
        1 => Just(0x1bu8),
        1 => 0x80u8..=0xff,
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => any::<Index>().prop_map(Edit::Truncate),
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        3 => (any::<Index>(), odd_byte()).prop_map(|(i, b)| Edit::SetByte(i, b)),
        2 => (any::<Index>(), prop::collection::vec(odd_byte(), 1..20)).prop_map(|(i, v)| Edit::Insert(i, v)),
        2 => (any::<Index>(), 1usize..100).prop_map(|(i, n)| Edit::Delete(i, n)),
        4 => (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(file, line, at)| Edit::Splice { file, line, at }),
        2 => any::<Index>().prop_map(Edit::DropLine),
        2 => any::<Index>().prop_map(Edit::DuplicateLine),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        1 => (any::<Index>(), 81usize..50_000, odd_byte()).prop_map(|(at, len, byte)| Edit::LongLine { at, len, byte }),
        1 => Just(Edit::CrlfEverywhere),
        4 => (any::<Index>(), any::<Index>(), any::<bool>()).prop_map(|(l, n, short)| Edit::CutLine(l, n, short)),
        2 => (any::<Index>(), prop::collection::vec(odd_byte(), 1..4)).prop_map(|(l, v)| Edit::ExtendLine(l, v)),
        6 => (any::<Index>(), any::<Index>(), odd_byte()).prop_map(|(l, p, b)| Edit::SetInLine(l, p, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    let join = |lines: Vec<Vec<u8>>| -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(&l);
            out.push(b'\n');
        }
        out
    };
    for e in edits {
        match e {
            Edit::Truncate(i) => {
                let n = i.index(bytes.len() + 1);
                bytes.truncate(n);
            }
            Edit::FlipBit(i, bit) if !bytes.is_empty() => {
                let n = i.index(bytes.len());
                bytes[n] ^= 1 << bit;
            }
            Edit::SetByte(i, b) if !bytes.is_empty() => {
                let n = i.index(bytes.len());
                bytes[n] = *b;
            }
            Edit::Insert(i, v) => {
                let n = i.index(bytes.len() + 1);
                bytes.splice(n..n, v.iter().copied());
            }
            Edit::Delete(i, len) if !bytes.is_empty() => {
                let n = i.index(bytes.len());
                let end = (n + len).min(bytes.len());
                bytes.drain(n..end);
            }
            Edit::Splice { file, line, at } => {
                let src = lines_of(&corpus()[file.index(corpus().len())]);
                let mut lines = lines_of(&bytes);
                if !src.is_empty() {
                    let l = src[line.index(src.len())].clone();
                    lines.insert(at.index(lines.len() + 1), l);
                }
                bytes = join(lines);
            }
            Edit::DropLine(i) => {
                let mut lines = lines_of(&bytes);
                if !lines.is_empty() {
                    lines.remove(i.index(lines.len()));
                }
                bytes = join(lines);
            }
            Edit::DuplicateLine(i) => {
                let mut lines = lines_of(&bytes);
                if !lines.is_empty() {
                    let n = i.index(lines.len());
                    lines.insert(n, lines[n].clone());
                }
                bytes = join(lines);
            }
            Edit::SwapLines(a, b) => {
                let mut lines = lines_of(&bytes);
                if !lines.is_empty() {
                    let (x, y) = (a.index(lines.len()), b.index(lines.len()));
                    lines.swap(x, y);
                }
                bytes = join(lines);
            }
            Edit::LongLine { at, len, byte } => {
                let mut lines = lines_of(&bytes);
                let mut l = vec![*byte; *len];
                l[0] = b'A';
                lines.insert(at.index(lines.len() + 1), l);
                bytes = join(lines);
            }
            Edit::CrlfEverywhere => {
                let mut out = Vec::with_capacity(bytes.len() * 2);
                for &b in &bytes {
                    if b == b'\n' {
                        out.push(b'\r');
                    }
                    out.push(b);
                }
                bytes = out;
            }
            Edit::CutLine(l, n, short) => {
                let mut lines = lines_of(&bytes);
                if !lines.is_empty() {
                    let i = l.index(lines.len());
                    let len = lines[i].len();
                    let keep = n.index(if *short { len.min(20) } else { len }.max(1));
                    lines[i].truncate(keep);
                }
                bytes = join(lines);
            }
            Edit::ExtendLine(l, v) => {
                let mut lines = lines_of(&bytes);
                if !lines.is_empty() {
                    let i = l.index(lines.len());
                    lines[i].extend_from_slice(v);
                }
                bytes = join(lines);
            }
            Edit::SetInLine(l, p, b) => {
                let mut lines = lines_of(&bytes);
                if !lines.is_empty() {
                    let i = l.index(lines.len());
                    if !lines[i].is_empty() {
                        let at = p.index(lines[i].len());
                        lines[i][at] = *b;
                    }
                }
                bytes = join(lines);
            }
            _ => {}
        }
    }
    bytes
}

/// A fixture file, or two concatenated, with a few edits.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<Index>(),
        prop::option::of(any::<Index>()),
        prop::collection::vec(edit(), 0..6),
    )
        .prop_map(|(a, b, edits)| {
            let c = corpus();
            let mut bytes = c[a.index(c.len())].clone();
            if let Some(b) = b {
                bytes.extend_from_slice(&c[b.index(c.len())]);
            }
            apply(bytes, &edits)
        })
}

/// Lines that look like records: a known identifier, then odd bytes.
fn record_like_lines() -> impl Strategy<Value = Vec<u8>> {
    let ids = prop::sample::select(vec![
        "A", "B", "Y", "Z", "G1", "G2", "10", "11", "40", "50", "52", "C1", "Q1", "X0", "", "20",
    ]);
    let line = (
        ids,
        prop::collection::vec(odd_byte(), 0..100),
        prop::sample::select(vec!["\n", "\r\n", "", "\r"]),
    );
    prop::collection::vec(line, 0..16).prop_map(|lines| {
        let mut out = Vec::new();
        for (id, body, end) in lines {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(end.as_bytes());
        }
        out
    })
}

fn arbitrary_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..600),
        2 => record_like_lines(),
        5 => mutated_fixture(),
        1 => big_input(),
    ]
}

/// Up to 100 000 bytes from a seed: cheap to generate, unlike a vector of
/// as many value trees. Mostly printable, with line ends and odd bytes.
fn big_input() -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), 0usize..100_000, 1u64..200).prop_map(|(seed, len, line_every)| {
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(len + 1);
        v.push(b'A');
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(match x % (line_every * 20) {
                0 => b'\n',
                1 => 0,
                2 => 0xff,
                3 => b'\r',
                _ => b' ' + (x >> 8) as u8 % 95,
            });
        }
        v
    })
}

/// The channel of a file's application (its first record's positions 26-27).
fn channel_of(file: &[u8]) -> Channel {
    match file.get(25..27) {
        Some(b"AE" | b"EC") => Channel::Abi,
        _ => Channel::Ecert,
    }
}

/// A fixture or example on its own channel with a few printable bytes of its
/// detail records changed and its batch references blanked (so that nothing
/// is a duplicate or a reused reference): mostly processed batches whose
/// transactions are accepted or refused one by one.
fn field_mutated_fixture() -> impl Strategy<Value = (Vec<u8>, Channel)> {
    let edit = (any::<Index>(), 2usize..80, 0x20u8..0x7f);
    (any::<Index>(), prop::collection::vec(edit, 0..4)).prop_map(|(f, edits)| {
        let c = corpus();
        let file = &c[f.index(c.len())];
        let mut lines = lines_of(file);
        for l in lines.iter_mut().filter(|l| l.first() == Some(&b'A') && l.len() == 80) {
            l[59..].fill(b' ');
        }
        let details: Vec<usize> = (0..lines.len())
            .filter(|&i| !matches!(lines[i].first(), Some(b'A' | b'B' | b'Y' | b'Z')))
            .collect();
        if !details.is_empty() {
            for (line, pos, byte) in edits {
                let l = &mut lines[details[line.index(details.len())]];
                if pos < l.len() {
                    l[pos] = byte;
                }
            }
        }
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(&l);
            out.push(b'\n');
        }
        (out, channel_of(file))
    })
}

fn batches(input: &[u8]) -> Vec<RawBatch> {
    let mut r = BatchReader::new(input);
    let mut v = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        v.push(b);
    }
    v
}

// ------------------------------------------------------- reader + checks

proptest! {
    #![proptest_config(config())]

    /// The reader gives every line back (line end removed, at most KEEP
    /// bytes kept), in batches; `frame`, `check` and `explain` never panic,
    /// locate problems inside the batch, and `explain` prints no raw control byte.
    #[test]
    fn framing_and_diagnostics_never_panic(input in arbitrary_input()) {
        let raws = batches(&input);
        prop_assert!(!raws.is_empty());
        let mut expected_lines = lines_of(&input).into_iter();
        let mut diagnostics = 0u64;
        for raw in &raws {
            if raw.kind == BatchKind::Empty {
                prop_assert!(input.is_empty());
                prop_assert_eq!(raws.len(), 1);
            }
            for rec in raw.records() {
                let mut line = expected_lines.next().expect("more records than lines");
                if line.last() == Some(&b'\r') && line.len() <= KEEP + 1 {
                    line.pop();
                }
                prop_assert_eq!(rec.bytes, &line[..line.len().min(KEEP)]);
                let full = line.len() as u64;
                prop_assert!(rec.len == full || (rec.len > 80 && full > 80));
                let printable = line.iter().all(|b| (0x20..=0x7e).contains(b));
                prop_assert_eq!(rec.is_well_formed(), line.len() == 80 && printable);
            }
            for channel in [None, Some(Channel::Abi), Some(Channel::Ecert)] {
                let env = envelope::frame(raw, channel);
                for b in &env.blocks {
                    prop_assert!(b.b < b.y && b.y <= raw.len());
                }
            }
            let problems = diagnose::batch_problems(raw);
            for p in &problems {
                prop_assert!(p.record <= raw.len());
                prop_assert!(p.column <= 80);
                prop_assert!(p.record >= 1 || raw.kind == BatchKind::Empty);
            }
            diagnostics += problems.len() as u64;
        }
        prop_assert!(expected_lines.next().is_none(), "fewer records than lines");
        let counted = diagnose::check(&input[..], |d| {
            assert!(d.to_string().bytes().all(|b| (0x20..=0x7e).contains(&b)));
            Ok(())
        }).unwrap();
        prop_assert_eq!(counted, diagnostics);
        let mut out = Vec::new();
        let explained = diagnose::explain(&input[..], &mut out).unwrap();
        prop_assert_eq!(explained, diagnostics);
        prop_assert!(out.iter().all(|&b| b == b'\n' || (0x20..=0x7e).contains(&b)));
    }
}

// ---------------------------------------------------------------- engine

/// One store for the whole property (registering senders costs a password
/// hash each, as does every first authentication of a session).
///
/// A file is answered for the sender of its first enveloped batch, and a
/// session remembers only that sender and the passwords it checked: so cases
/// whose first enveloped batch names the same sender (or none) on the same
/// channel can share a session and get the bytes a fresh one would give.
struct EngineShared {
    store: Store,
    sessions: HashMap<(bool, Option<[u8; 3]>), Session>,
}

fn engine_shared() -> MutexGuard<'static, EngineShared> {
    static SHARED: OnceLock<Mutex<EngineShared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            Mutex::new(EngineShared {
                store: common::store_with(common::DEMO_SENDERS),
                sessions: HashMap::new(),
            })
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn run_engine(shared: &mut EngineShared, channel: Channel, input: &[u8], raws: &[RawBatch]) -> Vec<BatchResult> {
    let first = raws.iter().find(|r| r.kind == BatchKind::Enveloped).and_then(|r| {
        let h = envelope::frame(r, Some(channel)).header;
        h.sender_readable.then_some(h.sender)
    });
    let session = shared
        .sessions
        .entry((channel == Channel::Abi, first))
        .or_insert_with(|| Session::new(channel));
    let mut engine = Engine::new(&mut shared.store, common::business_date());
    let mut results = Vec::new();
    engine
        .process_stream(session, input, 8, |r| {
            results.push(r.clone());
            Ok(())
        })
        .unwrap();
    results
}

/// A response batch: 80 printable bytes + LF per record, A (B details Y)+ Z,
/// each Y counting its details; a rejection has a blank B, X0/X1 pairs, the
/// final X1RF999 and a Y with positions 2-12 blank.
fn check_response(r: &BatchResult) -> Result<(), TestCaseError> {
    let resp = &r.response;
    prop_assert!(!resp.is_empty());
    prop_assert_eq!(resp.len() % 81, 0, "response length {}", resp.len());
    let recs: Vec<&[u8]> = resp.chunks(81).collect();
    for rec in &recs {
        prop_assert_eq!(rec[80], b'\n');
        prop_assert!(
            rec[..80].iter().all(|b| (0x20..=0x7e).contains(b)),
            "unprintable: {:?}",
            rec
        );
    }
    prop_assert_eq!(recs[0][0], b'A');
    prop_assert_eq!(recs[recs.len() - 1][0], b'Z');
    let mut i = 1;
    let mut blocks = 0;
    while i < recs.len() - 1 {
        prop_assert_eq!(recs[i][0], b'B', "record {} should open a block", i + 1);
        let start = i;
        i += 1;
        while i < recs.len() - 1 && !matches!(recs[i][0], b'A' | b'B' | b'Y' | b'Z') {
            i += 1;
        }
        prop_assert!(i < recs.len() - 1 && recs[i][0] == b'Y', "block without Y");
        let details = i - start - 1;
        prop_assert_eq!(types::parse_digits(&recs[i][12..17]), Some(details as u64));
        i += 1;
        blocks += 1;
    }
    prop_assert!(blocks >= 1);
    if r.outcome == Outcome::Rejected {
        prop_assert_eq!(recs.len(), 2 + 2 * r.problems.len() + 1 + 2);
        prop_assert!(recs[1][1..80].iter().all(|&b| b == b' '));
        prop_assert!(recs[recs.len() - 2][1..12].iter().all(|&b| b == b' '));
        prop_assert!(recs[recs.len() - 3].starts_with(b"X1RF999   BATCH REJECTED"));
        for (k, p) in r.problems.iter().enumerate() {
            let x0 = recs[2 + 2 * k];
            let x1 = recs[3 + 2 * k];
            prop_assert_eq!(&x0[..2], b"X0");
            prop_assert_eq!(types::parse_digits(&x0[2..8]), Some(p.record as u64));
            prop_assert_eq!(types::parse_digits(&x0[8..10]), Some(p.column as u64));
            prop_assert_eq!(&x1[..4], b"X1 F");
            prop_assert_eq!(&x1[4..7], p.code.as_str().as_bytes());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Whatever comes in, on either channel: one response batch per input
    /// batch, each well formed.
    #[test]
    fn engine_always_answers_well_formed(
        (input, channel) in prop_oneof![
            (arbitrary_input(), prop::sample::select(vec![Channel::Abi, Channel::Ecert])),
            field_mutated_fixture(),
        ]
    ) {
        let raws = batches(&input);
        let results = run_engine(&mut engine_shared(), channel, &input, &raws);
        prop_assert_eq!(results.len(), raws.len());
        for r in &results {
            check_response(r)?;
        }
    }
}

// ------------------------------------------------------ generated records

/// A field's key, its text, or its number for an N field.
type FieldValue = (&'static str, Vec<u8>, Option<u64>);

/// A value for every field of a layout, valid for its class, rendered with
/// `RecordBuf`: (key, rendered bytes, number for N fields).
fn field_values(layout: &'static Layout) -> impl Strategy<Value = Vec<FieldValue>> {
    let per_field: Vec<BoxedStrategy<FieldValue>> = layout
        .fields
        .iter()
        .map(|f| {
            let key = f.key;
            let len = f.len;
            if key == "id" {
                return Just((key, layout.id.as_bytes().to_vec(), None)).boxed();
            }
            let text = |chars: &'static str| {
                let chars: Vec<u8> = chars.bytes().collect();
                prop::collection::vec(prop::sample::select(chars), 0..=len)
                    .prop_map(move |v| (key, v, None))
                    .boxed()
            };
            match f.class {
                Class::N => {
                    let max = 10u64.pow(len.min(19) as u32) - 1;
                    (0..=max).prop_map(move |n| (key, Vec::new(), Some(n))).boxed()
                }
                Class::A => text("ABCDEFGHIJKLMNOPQRSTUVWXYZ "),
                Class::AN => text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "),
                Class::X | Class::I => prop::collection::vec(0x20u8..0x7f, 0..=len)
                    .prop_map(move |v| (key, v, None))
                    .boxed(),
                Class::S => Just((key, Vec::new(), None)).boxed(),
            }
        })
        .collect();
    per_field
}

fn any_layout() -> impl Strategy<Value = &'static Layout> {
    prop::sample::select(layout::all().iter().collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(config())]

    /// Any record of any layout, built from class-valid field values: the
    /// split gives back each value (text space-filled, numbers zero-filled),
    /// no field is of the wrong class, and re-rendering gives the same bytes.
    #[test]
    fn generated_records_round_trip(
        (layout, values) in any_layout().prop_flat_map(|l| (Just(l), field_values(l)))
    ) {
        let mut buf = layout.blank();
        for (key, text, number) in &values {
            buf = match number {
                Some(n) => buf.number(key, *n),
                None if *key == "id" => buf,
                None => buf.text(key, text),
            };
        }
        let rec = buf.finish();
        let parts = layout.split(&rec);
        prop_assert_eq!(parts.len(), values.len());
        let mut again = layout.blank();
        for ((field, got), (key, text, number)) in parts.iter().zip(&values) {
            prop_assert_eq!(field.key, *key);
            match number {
                Some(n) => prop_assert_eq!(types::parse_digits(got), Some(*n)),
                None => {
                    let mut want = text.clone();
                    want.resize(field.len, b' ');
                    prop_assert_eq!(*got, &want[..]);
                }
            }
            if field.class != Class::I {
                prop_assert_ne!(field.state(got), FieldState::Invalid, "{}.{}", layout.id, key);
            }
            again = again.as_read(field.key, got);
        }
        prop_assert_eq!(again.finish(), rec);
        prop_assert_eq!(diagnose::layout_for(&rec, None).map(|l| l.id), Some(layout.id));
    }
}

// ------------------------------------------- generated valid transactions

fn chars(set: &'static str, len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(set.as_bytes().to_vec()), len)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

fn ior() -> impl Strategy<Value = String> {
    let suffix = "0123456789ABCDEFGHJKLMNPQRSTUVWXY";
    prop_oneof![
        (chars(DIGITS, 2..=2), chars(DIGITS, 7..=7), chars(suffix, 2..=2)).prop_map(|(a, b, c)| format!("{a}-{b}{c}")),
        (chars(DIGITS, 3..=3), chars(DIGITS, 2..=2), chars(DIGITS, 4..=4))
            .prop_map(|(a, b, c)| format!("{a}-{b}-{c} ")),
        (chars(DIGITS, 6..=6), chars(DIGITS, 5..=5)).prop_map(|(a, b)| format!("{a}-{b}")),
    ]
}

fn date() -> impl Strategy<Value = Date> {
    (2000u16..2100, 1u8..=12, 1u8..=31).prop_filter_map("calendar date", |(y, m, d)| Date::new(y, m, d))
}

/// A certificate add: everything valid for the sender AU1.
#[derive(Clone, Debug)]
struct Cert {
    number: String,
    program: char,
    hts: String,
    quantity: u64,
    unit: &'static str,
    issued: Date,
    expires: Date,
    quota_year: u16,
    ior: String,
    exporter: String,
}

/// Certificate numbers never repeat across cases: the last 6 characters
/// count up.
fn fresh_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut n = N.fetch_add(1, Ordering::Relaxed);
    let mut s = Vec::new();
    for _ in 0..6 {
        s.push(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

fn cert() -> impl Strategy<Value = Cert> {
    (
        chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", 0..=4),
        prop::sample::select(vec!['Q', 'P']),
        chars(DIGITS, 4..=10),
        1u64..=999_999_999_999,
        prop::sample::select(types::UNITS.to_vec()),
        date(),
        0u32..4000,
        2000u16..2100,
        ior(),
        (
            chars(UPPER, 1..=1),
            chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,&'-()/", 0..=34),
        ),
    )
        .prop_map(
            |(prefix, program, hts, quantity, unit, issued, days, quota_year, ior, (e0, e1))| {
                let expires = Date::from_days_since_epoch(days_since_epoch(issued) + i64::from(days));
                Cert {
                    number: prefix,
                    program,
                    hts,
                    quantity,
                    unit,
                    issued,
                    expires,
                    quota_year,
                    ior,
                    exporter: format!("{e0}{e1}").trim_end().to_string(),
                }
            },
        )
}

fn days_since_epoch(d: Date) -> i64 {
    // Inverse of Date::from_days_since_epoch, checked below by the round trip.
    let (y, m, dd) = (i64::from(d.year), i64::from(d.month), i64::from(d.day));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn g1(c: &Cert) -> [u8; 80] {
    layout::get("G1")
        .blank()
        .text("action", b"A")
        .text("country", b"AU")
        .text("number", c.number.as_bytes())
        .text("program", c.program.to_string().as_bytes())
        .text("hts", c.hts.as_bytes())
        .number("quantity", c.quantity)
        .text("unit", c.unit.as_bytes())
        .number("issue_date", u64::from(c.issued.ccyymmdd()))
        .number("expiry_date", u64::from(c.expires.ccyymmdd()))
        .number("quota_year", u64::from(c.quota_year))
        .text("ior", c.ior.as_bytes())
        .finish()
}

fn g2(c: &Cert) -> [u8; 80] {
    layout::get("G2")
        .blank()
        .text("exporter", c.exporter.as_bytes())
        .finish()
}

fn line(rec: &[u8]) -> Vec<u8> {
    let mut v = format!("{:<80}", String::from_utf8_lossy(rec)).into_bytes();
    assert_eq!(v.len(), 80);
    v.push(b'\n');
    v
}

/// A batch of AU1 around `details` (application `app`, block filer `filer`).
fn batch(sender: &str, password: &str, app: &str, filer: &str, details: &[Vec<u8>]) -> Vec<u8> {
    let mut out = line(format!("A1001{sender}{password}031526     {app}").as_bytes());
    out.extend(line(format!("B  2704{filer}{app}").as_bytes()));
    for d in details {
        out.extend(line(d));
    }
    out.extend(line(format!("Y  2704{filer}{app}{:05}", details.len()).as_bytes()));
    out.extend(line(format!("Z1001{sender}      031526").as_bytes()));
    out
}

/// A store and one session per channel for the generated transactions. All
/// of them come from the same senders, so the cases can share sessions, as
/// the batches of one long file would (its password is checked once).
struct Shared {
    store: Store,
    abi: Session,
    ecert: Session,
}

impl Shared {
    fn run(&mut self, channel: Channel, input: &[u8]) -> Vec<BatchResult> {
        let session = match channel {
            Channel::Abi => &mut self.abi,
            Channel::Ecert => &mut self.ecert,
        };
        let mut engine = Engine::new(&mut self.store, common::business_date());
        let mut results = Vec::new();
        engine
            .process_stream(session, input, 8, |r| {
                results.push(r.clone());
                Ok(())
            })
            .unwrap();
        results
    }
}

fn shared_sessions() -> MutexGuard<'static, Shared> {
    static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            Mutex::new(Shared {
                store: common::store_with(common::DEMO_SENDERS),
                abi: Session::new(Channel::Abi),
                ecert: Session::new(Channel::Ecert),
            })
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

proptest! {
    #![proptest_config(config())]

    /// The narrative's quantity, written without `fmt`, reads exactly as
    /// `Display` writes it, appended after what the buffer already holds.
    #[test]
    fn push_decimal_writes_what_display_writes(v in prop_oneof![0u64..1_000, any::<u64>()], head in "[A-Z ]{0,5}") {
        let mut out = head.clone().into_bytes();
        Hundredths::new(v).push_decimal(&mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{head}{}", Hundredths::new(v)));
    }
}

proptest! {
    #![proptest_config(config())]

    /// Generated valid G1/G2 records: they round-trip through the typed
    /// parsers, `check` finds nothing, and the engine accepts every add with
    /// the exact GS response of certificates.md, storing the terms as sent.
    #[test]
    fn generated_certificates_are_accepted(mut certs in prop::collection::vec(cert(), 1..6)) {
        for c in &mut certs {
            c.number.push_str(&fresh_suffix());
        }
        let mut details = Vec::new();
        for c in &certs {
            let r = g1(c);
            let l = layout::get("G1");
            prop_assert_eq!(Country::parse(l.get(&r, "country")).map(|c| c.to_string()), Some("AU".to_string()));
            prop_assert_eq!(CertificateNumber::parse(l.get(&r, "number")).map(|n| n.to_string()), Some(c.number.clone()));
            prop_assert_eq!(HtsCoverage::parse(l.get(&r, "hts")).map(|h| h.to_string()), Some(c.hts.clone()));
            prop_assert_eq!(Hundredths::parse(l.get(&r, "quantity")).map(Hundredths::get), Some(c.quantity));
            prop_assert_eq!(Unit::parse(l.get(&r, "unit")).map(|u| u.to_string()), Some(c.unit.to_string()));
            prop_assert_eq!(Date::parse_ccyymmdd(l.get(&r, "issue_date")), Some(c.issued));
            prop_assert_eq!(Date::parse_ccyymmdd(l.get(&r, "expiry_date")), Some(c.expires));
            prop_assert!(c.expires >= c.issued);
            prop_assert_eq!(IorNumber::parse(l.get(&r, "ior")).map(|i| *i.as_bytes()), Some(format!("{:<12}", c.ior).into_bytes().try_into().unwrap()));
            details.push(r.to_vec());
            details.push(g2(c).to_vec());
        }
        let input = batch("AU1", "PWAU01", "GT", "AU1", &details);
        let raws = batches(&input);
        prop_assert_eq!(raws.len(), 1);
        prop_assert_eq!(diagnose::batch_problems(&raws[0]), vec![]);

        let mut want = line(b"A1001AU1      031526     GS");
        want.extend(line(b"B  2704AU1GS"));
        for c in &certs {
            want.extend(line(format!("S1AU{:<10}AA 000{:<40}{:012}", c.number, "CERTIFICATE ACCEPTED", c.quantity).as_bytes()));
        }
        want.extend(line(format!("Y  2704AU1GS{:05}", certs.len()).as_bytes()));
        want.extend(line(b"Z1001AU1      031526"));

        let mut shared = shared_sessions();
        let results = shared.run(Channel::Ecert, &input);
        prop_assert_eq!(results.len(), 1);
        prop_assert_eq!(String::from_utf8_lossy(&results[0].response), String::from_utf8_lossy(&want));
        for c in &certs {
            let number = CertificateNumber::from_stored(&c.number).unwrap();
            let stored = shared.store.read(|tx| tx.certificate(Country::parse(b"AU").unwrap(), number)).unwrap().unwrap();
            let t = &stored.terms;
            prop_assert_eq!(t.hts.as_str(), c.hts.as_str());
            prop_assert_eq!(t.certified.get(), c.quantity);
            prop_assert_eq!(t.unit.as_str(), c.unit);
            prop_assert_eq!((t.issued, t.expires, t.quota_year), (c.issued, c.expires, c.quota_year));
            let ior = format!("{:<12}", c.ior);
            prop_assert_eq!(&t.ior.as_bytes()[..], ior.as_bytes());
            prop_assert_eq!(&t.exporter, &c.exporter);
            prop_assert_eq!(t.program.code() as char, c.program);
            prop_assert_eq!(stored.used.get(), 0);
        }
    }
}

/// C1 and Q1 queries with valid field values.
fn c1() -> impl Strategy<Value = [u8; 80]> {
    prop_oneof![
        (ior(), prop::option::of(2000u16..2100)).prop_map(|(ior, year)| {
            let b = layout::get("C1").blank().text("kind", b"I").text("ior", ior.as_bytes());
            match year {
                Some(y) => b.number("quota_year", u64::from(y)).finish(),
                None => b.finish(),
            }
        }),
        (
            ior(),
            chars(UPPER, 2..=2),
            chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", 1..=10)
        )
            .prop_map(|(ior, country, number)| layout::get("C1")
                .blank()
                .text("kind", b"C")
                .text("ior", ior.as_bytes())
                .text("country", country.as_bytes())
                .text("number", number.as_bytes())
                .finish()),
    ]
}

fn q1() -> impl Strategy<Value = [u8; 80]> {
    prop_oneof![
        chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", 1..=10).prop_map(|number| layout::get("Q1")
            .blank()
            .text("kind", b"C")
            .text("country", b"AU")
            .text("number", number.as_bytes())
            .finish()),
        (10u64..=12, prop::option::of((date(), date()))).prop_map(|(cond, dates)| {
            let b = layout::get("Q1")
                .blank()
                .text("kind", b"S")
                .text("country", b"AU")
                .number("condition", cond);
            match dates {
                Some((a, z)) => {
                    let (a, z) = (a.min(z), a.max(z));
                    b.number("issued_from", u64::from(a.ccyymmdd()))
                        .number("issued_to", u64::from(z.ccyymmdd()))
                        .finish()
                }
                None => b.finish(),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Generated valid C1 and Q1 records round-trip and pass `check` in an
    /// EC and a GQ batch; through the engine each query gets its C0.
    #[test]
    fn generated_queries_pass_check(c1s in prop::collection::vec(c1(), 1..5), q1s in prop::collection::vec(q1(), 1..5)) {
        for (id, recs, app, filer) in [("C1", &c1s, "EC", "ABC"), ("Q1", &q1s, "GQ", "AU1")] {
            let l = layout::get(id);
            for r in recs.iter() {
                let mut again = l.blank();
                for (f, v) in l.split(r) {
                    again = again.as_read(f.key, v);
                }
                prop_assert_eq!(&again.finish(), r);
            }
            let details: Vec<Vec<u8>> = recs.iter().map(|r| r.to_vec()).collect();
            let (sender, pw) = if app == "EC" { ("ABC", "PWABC1") } else { ("AU1", "PWAU01") };
            let input = batch(sender, pw, app, filer, &details);
            let raws = batches(&input);
            prop_assert_eq!(diagnose::batch_problems(&raws[0]), vec![]);
            let channel = if app == "EC" { Channel::Abi } else { Channel::Ecert };
            let results = shared_sessions().run(channel, &input);
            prop_assert_eq!(results.len(), 1);
            prop_assert_eq!(results[0].outcome, Outcome::Processed);
            check_response(&results[0])?;
            // Exactly one C0 per query (queries.md), echoing its type.
            let c0: Vec<u8> = results[0].response.chunks(81).filter(|r| r.starts_with(b"C0")).map(|r| r[2]).collect();
            let kinds: Vec<u8> = recs.iter().map(|r| r[2]).collect();
            prop_assert_eq!(c0, kinds);
        }
    }
}

#[test]
fn days_since_epoch_inverts_the_library() {
    for d in [0i64, 1, 59, 365, 10_957, 20_527, 47_482] {
        assert_eq!(days_since_epoch(Date::from_days_since_epoch(d)), d);
    }
}

/// Every record of every input file cut at many lengths, and lengthened by
/// one byte: framing, `check` and `explain` stay calm and report the record.
#[test]
fn every_record_cut_at_every_length() {
    let mut inputs = 0;
    for file in corpus() {
        let lines = lines_of(file);
        for i in 0..lines.len() {
            // Every length up to 20 (the envelope fields), then a few more.
            let lengths = (0..=20)
                .chain([25, 38, 45, 59, 60, 73, 79])
                .filter(|&n| n < lines[i].len());
            let variants = lengths
                .map(|n| lines[i][..n].to_vec())
                .chain([[&lines[i][..], b"X"].concat()]);
            for variant in variants {
                let mut input = Vec::new();
                for (j, l) in lines.iter().enumerate() {
                    input.extend_from_slice(if i == j { &variant } else { l });
                    input.push(b'\n');
                }
                let mut problems = Vec::new();
                for raw in batches(&input) {
                    for ch in [None, Some(Channel::Abi), Some(Channel::Ecert)] {
                        envelope::frame(&raw, ch);
                    }
                    problems.extend(diagnose::batch_problems(&raw));
                }
                // The damaged line is reported as X01 (or, cut to nothing or
                // to a lone identifier, as whatever its position makes it).
                if variant.len() != 80 && !variant.is_empty() {
                    assert!(
                        problems
                            .iter()
                            .any(|p| p.line == i as u64 + 1 && p.code.as_str() == "X01"),
                        "line {} cut to {} bytes: {:?}",
                        i + 1,
                        variant.len(),
                        problems
                    );
                }
                let mut out = Vec::new();
                diagnose::explain(&input[..], &mut out).unwrap();
                inputs += 1;
            }
        }
    }
    assert!(inputs > 5_000, "{inputs}");
}
