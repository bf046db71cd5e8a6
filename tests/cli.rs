//! `ecertd check` and `ecertd explain` through the binary: exit codes,
//! exact diagnostic lines, every field of every record, safe output.

mod common;

use std::path::Path;

use common::Bin;
use ecertd::diagnose;
use ecertd::envelope;
use ecertd::record::BatchReader;

fn check(bin: &Bin, file: &Path) -> (i32, String, String) {
    let out = bin.run(&["check", file.to_str().unwrap()]);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn explain(bin: &Bin, file: &Path) -> (i32, Vec<u8>) {
    let out = bin.run(&["explain", file.to_str().unwrap()]);
    (out.status.code().unwrap(), out.stdout)
}

fn valid_inputs() -> Vec<std::path::PathBuf> {
    let mut v = common::files("fixtures/valid", ".txt");
    v.extend(
        common::files("tests/golden", ".txt")
            .into_iter()
            .filter(|p| !p.ends_with("07-rejected-batch.txt")),
    );
    assert_eq!(v.len(), 12);
    v
}

#[test]
fn check_accepts_every_valid_file() {
    let bin = Bin::bare();
    for file in valid_inputs() {
        let (code, stdout, stderr) = check(&bin, &file);
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (0, "", ""),
            "{}",
            file.display()
        );
    }
}

/// One line per problem: file, line, batch, record, identifier, column,
/// field and condition (verified against fixtures/invalid/README.md).
#[test]
fn check_reports_each_problem_on_one_line() {
    let bin = Bin::bare();
    let cases: &[(&str, &[&str])] = &[
        (
            "fixtures/invalid/X02-filler.txt",
            &["line 4: batch 1 record 4 (G2) column 38 field filler: X02 DATA FOUND IN FILLER"],
        ),
        (
            "fixtures/invalid/X05-block-count.txt",
            &["line 7: batch 1 record 7 (Y) column 13 field detail record count: X05 BLOCK RECORD COUNT MISMATCH"],
        ),
        (
            "fixtures/invalid/X10-record-id.txt",
            &["line 5: batch 1 record 5 (C1) column 01 field record identifier: X10 RECORD ID NOT VALID FOR APPLICATION"],
        ),
        (
            "fixtures/invalid/X12-envelope-field.txt",
            &["line 1: batch 1 record 1 (A) column 15 field transmission date MMDDYY: X12 ENVELOPE FIELD MISSING OR INVALID"],
        ),
        (
            "tests/golden/07-rejected-batch.txt",
            &[
                "line 1: batch 1 record 1 (A) column 21 field filler: X02 DATA FOUND IN FILLER",
                "line 4: batch 1 record 4 (G2) column 00 field record length or content: X01 RECORD NOT 80 PRINTABLE CHARACTERS",
            ],
        ),
    ];
    for (rel, want) in cases {
        let file = common::repo(rel);
        let (code, stdout, stderr) = check(&bin, &file);
        let prefix = format!("{}:", file.display());
        let want: Vec<String> = want.iter().map(|l| format!("{prefix}{l}")).collect();
        assert_eq!(stdout.lines().collect::<Vec<_>>(), want, "{rel}");
        assert_eq!((code, stderr.as_str()), (1, ""), "{rel}");
    }
}

