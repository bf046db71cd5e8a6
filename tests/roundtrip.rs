//! Round trip: every record of every valid fixture, golden input and
//! expected response, split with its layout and re-rendered field by field
//! with `RecordBuf::as_read`, gives back the same 80 bytes.

mod common;

use std::collections::BTreeMap;

use ecertd::diagnose;
use ecertd::envelope::{self, App};
use ecertd::layout::{self, Layout};
use ecertd::record::BatchReader;

fn rerender(layout: &'static Layout, rec: &[u8]) -> [u8; 80] {
    let fields = layout.split(rec);
    assert_eq!(fields.len(), layout.fields.len(), "{}: split lost fields", layout.id);
    assert_eq!(fields.iter().map(|(_, v)| v.len()).sum::<usize>(), 80);
    let mut buf = layout.blank();
    for (field, value) in fields {
        assert_eq!(value, field.slice(rec), "{}.{}", layout.id, field.key);
        buf = buf.as_read(field.key, value);
    }
    buf.finish()
}

/// Splits and re-renders every well-formed record of `input`; returns the
/// count per layout and the identifiers left without one.
fn round_trip(name: &str, input: &[u8], response: bool, seen: &mut BTreeMap<&'static str, usize>) -> Vec<String> {
    let mut reader = BatchReader::new(input);
    let mut passed_over = Vec::new();
    while let Some(raw) = reader.next_batch().unwrap() {
        let app: Option<App> = if response {
            None
        } else {
            envelope::frame(&raw, None).header.app
        };
        for rec in raw.records() {
            let Some(bytes) = rec.fixed() else {
                continue;
            };
            match diagnose::layout_for(bytes, app) {
                Some(layout) => {
                    assert_eq!(
                        &rerender(layout, bytes),
                        bytes,
                        "{name} line {}: {} does not round-trip",
                        rec.line,
                        layout.id
                    );
                    *seen.entry(layout.id).or_default() += 1;
                }
                None => passed_over.push(String::from_utf8_lossy(&bytes[..2]).into_owned()),
            }
        }
    }
    passed_over
}

#[test]
fn every_input_and_response_record_round_trips() {
    let mut seen = BTreeMap::new();
    let mut passed_over = Vec::new();
    let mut files = 0;
    for dir in ["fixtures/valid", "fixtures/invalid", "tests/golden"] {
        for path in common::files(dir, ".txt") {
            let name = path.display().to_string();
            passed_over.extend(round_trip(&name, &std::fs::read(&path).unwrap(), false, &mut seen));
            files += 1;
        }
        for path in common::files(dir, ".resp") {
            let name = path.display().to_string();
            let left = round_trip(&name, &std::fs::read(&path).unwrap(), true, &mut seen);
            assert_eq!(left, Vec::<String>::new(), "{name}: response records without layout");
            files += 1;
        }
    }
    assert_eq!(files, 6 + 14 + 14 + 7 + 7 + 1);
    // Every layout of the contract was exercised.
    let all: Vec<&str> = layout::all().iter().map(|l| l.id).collect();
    let missing: Vec<&&str> = all.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "layouts never seen: {missing:?}");
    // The only records without a layout are the AE records passed over
    // (20, 30, 41 in ae-claims.txt) and the GT block's C1 of X10.
    passed_over.sort();
    passed_over.dedup();
    assert_eq!(passed_over, vec!["20", "30", "41", "C1"]);
}

/// A record with bytes outside printable ASCII is rendered with `?` by
/// `as_read`, never copied.
#[test]
fn as_read_replaces_unprintable_bytes() {
    let a = layout::get("A");
    let rec = a
        .blank()
        .as_read("site", b"\x1bA\x00\xff")
        .as_read("reference", b"REF\x7f")
        .finish();
    assert_eq!(&rec[..5], b"A?A??");
    assert_eq!(&rec[59..], b"REF?                 ");
}
