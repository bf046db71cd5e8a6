//! Duplicate batches (rules.md, "Exactly once"): a repeated non-blank batch
//! reference with the same bytes (line ends normalised) gets the earlier
//! response byte for byte and applies nothing; different bytes get X13.

mod apps_support;

use apps_support::*;
use ecertd::envelope::Channel;

const CERT: &str = "9AU12345B";

fn world() -> World {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", CERT)]);
    w
}

fn ae_batch<'a>(reference: &'a str, digits7: &str, hundredths: u64) -> BatchSpec<'a> {
    BatchSpec {
        sender: "ABC",
        password: "PWABC1",
        app: "AE",
        reference,
        blocks: vec![("ABC", entry("A", "ABC", digits7, IOR_A, &[beef(1, hundredths, CERT)]))],
    }
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn accepted_response(reference: &str, digits7: &str, left: &str) -> String {
    let e = entry_no("ABC", digits7);
    response(
        "ABC",
        "AE",
        reference,
        "ABC",
        &ax_accepted("ABC", &e, 3, &[("001", 7, left, "KG")], 1),
        date(),
    )
}

#[test]
fn identical_batch_gets_the_earlier_response_and_applies_nothing() {
    let mut w = world();
    let input = ae_batch("ABC-DUP-0001", "1000001", 100_000).bytes();
    let first = w.send(Channel::Abi, &input);
    assert_eq!(
        String::from_utf8(first.clone()).unwrap(),
        accepted_response("ABC-DUP-0001", "1000001", "19000.00")
    );
    assert_eq!(w.balance("AU", CERT), (2_000_000, 100_000));

    // Same bytes, LF: not E02, but the same response; nothing applied.
    assert_eq!(w.send(Channel::Abi, &input), first);
    // CRLF line ends, and no line end after the last record: still the same batch.
    assert_eq!(w.send(Channel::Abi, &crlf(&input)), first);
    assert_eq!(w.send(Channel::Abi, &input[..input.len() - 1]), first);
    // On a later business date the earlier response (with its date) comes back.
    w.date = ymd(2026, 3, 20);
    assert_eq!(w.send(Channel::Abi, &input), first);
    assert_eq!(w.balance("AU", CERT), (2_000_000, 100_000));
    assert_eq!(w.usage_event_count("AU", CERT), 1);
    w.assert_ledger_consistent();
}

#[test]
fn same_reference_with_different_bytes_is_x13_and_applies_nothing() {
    let mut w = world();
    let first = w.send(Channel::Abi, &ae_batch("ABC-DUP-0002", "1000001", 100_000).bytes());
    // Another quantity under the same reference.
    let got = w.send(Channel::Abi, &ae_batch("ABC-DUP-0002", "1000002", 100_000).bytes());
    let want = "\
A1001ABC      031526     AX                                ABC-DUP-0002         
B                                                                               
X000000160A                                                                     
X1 FX13   BATCH REFERENCE REUSED                                                
X1RF999   BATCH REJECTED                                                        
Y           00003                                                               
Z1001ABC      031526                                                            
";
    assert_eq!(String::from_utf8(got).unwrap(), want);
    assert_eq!(
        rejection("ABC", "AX", "ABC-DUP-0002", &[(1, 60, "A", "X13")], date()),
        want
    );
    assert_eq!(w.balance("AU", CERT), (2_000_000, 100_000));
    assert!(
        w.store
            .read(|tx| tx.entry(
                &ecertd::types::EntryNumber::parse(
                    ecertd::types::FilerCode::parse(b"ABC").unwrap(),
                    entry_no("ABC", "1000002").as_bytes()
                )
                .unwrap()
            ))
            .unwrap()
            .is_none(),
        "the X13 batch filed nothing"
    );
    // The X13 did not replace what was remembered: the original still repeats.
    assert_eq!(
        w.send(Channel::Abi, &ae_batch("ABC-DUP-0002", "1000001", 100_000).bytes()),
        first
    );
    // A change of a single byte inside an ignored (class I) position is still different bytes.
    let mut changed = ae_batch("ABC-DUP-0002", "1000001", 100_000).records();
    changed[2].replace_range(79..80, "Z");
    let got = w.send(Channel::Abi, join(&changed).as_bytes());
    assert_eq!(String::from_utf8(got).unwrap(), want);
}

#[test]
fn blank_references_are_not_remembered() {
    let mut w = world();
    let input = ae_batch("", "1000001", 100_000).bytes();
    assert_eq!(
        String::from_utf8(w.send(Channel::Abi, &input)).unwrap(),
        accepted_response("", "1000001", "19000.00")
    );
    // Sent again it is a new batch: the entry is on file now.
    let e = entry_no("ABC", "1000001");
    let want = response(
        "ABC",
        "AE",
        "",
        "ABC",
        &ax_refused("ABC", &e, 3, &[(At::Summary(3), "E02")]),
        date(),
    );
    assert_eq!(String::from_utf8(w.send(Channel::Abi, &input)).unwrap(), want);
}