/// Lines count in the file, records in their batch.
#[test]
fn check_numbers_lines_in_the_file_and_records_in_the_batch() {
    let bin = Bin::bare();
    let mut input = common::read("fixtures/invalid/X04-trailer-mismatch.txt");
    input.extend(common::read("fixtures/invalid/X14-empty-block.txt"));
    let file = bin.write("two.txt", &input);
    let (code, stdout, _) = check(&bin, &file);
    let p = file.display();
    assert_eq!(
        stdout,
        format!(
            "{p}:line 4: batch 1 record 4 (Y) column 04 field district/port code: X04 TRAILER DOES NOT MATCH HEADER\n\
             {p}:line 10: batch 2 record 5 (B) column 00 field block without detail records: X14 BLOCK HAS NO TRANSACTIONS\n"
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn check_reports_an_empty_file() {
    let bin = Bin::bare();
    let file = bin.write("empty.txt", b"");
    let (code, stdout, _) = check(&bin, &file);
    assert_eq!(code, 1);
    assert_eq!(
        stdout,
        format!(
            "{}:line 0: batch 1 record 0 () column 00 field empty input: X03 BATCH ENVELOPE OUT OF SEQUENCE\n",
            file.display()
        )
    );
}

#[test]
fn missing_file_is_exit_2() {
    let bin = Bin::bare();
    let missing = bin.dir.path().join("no-such-file.txt");
    for cmd in ["check", "explain"] {
        let out = bin.run(&[cmd, missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(out.stdout.is_empty(), "{cmd}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("no-such-file.txt"), "{cmd}: {err}");
    }
}

/// `explain` shows, for every record, every field of its layout in order:
/// positions, key, the value quoted, and the field's name.
#[test]
fn explain_prints_every_field_of_every_record() {
    let bin = Bin::bare();
    for file in valid_inputs() {
        let (code, out) = explain(&bin, &file);
        assert_eq!(code, 0, "{}", file.display());
        let out = String::from_utf8(out).unwrap();
        let mut lines = out.lines();
        let input = std::fs::read(&file).unwrap();
        let mut reader = BatchReader::new(&input[..]);
        let mut batch = 0;
        while let Some(raw) = reader.next_batch().unwrap() {
            batch += 1;
            let app = envelope::frame(&raw, None).header.app;
            assert_eq!(
                lines.next().unwrap(),
                format!(
                    "batch {batch}: {} records, application {}",
                    raw.len(),
                    app.unwrap().id()
                )
            );
            for (i, rec) in raw.records().enumerate() {
                let head = lines.next().unwrap();
                let Some(layout) = diagnose::layout_for(rec.bytes, app) else {
                    // AE records this system passes over.
                    assert!(head.ends_with("passed over"), "{head}");
                    lines.next().unwrap();
                    continue;
                };
                assert_eq!(
                    head,
                    format!(
                        "line {} record {}: {} {} ({})",
                        rec.line,
                        i + 1,
                        layout.id,
                        layout.title,
                        layout.source
                    )
                );
                for f in &layout.fields {
                    let l = lines.next().unwrap();
                    let value = std::str::from_utf8(f.slice(rec.bytes)).unwrap();
                    let pos = if f.len == 1 {
                        f.column().to_string()
                    } else {
                        format!("{}-{}", f.column(), f.end_column())
                    };
                    assert_eq!(l.split_whitespace().next(), Some(pos.as_str()), "{l}");
                    assert!(l.contains(&format!(" {} ", f.key)), "{l}");
                    assert!(l.contains(&format!("\"{}\"", value.replace('\\', "\\\\"))), "{l}");
                    assert!(l.ends_with(&format!("  {}", f.name)), "{l}");
                }
            }
        }
        assert_eq!(lines.next(), None, "{}", file.display());
    }
}

/// Control bytes never reach the terminal raw: ESC, NUL and 0xFF are shown
/// as `\xHH` by `explain`, and `check` shows an unreadable identifier as `?`.
#[test]
fn explain_and_check_escape_control_bytes() {
    let bin = Bin::bare();
    let mut input = common::read("fixtures/invalid/X04-trailer-mismatch.txt");
    // The C1 record (line 3) with ESC [31m, NUL and 0xFF in its IOR field.
    let c1 = b"C1I\x1b[31m\x00\xff-2817";
    input[2 * 81..2 * 81 + c1.len()].copy_from_slice(c1);
    // A stray record before the batch whose identifier is ESC [.
    let mut stray = b"\x1b[2J\x00\xff stray".to_vec();
    stray.push(b'\n');
    stray.extend(input);
    let file = bin.write("esc.txt", &stray);
    let clean = |b: &[u8]| b.iter().all(|&c| c == b'\n' || (0x20..=0x7e).contains(&c));

    let (code, out) = explain(&bin, &file);
    assert_eq!(code, 1);
    assert!(clean(&out), "raw control byte in explain output");
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#"bytes (80 long): "C1I\x1B[31m\x00\xFF-2817"#), "{text}");
    assert!(text.contains(r#"bytes (12 long): "\x1B[2J\x00\xFF stray""#), "{text}");
    assert!(text.contains("line 1 record 1: ?[ unknown record"), "{text}");

    let out = bin.run(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(clean(&out.stdout), "raw control byte in check output");
    let p = file.display();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "{p}:line 1: batch 1 record 1 (?[) column 00 field record outside a batch: X03 BATCH ENVELOPE OUT OF SEQUENCE\n\
             {p}:line 4: batch 2 record 3 (C1) column 00 field record length or content: X01 RECORD NOT 80 PRINTABLE CHARACTERS\n\
             {p}:line 5: batch 2 record 4 (Y) column 04 field district/port code: X04 TRAILER DOES NOT MATCH HEADER\n"
        )
    );
}

/// `explain` marks problems under the field they concern.
#[test]
fn explain_shows_problems_at_their_field() {
    let bin = Bin::bare();
    let (code, out) = explain(&bin, &common::repo("fixtures/invalid/X05-block-count.txt"));
    assert_eq!(code, 1);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.contains(" count ")).unwrap();
    assert!(lines[at].contains("\"00005\""), "{}", lines[at]);
    assert_eq!(lines[at + 1].trim(), "problem: X05 BLOCK RECORD COUNT MISMATCH");
}
