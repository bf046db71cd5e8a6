//! A stable-Rust fuzz loop: mutated batches (bit flips, truncations, spliced
//! and duplicated records, random bytes, very long lines, NULs, non-ASCII,
//! line-end changes) through the reader, `check`, `explain` and the whole
//! `process` pipeline against one store. No panic, no hang; every response is
//! made of 80-byte printable records, one response batch per input batch,
//! each from A to Z; the ledger's invariants hold afterwards.
//!
//! `ECERTD_FUZZ_CASES` sets the number of cases (default 10,000; the
//! README's reliability table records a 1,000,000-case run in release mode:
//! `ECERTD_FUZZ_CASES=1000000 cargo test --release --test fuzz -- --nocapture`).

mod common;

use std::time::Instant;

use ecertd::diagnose;
use ecertd::engine::{Engine, Session};
use ecertd::envelope::Channel;
use ecertd::gen::Rng;
use ecertd::record::BatchReader;
use ecertd::store::Store;

fn cases() -> u64 {
    std::env::var("ECERTD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn corpus() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for dir in ["fixtures/valid", "fixtures/invalid", "tests/golden"] {
        for p in common::files(dir, ".txt") {
            v.push(std::fs::read(p).unwrap());
        }
    }
    assert!(v.len() >= 20);
    v
}

fn line_starts(b: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(b.iter().enumerate().filter(|(_, &c)| c == b'\n').map(|(i, _)| i + 1));
    v
}

/// One random edit of `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = input.len() as u64;
    let at = |rng: &mut Rng| rng.below(len + 1) as usize;
    match rng.below(13) {
        0 if len > 0 => {
            let i = rng.below(len) as usize;
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len) as usize;
            input[i] = rng.below(256) as u8;
        }
        2 => {
            let i = at(rng);
            input.truncate(i);
        }
        3 => {
            let i = at(rng);
            let n = 1 + rng.below(100) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
            input.splice(i..i, bytes);
        }
        4 if len > 0 => {
            let i = rng.below(len) as usize;
            let n = (1 + rng.below(200) as usize).min(input.len() - i);
            input.drain(i..i + n);
        }
        5 => {
            // A record of another file, spliced in at a line boundary.
            let other = &corpus[rng.below(corpus.len() as u64) as usize];
            let starts = line_starts(other);
            let s = starts[rng.below(starts.len() as u64) as usize];
            let e = other[s..]
                .iter()
                .position(|&c| c == b'\n')
                .map(|p| s + p + 1)
                .unwrap_or(other.len());
            let mine = line_starts(input);
            let i = mine[rng.below(mine.len() as u64) as usize].min(input.len());
            input.splice(i..i, other[s..e].to_vec());
        }
        6 | 7 => {
            let mine = line_starts(input);
            let k = rng.below(mine.len() as u64) as usize;
            let s = mine[k].min(input.len());
            let e = input[s..]
                .iter()
                .position(|&c| c == b'\n')
                .map(|p| s + p + 1)
                .unwrap_or(input.len());
            let line = input[s..e].to_vec();
            if rng.below(2) == 0 {
                input.splice(s..s, line);
            } else {
                input.drain(s..e);
            }
        }
        8 => {
            let i = at(rng);
            let n = 1_000 + rng.below(100_000) as usize;
            let fill = b" A0Z\x00"[rng.below(5) as usize];
            let mut long = vec![fill; n];
            long.push(b'\n');
            input.splice(i..i, long);
        }
        9 => {
            let i = at(rng);
            input.insert(i, 0);
        }
        10 => {
            let i = at(rng);
            input.insert(i, 0x80 + rng.below(128) as u8);
        }
        11 => {
            if input.contains(&b'\r') {
                input.retain(|&c| c != b'\r');
            } else {
                let mut out = Vec::with_capacity(input.len() + input.len() / 80);
                for &c in input.iter() {
                    if c == b'\n' {
                        out.push(b'\r');
                    }
                    out.push(c);
                }
                *input = out;
            }
        }
        _ => {
            let n = rng.below(400) as usize;
            *input = (0..n).map(|_| rng.below(256) as u8).collect();
        }
    }
}

fn fuzz_store() -> Store {
    // One PBKDF2 round: the loop authenticates mutated A records by the thousand.
    common::register(
        Store::open_in_memory().unwrap().with_password_rounds(1),
        common::DEMO_SENDERS,
    )
}

/// Checks one response batch: 80 printable bytes + LF per record, A first,
/// Z last, B…Y blocks in between with their counts.
fn assert_well_formed(response: &[u8], case: u64) {
    assert!(
        !response.is_empty() && response.len().is_multiple_of(81),
        "case {case}: length {}",
        response.len()
    );
    let records: Vec<&[u8]> = response.chunks(81).collect();
    for r in &records {
        assert_eq!(r[80], b'\n', "case {case}");
        assert!(
            r[..80].iter().all(|&b| (0x20..=0x7e).contains(&b)),
            "case {case}: {:?}",
            r
        );
    }
    assert_eq!(records[0][0], b'A', "case {case}");
    assert_eq!(records[records.len() - 1][0], b'Z', "case {case}");
    let mut i = 1;
    while i < records.len() - 1 {
        assert_eq!(records[i][0], b'B', "case {case}: record {}", i + 1);
        let start = i;
        i += 1;
        while records[i][0] != b'Y' {
            i += 1;
        }
        let count: usize = std::str::from_utf8(&records[i][12..17]).unwrap().parse().unwrap();
        assert_eq!(count, i - start - 1, "case {case}: Y count");
        i += 1;
    }
}

#[test]
fn mutated_batches_never_break_the_pipeline() {
    let corpus = corpus();
    let n = cases();
    let mut store = fuzz_store();
    let mut rng = Rng::new(0xEC_E27D);
    let date = common::business_date();
    let started = Instant::now();
    let (mut batches, mut bytes, mut diagnostics) = (0u64, 0u64, 0u64);
    for case in 0..n {
        let mut input = corpus[rng.below(corpus.len() as u64) as usize].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input, &corpus);
        }
        bytes += input.len() as u64;

        // Framing: one raw batch per response batch, whatever the input.
        let mut reader = BatchReader::new(&input[..]);
        let mut raw_batches = 0u64;
        while reader.next_batch().unwrap().is_some() {
            raw_batches += 1;
        }
        diagnostics += diagnose::check(&input[..], |_| Ok(())).unwrap();
        if case % 16 == 0 {
            let mut out = Vec::new();
            diagnose::explain(&input[..], &mut out).unwrap();
            assert!(
                out.iter().all(|&b| b == b'\n' || (0x20..=0x7e).contains(&b)),
                "case {case}: explain wrote a raw control byte"
            );
        }

        let channel = if rng.below(2) == 0 {
            Channel::Abi
        } else {
            Channel::Ecert
        };
        let mut engine = Engine::new(&mut store, date);
        let mut session = Session::new(channel);
        let mut answered = 0u64;
        engine
            .process_stream(&mut session, &input[..], 64, |r| {
                assert_well_formed(&r.response, case);
                answered += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(answered, raw_batches, "case {case}: one response per batch");
        batches += answered;
    }
    let mismatches = store.read(|tx| tx.ledger_mismatches()).unwrap();
    assert!(
        mismatches.is_empty(),
        "ledger differs from the replay of usage events: {mismatches:?}"
    );
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fuzz: {n} cases, {batches} batches, {bytes} bytes, {diagnostics} diagnostics, {elapsed:.1} s, {:.0} cases/s; \
         no panic, every response well formed, ledger consistent",
        n as f64 / elapsed
    );
}