#[test]
fn references_belong_to_their_sender() {
    let mut w = world();
    let first = w.send(Channel::Abi, &ae_batch("SHARED-REF", "1000001", 100_000).bytes());
    assert_eq!(
        String::from_utf8(first).unwrap(),
        accepted_response("SHARED-REF", "1000001", "19000.00")
    );
    // DEF may use the same reference.
    let def = BatchSpec {
        sender: "DEF",
        password: "PWDEF1",
        app: "AE",
        reference: "SHARED-REF",
        blocks: vec![("DEF", entry("A", "DEF", "1000001", IOR_A, &[beef(1, 100_000, CERT)]))],
    };
    let e = entry_no("DEF", "1000001");
    let want = response(
        "DEF",
        "AE",
        "SHARED-REF",
        "DEF",
        &ax_accepted("DEF", &e, 3, &[("001", 7, "18000.00", "KG")], 1),
        date(),
    );
    assert_eq!(String::from_utf8(w.send(Channel::Abi, &def.bytes())).unwrap(), want);
    // A batch with a wrong password is refused (X08) and not remembered, so it
    // cannot block the real sender's reference.
    let forged = BatchSpec {
        password: "NOTPW1",
        reference: "ABC-NEXT",
        ..ae_batch("ABC-NEXT", "1000002", 100_000)
    };
    let got = w.send(Channel::Abi, &forged.bytes());
    let want = rejection("ABC", "AX", "ABC-NEXT", &[(1, 6, "A", "X08")], date());
    assert_eq!(String::from_utf8(got).unwrap(), want);
    let got = w.send(Channel::Abi, &ae_batch("ABC-NEXT", "1000002", 100_000).bytes());
    assert_eq!(
        String::from_utf8(got).unwrap(),
        accepted_response("ABC-NEXT", "1000002", "17000.00")
    );
}

#[test]
fn a_repeat_inside_one_file_and_in_other_applications() {
    let mut w = world();
    // The same GT batch twice in one file: the second is the first's response again.
    let gt = BatchSpec {
        sender: "AU1",
        password: "PWAU01",
        app: "GT",
        reference: "AU-DUP-1",
        blocks: vec![("AU1", cert(&G1::add("AU", "9AU77"), "X"))],
    };
    let once = gt.bytes();
    let twice = [once.clone(), once.clone()].concat();
    let one = response(
        "AU1",
        "GT",
        "AU-DUP-1",
        "AU1",
        &s1_ok("AU", "9AU77", "A", 2_000_000),
        date(),
    );
    assert_eq!(
        String::from_utf8(w.send(Channel::Ecert, &twice)).unwrap(),
        format!("{one}{one}")
    );
    assert_eq!(w.balance("AU", "9AU77"), (2_000_000, 0));
    // A query batch repeats its first answer even though the data changed since.
    let ec = BatchSpec {
        sender: "ABC",
        password: "PWABC1",
        app: "EC",
        reference: "EC-DUP-1",
        blocks: vec![("ABC", vec![c1("C", IOR_A, "AU", CERT, "")])],
    };
    w.grant("ABC", IOR_A);
    let before = w.send(Channel::Abi, &ec.bytes());
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]));
    assert_eq!(got.last().unwrap(), &e1_accepted("ABC", &entry_no("ABC", "1000001"), 1));
    assert_eq!(w.send(Channel::Abi, &ec.bytes()), before);
    let want = response(
        "ABC",
        "EC",
        "EC-DUP-1",
        "ABC",
        &[
            c0("C", IOR_A, "AU", CERT, 1),
            c2("AU", CERT, "Q", "0201", "KG", 2_000_000, 0, "20261231", "A", "2026"),
            c4(IOR_A, "20260101", "DOWNS BEEF EXPORTS PTY LTD"),
        ],
        date(),
    );
    assert_eq!(String::from_utf8(before).unwrap(), want);
}

#[test]
fn a_rejected_batch_of_an_authenticated_sender_is_remembered_too() {
    // The spec remembers every batch whose sender was authenticated; a corrected
    // batch must therefore come under a new reference.
    let mut w = world();
    let mut records = ae_batch("ABC-BAD-1", "1000001", 100_000).records();
    // Data in the A record's filler (positions 21-25): X02.
    records[0].replace_range(20..21, "X");
    let bad = join(&records).into_bytes();
    let first = w.send(Channel::Abi, &bad);
    let want = rejection("ABC", "AX", "ABC-BAD-1", &[(1, 21, "A", "X02")], date());
    assert_eq!(String::from_utf8(first.clone()).unwrap(), want);
    assert_eq!(w.send(Channel::Abi, &bad), first);
    let got = w.send(Channel::Abi, &ae_batch("ABC-BAD-1", "1000001", 100_000).bytes());
    let want = rejection("ABC", "AX", "ABC-BAD-1", &[(1, 60, "A", "X13")], date());
    assert_eq!(String::from_utf8(got).unwrap(), want);
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}
