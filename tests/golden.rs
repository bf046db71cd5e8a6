//! Golden tests: the spec's worked examples (tests/golden/, copied from
//! spec/examples) run in order against one fresh store, compared byte for byte.

mod common;

use common::{assert_bytes_eq, Bin, SPEC_SENDERS};
use ecertd::envelope::Channel;

/// The examples in order, with their channel (examples/README.md).
const EXAMPLES: &[(&str, Channel)] = &[
    ("01-gt-certificates", Channel::Ecert),
    ("02-ae-claim", Channel::Abi),
    ("03-ae-refused", Channel::Abi),
    ("04-ae-replace-delete", Channel::Abi),
    ("05-ec-query", Channel::Abi),
    ("06-gq-query", Channel::Ecert),
    ("07-rejected-batch", Channel::Ecert),
];

fn golden(name: &str, ext: &str) -> Vec<u8> {
    common::read(&format!("tests/golden/{name}.{ext}"))
}

/// Every example has its input, the spec's response and nothing else is missing.
#[test]
fn golden_folder_is_complete() {
    let txt: Vec<String> = common::files("tests/golden", ".txt")
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    let names: Vec<&str> = EXAMPLES.iter().map(|e| e.0).collect();
    assert_eq!(txt, names);
    for name in names {
        assert!(!golden(name, "resp").is_empty(), "{name}.resp");
    }
}

/// The spec's 07 response allows reporting only the first problem; this
/// build reports them all. Our expected bytes keep the spec's shape.
#[test]
fn example_07_ours_has_the_spec_shape() {
    let spec = golden("07-rejected-batch", "resp");
    let ours = golden("07-rejected-batch", "ours.resp");
    let s: Vec<&[u8]> = spec.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let o: Vec<&[u8]> = ours.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    // A, B and Z equal the spec's.
    assert_eq!(o[..2], s[..2]);
    assert_eq!(o.last(), s.last());
    // The spec's one problem (X01 on the short G2, record 4) is among ours.
    assert!(o.iter().any(|l| l.starts_with(b"X1 FX01")));
    let x01 = o.iter().position(|l| l.starts_with(b"X1 FX01")).unwrap();
    assert_eq!(o[x01 - 1], s[2], "X0 of the X01");
    // The final X1, then Y, then Z.
    assert!(o[o.len() - 3].starts_with(b"X1RF999"));
    assert_eq!(o[o.len() - 3], s[s.len() - 3]);
    // Ours reports the A filler first (record 1 column 21), then the short G2.
    assert_eq!(o[2], format!("{:<80}", "X000000121A ").as_bytes());
    assert_eq!(o[3], format!("{:<80}", "X1 FX02   DATA FOUND IN FILLER").as_bytes());
    // Y counts the five detail records written (2 pairs + the final X1).
    assert_eq!(o[o.len() - 2], format!("{:<80}", "Y           00005").as_bytes());
}

/// What our build must answer to example `name`.
fn expected(name: &str) -> Vec<u8> {
    if name == "07-rejected-batch" {
        golden(name, "ours.resp")
    } else {
        golden(name, "resp")
    }
}

#[test]
fn examples_through_the_binary() {
    let bin = Bin::with_senders(SPEC_SENDERS);
    for &(name, channel) in EXAMPLES {
        let got = bin.process(&common::repo(&format!("tests/golden/{name}.txt")), channel);
        assert_bytes_eq(&got, &expected(name), name);
    }
}

#[test]
fn examples_through_the_library() {
    let mut store = common::store_with(SPEC_SENDERS);
    for &(name, channel) in EXAMPLES {
        let got = common::process(&mut store, channel, &golden(name, "txt"));
        assert_bytes_eq(&got, &expected(name), name);
    }
}

/// CRLF input gives the same response as LF input.
#[test]
fn examples_with_crlf_line_ends() {
    let mut store = common::store_with(SPEC_SENDERS);
    for &(name, channel) in EXAMPLES {
        let input = golden(name, "txt");
        let mut crlf = Vec::new();
        for &b in &input {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        let got = common::process(&mut store, channel, &crlf);
        assert_bytes_eq(&got, &expected(name), name);
    }
}
