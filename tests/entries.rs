//! AE → AX (entry-summary.md, rules.md): every E and Q condition code with
//! its exact E0/E1 records, the ledger rules of add / replace / delete, and
//! whole response batches byte for byte.
//!
//! Record numbers: A is 1, B is 2, the first detail record 3. `entry()` writes
//! 10, 11 and then 40, 50, 52 per line, so line n's records are
//! 40 = 3n+2, 50 = 3n+3, 52 = 3n+4.

mod apps_support;

use apps_support::*;
use ecertd::envelope::Channel;

const CERT: &str = "9AU12345B";

/// The certificate of the examples: 20000.00 KG of 0201, 2026, IOR_A.
fn world() -> World {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", CERT)]);
    w
}

fn n(digits7: &str) -> String {
    entry_no("ABC", digits7)
}

fn accepted_add(w: &mut World, digits7: &str, ior: &str, lines: &[Vec<String>]) {
    let got = w.ae(&entry("A", "ABC", digits7, ior, lines));
    assert_eq!(got.last().unwrap(), &e1_accepted("ABC", &n(digits7), 1), "{got:#?}");
}

#[test]
fn spec_example_02_whole_batch() {
    let mut w = world();
    let details = entry(
        "A",
        "ABC",
        "1234567",
        IOR_A,
        &[
            beef(1, 1_250_000, CERT),
            beef(2, 300_000, CERT),
            vec![r40("003", "NZ"), r50("0406900000", &[("000000005000", "KG")])],
        ],
    );
    let input = BatchSpec {
        sender: "ABC",
        password: "PWABC1",
        app: "AE",
        reference: "ABC-000001",
        blocks: vec![("ABC", details)],
    };
    let got = String::from_utf8(w.send(Channel::Abi, &input.bytes())).unwrap();
    let want = "\
A1001ABC      031526     AX                                ABC-000001           
B  2704ABCAX                                                                    
E0SUMMRYABC12345676   000003                                                    
E0LINE  ABC12345676001000007                                                    
E1 IC00   CLAIM APPLIED, LEFT 7500.00 KG          ABC1234567600000              
E0LINE  ABC12345676002000010                                                    
E1 IC00   CLAIM APPLIED, LEFT 4500.00 KG          ABC1234567600000              
E1A 000   ENTRY SUMMARY ACCEPTED                  ABC1234567600001              
Y  2704ABCAX00006                                                               
Z1001ABC      031526                                                            
";
    assert_eq!(got, want);
    assert_eq!(w.balance("AU", CERT), (2_000_000, 1_550_000));
    w.assert_ledger_consistent();
}

#[test]
fn e01_entry_number_invalid() {
    let mut w = world();
    for bad in ["12345675", "1234567A", "        ", "1234567 "] {
        let mut d = entry("A", "ABC", "1234567", IOR_A, &[beef(1, 100, CERT)]);
        d[0] = r10("A", "ABC", bad, "2704", "02");
        let got = w.ae(&d);
        assert_eq!(got, ax_refused("ABC", bad, 3, &[(At::Summary(3), "E01")]), "{bad:?}");
    }
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}

#[test]
fn e02_entry_already_on_file() {
    let mut w = world();
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 100, CERT)]);
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]));
    assert_eq!(got, ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E02")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 100));
}

#[test]
fn e03_entry_not_on_file_for_replace_and_delete() {
    let mut w = world();
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]));
    assert_eq!(got, ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E03")]));
    // A delete needs only its 10 (examples/04).
    let got = w.ae(&[r10("D", "ABC", &n("1234569"), "2704", "02")]);
    assert_eq!(
        got,
        vec![
            "E0SUMMRYABC12345692   000003                                                    ",
            "E0SUMMRYABC12345692   000003                                                    ",
            "E1 FE03   ENTRY NOT ON FILE                       ABC1234569200000              ",
            "E1RF999   ENTRY SUMMARY REJECTED                  ABC1234569200000              ",
        ]
    );
    // Another filer's entry with the same digits is another entry.
    accepted_add(&mut w, "1000002", IOR_A, &[]);
    let d = vec![r10("D", "DEF", &entry_no("DEF", "1000002"), "2704", "02")];
    let got = w.batch("DEF", "AE", "", &d);
    assert_eq!(
        got,
        ax_refused("DEF", &entry_no("DEF", "1000002"), 3, &[(At::Summary(3), "E03")])
    );
}

#[test]
fn e04_entry_number_previously_deleted() {
    let mut w = world();
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 100, CERT)]);
    let got = w.ae(&[r10("D", "ABC", &n("1000001"), "2704", "02")]);
    assert_eq!(
        got,
        vec![
            e0_summary("ABC", &n("1000001"), 3),
            e1_accepted("ABC", &n("1000001"), 0)
        ]
    );
    for action in ["A", "R"] {
        let got = w.ae(&entry(action, "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]));
        assert_eq!(
            got,
            ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E04")]),
            "{action}"
        );
    }
    let got = w.ae(&[r10("D", "ABC", &n("1000001"), "2704", "02")]);
    assert_eq!(got, ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E04")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}

#[test]
fn e05_ior_missing_or_invalid() {
    let mut w = world();
    // No 11 at all: reported on the entry, naming its 10.
    let mut d = entry("A", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]);
    d.remove(1);
    assert_eq!(
        w.ae(&d),
        ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E05")])
    );
    // An 11 with an invalid or blank IOR: naming the 11.
    for bad in ["ABCDEFGHIJKL", "", "12-3456789AI"] {
        let got = w.ae(&entry("A", "ABC", "1000001", bad, &[beef(1, 100, CERT)]));
        assert_eq!(
            got,
            ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(4), "E05")]),
            "{bad:?}"
        );
    }
    // A replace needs it too; a delete does not.
    accepted_add(&mut w, "1000002", IOR_A, &[beef(1, 100, CERT)]);
    let mut d = entry("R", "ABC", "1000002", IOR_A, &[beef(1, 100, CERT)]);
    d.remove(1);
    assert_eq!(
        w.ae(&d),
        ax_refused("ABC", &n("1000002"), 3, &[(At::Summary(3), "E05")])
    );
    let got = w.ae(&[r10("D", "ABC", &n("1000002"), "2704", "02")]);
    assert_eq!(got.last().unwrap(), &e1_accepted("ABC", &n("1000002"), 0));
}

#[test]
fn e06_entry_type_not_eligible() {
    let mut w = world();
    for bad in ["01", "03", "  ", "2A"] {
        let mut d = entry("A", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]);
        d[0] = r10("A", "ABC", &n("1000001"), "2704", bad);
        assert_eq!(
            w.ae(&d),
            ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E06")]),
            "{bad:?}"
        );
    }
    // Every eligible type is accepted.
    for (i, t) in ["02", "06", "07", "12", "23", "32", "38", "52"].iter().enumerate() {
        let digits = format!("200000{i}");
        let mut d = entry("A", "ABC", &digits, IOR_A, &[]);
        d[0] = r10("A", "ABC", &n(&digits), "2704", t);
        assert_eq!(w.ae(&d), ax_accepted("ABC", &n(&digits), 3, &[], 1), "{t}");
    }
    // A delete is not checked for entry type.
    let d = vec![r10("D", "ABC", &n("2000000"), "2704", "01")];
    assert_eq!(
        w.ae(&d),
        vec![
            e0_summary("ABC", &n("2000000"), 3),
            e1_accepted("ABC", &n("2000000"), 0)
        ]
    );
}

#[test]
fn e07_filer_code_does_not_match_block() {
    let mut w = world();
    let def = entry_no("DEF", "1000001");
    let mut d = entry("A", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]);
    d[0] = r10("A", "DEF", &def, "2704", "02");
    let got = w.ae(&d);
    let want: Vec<String> = vec![
        e0_summary("DEF", &def, 3),
        e0_summary("DEF", &def, 3),
        e1_problem("E07", "DEF", &def),
        e1_rejected("DEF", &def),
    ];
    assert_eq!(got, want);
    // An unreadable filer code: E07, and the entry number cannot be judged.
    d[0] = r10("A", "ab1", &n("1000001"), "2704", "02");
    let got = w.ae(&d);
    assert_eq!(got, ax_refused("ab1", &n("1000001"), 3, &[(At::Summary(3), "E07")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}

#[test]
fn e08_action_code_invalid() {
    let mut w = world();
    for bad in ["X", " ", "a"] {
        let mut d = entry("A", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]);
        d[0] = r10(bad, "ABC", &n("1000001"), "2704", "02");
        assert_eq!(
            w.ae(&d),
            ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E08")]),
            "{bad:?}"
        );
    }
}

#[test]
fn e09_line_number_invalid_or_out_of_order() {
    let mut w = world();
    let e = n("1000001");
    // Repeated, descending, zero, not digits: E09 on the 40 concerned.
    let lines = [beef(1, 100, CERT), beef(1, 100, CERT)];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 8), "E09")]));
    let lines = [beef(2, 100, CERT), beef(1, 100, CERT)];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 8), "E09")]));
    let mut lines = [beef(1, 100, CERT)];
    lines[0][0] = r40("000", "AU");
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("000", 5), "E09")]));
    lines[0][0] = r40("  1", "AU");
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("  1", 5), "E09")]));
    // Gaps are fine.
    let got = w.ae(&entry(
        "A",
        "ABC",
        "1000001",
        IOR_A,
        &[beef(5, 100, CERT), beef(999, 100, CERT)],
    ));
    assert_eq!(
        got,
        ax_accepted(
            "ABC",
            &e,
            3,
            &[("005", 7, "19999.00", "KG"), ("999", 10, "19998.00", "KG")],
            1
        )
    );
}

#[test]
fn e10_country_of_origin_invalid() {
    let mut w = world();
    for bad in ["A1", "", "au"] {
        let mut lines = [beef(1, 100, CERT)];
        lines[0][0] = r40("001", bad);
        let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
        // No country, no certificate to look for: no Q check either.
        assert_eq!(
            got,
            ax_refused("ABC", &n("1000001"), 3, &[(At::Line("001", 5), "E10")]),
            "{bad:?}"
        );
    }
}

#[test]
fn e11_hts_number_invalid() {
    let mut w = world();
    let e = n("1000001");
    // On a line that claims nothing: E11 alone, naming the 50.
    let line = vec![r40("001", "AU"), r50("02013000AB", &[("000000000100", "KG")])];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 6), "E11")]));
    // Blank HTS (mandatory).
    let line = vec![r40("001", "AU"), r50("", &[("000000000100", "KG")])];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 6), "E11")]));
    // On a claiming line the claim then has no HTS the certificate covers: E11, then Q06.
    let mut line = beef(1, 100, CERT);
    line[1] = r50("020130008X", &[("000000000100", "KG")]);
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(
        got,
        ax_refused(
            "ABC",
            &e,
            3,
            &[(At::Line("001", 6), "E11"), (At::Line("001", 7), "Q06")]
        )
    );
}

#[test]
fn e12_quantity_or_unit_invalid() {
    let mut w = world();
    let e = n("1000001");
    let cases: [&[(&str, &str)]; 4] = [
        &[("00000001000 ", "KG")], // quantity not digits
        &[("000000001000", "")],   // quantity without unit
        &[("", "KG")],             // unit without quantity
        &[("000000001000", "kg")], // unit not AN
    ];
    for q in cases {
        let line = vec![r40("001", "AU"), r50("0201300080", q)];
        let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
        assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 6), "E12")]), "{q:?}");
    }
    // Two bad quantity fields on one 50: one E12 per field, in field order (same record).
    let line = vec![
        r40("001", "AU"),
        r50("0201300080", &[("00000001000 ", "KG"), ("000000000100", "")]),
    ];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(
        got,
        ax_refused(
            "ABC",
            &e,
            3,
            &[(At::Line("001", 6), "E12"), (At::Line("001", 6), "E12")]
        )
    );
    // On the claiming line an unreadable quantity in the certificate's unit: E12 only.
    let mut line = beef(1, 100, CERT);
    line[1] = r50("0201300080", &[("00000001000 ", "KG")]);
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 6), "E12")]));
}

#[test]
fn e13_port_code_missing() {
    let mut w = world();
    for bad in ["", "27a4"] {
        let mut d = entry("A", "ABC", "1000001", IOR_A, &[beef(1, 100, CERT)]);
        d[0] = r10("A", "ABC", &n("1000001"), bad, "02");
        assert_eq!(
            w.ae(&d),
            ax_refused("ABC", &n("1000001"), 3, &[(At::Summary(3), "E13")]),
            "{bad:?}"
        );
    }
    // Also for a delete.
    accepted_add(&mut w, "1000002", IOR_A, &[]);
    let d = vec![r10("D", "ABC", &n("1000002"), "", "02")];
    assert_eq!(
        w.ae(&d),
        ax_refused("ABC", &n("1000002"), 3, &[(At::Summary(3), "E13")])
    );
}

#[test]
fn e14_more_than_one_52_on_a_line() {
    let mut w = world();
    let mut line = beef(1, 100, CERT);
    line.push(r52("EX", CERT));
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(got, ax_refused("ABC", &n("1000001"), 3, &[(At::Line("001", 8), "E14")]));
    // Any second 52 counts, even another kind of license.
    let mut line = beef(1, 100, CERT);
    line.insert(2, r52("XX", "LIC1"));
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(got, ax_refused("ABC", &n("1000001"), 3, &[(At::Line("001", 8), "E14")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}

#[test]
fn e15_certificate_number_invalid() {
    let mut w = world();
    let e = n("1000001");
    for (kind, number) in [
        ("EX", "9AU 12345B"),
        ("EX", ""),
        ("CE", "9au12345b"),
        ("e1", CERT),
        ("", CERT),
    ] {
        let mut line = beef(1, 100, CERT);
        line[2] = r52(kind, number);
        let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
        assert_eq!(
            got,
            ax_refused("ABC", &e, 3, &[(At::Line("001", 7), "E15")]),
            "{kind:?} {number:?}"
        );
    }
    // Another license type is passed over, its number unchecked.
    let mut line = beef(1, 100, CERT);
    line[2] = r52("XX", "not read!!");
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[], 1));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}

/// One claiming line refused with `codes`, naming its 52 (record 7).
fn q_refused(w: &mut World, digits7: &str, ior: &str, line: Vec<String>, codes: &[&str]) {
    let got = w.ae(&entry("A", "ABC", digits7, ior, &[line]));
    let problems: Vec<(At<'_>, &str)> = codes.iter().map(|c| (At::Line("001", 7), *c)).collect();
    assert_eq!(got, ax_refused("ABC", &n(digits7), 3, &problems), "{codes:?}");
}

#[test]
fn q01_certificate_not_on_file() {
    let mut w = world();
    q_refused(&mut w, "1000001", IOR_A, beef(1, 100, "9AU99999"), &["Q01"]);
    // On file for AU, but the line's origin is NZ and NZ has no such number.
    q_refused(
        &mut w,
        "1000001",
        IOR_A,
        claim_line(1, "NZ", "0201300080", 100, "KG", "EX", CERT),
        &["Q11"],
    );
    q_refused(
        &mut w,
        "1000001",
        IOR_A,
        claim_line(1, "US", "0201300080", 100, "KG", "EX", "NOPE"),
        &["Q01"],
    );
}

#[test]
fn q11_number_on_file_only_for_another_country() {
    let mut w = world();
    w.add_certs_from("NZ1", &[G1::add("NZ", "9NZ00001")]);
    // Origin AU, number on file for NZ only: Q11 instead of Q01, and no later Q check
    // (the HTS below would not be covered either).
    let line = claim_line(1, "AU", "0406900000", 100, "T", "EX", "9NZ00001");
    q_refused(&mut w, "1000001", IOR_B, line, &["Q11"]);
    // Once AU has the number too, it is AU's certificate that is claimed.
    w.add_certs(&[G1::add("AU", "9NZ00001")]);
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 100, "9NZ00001")]);
    assert_eq!(w.balance("AU", "9NZ00001"), (2_000_000, 100));
    assert_eq!(w.balance("NZ", "9NZ00001"), (2_000_000, 0));
}

fn mx_tpl() -> G1 {
    G1::add("MX", "MX26TPL001").qty(1_000_000).set(|g| {
        g.program = "P".into();
        g.hts = "982353".into();
        g.unit = "SME".into();
    })
}

#[test]
fn q12_certificate_type_does_not_match_program() {
    let mut w = world();
    w.add_certs_from("MX1", &[mx_tpl()]);
    // A quota certificate claimed as a certificate of eligibility.
    q_refused(
        &mut w,
        "1000001",
        IOR_A,
        claim_line(1, "AU", "0201300080", 100, "KG", "CE", CERT),
        &["Q12"],
    );
    // A TPL certificate claimed as an export certificate.
    let line = claim_line(1, "MX", "9823530100", 100, "SME", "EX", "MX26TPL001");
    q_refused(&mut w, "1000001", IOR_A, line, &["Q12"]);
    // The right type: accepted. The TPL line carries the chapter 98 number first; quantity 2
    // is the one in the certificate's unit.
    let line = vec![
        r40("001", "MX"),
        r50("9823530100", &[("000000000700", "NO"), ("000000150000", "SME")]),
        r50("6204624011", &[("000000010000", "DOZ")]),
        r52("CE", "MX26TPL001"),
    ];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(
        got,
        ax_accepted("ABC", &n("1000001"), 3, &[("001", 8, "8500.00", "SME")], 1)
    );
    assert_eq!(w.balance("MX", "MX26TPL001"), (1_000_000, 150_000));
}

#[test]
fn q06_hts_not_covered() {
    let mut w = world();
    q_refused(
        &mut w,
        "1000001",
        IOR_A,
        claim_line(1, "AU", "0202300080", 100, "KG", "EX", CERT),
        &["Q06"],
    );
    // The first 50 the certificate covers is the claim's, even when it is not the first.
    let line = vec![
        r40("001", "AU"),
        r50("0202300080", &[("000000999900", "KG")]),
        r50("0201300080", &[("000000000100", "KG")]),
        r52("EX", CERT),
    ];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(
        got,
        ax_accepted("ABC", &n("1000001"), 3, &[("001", 8, "19999.00", "KG")], 1)
    );
}

#[test]
fn q07_unit_does_not_match() {
    let mut w = world();
    q_refused(
        &mut w,
        "1000001",
        IOR_A,
        claim_line(1, "AU", "0201300080", 100, "T", "EX", CERT),
        &["Q07"],
    );
    // The unit is looked for on the claim's 50 only.
    let line = vec![
        r40("001", "AU"),
        r50("0201300080", &[("000000000100", "T"), ("000000000100", "NO")]),
        r50("0202300080", &[("000000000100", "KG")]),
        r52("EX", CERT),
    ];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(got, ax_refused("ABC", &n("1000001"), 3, &[(At::Line("001", 8), "Q07")]));
    // Quantity 3 in KG is found.
    let line = vec![
        r40("001", "AU"),
        r50(
            "0201300080",
            &[("000000000100", "T"), ("000000000100", "NO"), ("000000012345", "KG")],
        ),
        r52("EX", CERT),
    ];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &[line]));
    assert_eq!(
        got,
        ax_accepted("ABC", &n("1000001"), 3, &[("001", 7, "19876.55", "KG")], 1)
    );
}

#[test]
fn q08_quantity_must_be_greater_than_zero() {
    let mut w = world();
    q_refused(&mut w, "1000001", IOR_A, beef(1, 0, CERT), &["Q08"]);
}

#[test]
fn q03_cancel_then_claim() {
    let mut w = world();
    let got = w.gt(&[G1::cancel("AU", CERT).rec()]);
    assert_eq!(got, s1_ok("AU", CERT, "X", 2_000_000));
    q_refused(&mut w, "1000001", IOR_A, beef(1, 100, CERT), &["Q03"]);
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}

#[test]
fn q04_q10_q09_are_decided_by_the_business_date() {
    let mut w = World::new();
    let g = G1::add("AU", "9AUH1").set(|g| g.expires = "20260630".into());
    w.add_certs(&[g]);
    let line = || beef(1, 100, "9AUH1");
    // Before issue, and in the year before the quota year.
    w.date = ymd(2025, 12, 31);
    q_refused(&mut w, "1000001", IOR_A, line(), &["Q10", "Q09"]);
    // After expiry.
    w.date = ymd(2026, 7, 1);
    q_refused(&mut w, "1000001", IOR_A, line(), &["Q04"]);
    // The next year: expired and the wrong quota year.
    w.date = ymd(2027, 1, 1);
    q_refused(&mut w, "1000001", IOR_A, line(), &["Q04", "Q09"]);
    // Issue day and expiry day are inside.
    w.date = ymd(2026, 1, 1);
    accepted_add(&mut w, "1000001", IOR_A, &[line()]);
    w.date = ymd(2026, 6, 30);
    accepted_add(&mut w, "1000002", IOR_A, &[line()]);
    // Usage events carry the business date of each.
    let got = w.ec(&[c1("C", IOR_A, "AU", "9AUH1", "")]);
    assert_eq!(
        got,
        vec![
            c0("C", IOR_A, "AU", "9AUH1", 1),
            c2("AU", "9AUH1", "Q", "0201", "KG", 2_000_000, 200, "20260630", "A", "2026"),
            c4(IOR_A, "20260101", "DOWNS BEEF EXPORTS PTY LTD"),
            c3("ABC", &n("1000001"), 1, "D", 100, "20260101", 1),
            c3("ABC", &n("1000002"), 1, "D", 100, "20260630", 1),
        ]
    );
}

#[test]
fn q09_quota_year_and_q10_on_their_own() {
    let mut w = World::new();
    w.add_certs(&[
        G1::add("AU", "9AUY25").set(|g| g.year = "2025".into()),
        G1::add("AU", "9AUFUT").set(|g| g.issued = "20260316".into()),
    ]);
    q_refused(&mut w, "1000001", IOR_A, beef(1, 100, "9AUY25"), &["Q09"]);
    q_refused(&mut w, "1000001", IOR_A, beef(1, 100, "9AUFUT"), &["Q10"]);
    w.date = ymd(2026, 3, 16);
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 100, "9AUFUT")]);
}

#[test]
fn q02_ior_does_not_match() {
    let mut w = world();
    q_refused(&mut w, "1000001", IOR_B, beef(1, 100, CERT), &["Q02"]);
    // The SSN form differs from an EIN even with the same digits.
    q_refused(&mut w, "1000001", "123-45-6789 ", beef(1, 100, CERT), &["Q02"]);
}

#[test]
fn q05_lines_together_exceed_while_each_alone_fits() {
    let mut w = world();
    let e = n("1000001");
    let lines = [beef(1, 1_200_000, CERT), beef(2, 900_000, CERT)];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("002", 10), "Q05")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
    assert_eq!(w.usage_event_count("AU", CERT), 0);
    // The refusal applied nothing: line 1 alone fits, under the same entry number.
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines[..1]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("001", 7, "8000.00", "KG")], 1));
    // Line 2 alone no longer fits the 8000.00 left ...
    let got = w.ae(&entry("A", "ABC", "1000002", IOR_A, &lines[1..]));
    assert_eq!(got, ax_refused("ABC", &n("1000002"), 3, &[(At::Line("002", 7), "Q05")]));
    // ... until the first entry is deleted.
    let got = w.ae(&[r10("D", "ABC", &e, "2704", "02")]);
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[], 0));
    let got = w.ae(&entry("A", "ABC", "1000002", IOR_A, &lines[1..]));
    assert_eq!(
        got,
        ax_accepted("ABC", &n("1000002"), 3, &[("002", 7, "11000.00", "KG")], 1)
    );
    // Exactly the remaining quantity fits; one hundredth more does not.
    let got = w.ae(&entry("A", "ABC", "1000003", IOR_A, &[beef(1, 1_100_001, CERT)]));
    assert_eq!(got, ax_refused("ABC", &n("1000003"), 3, &[(At::Line("001", 7), "Q05")]));
    let got = w.ae(&entry("A", "ABC", "1000003", IOR_A, &[beef(1, 1_100_000, CERT)]));
    assert_eq!(
        got,
        ax_accepted("ABC", &n("1000003"), 3, &[("001", 7, "0.00", "KG")], 1)
    );
    assert_eq!(w.balance("AU", CERT), (2_000_000, 2_000_000));
    w.assert_ledger_consistent();
}

#[test]
fn q05_only_for_lines_without_other_problems() {
    let mut w = world();
    let e = n("1000001");
    // Line 1 takes 15000.00; line 2 (20000.00, over) has a field problem (two 52s),
    // so it is not balance-checked nor counted; line 3 (6000.00) then exceeds what
    // line 1 left: Q05 on line 3 only. Records: line 2 is 8-11, line 3 is 12-14.
    let mut line2 = beef(2, 2_000_000, CERT);
    line2.push(r52("EX", CERT));
    let lines = [beef(1, 1_500_000, CERT), line2, beef(3, 600_000, CERT)];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    assert_eq!(
        got,
        ax_refused(
            "ABC",
            &e,
            3,
            &[(At::Line("002", 11), "E14"), (At::Line("003", 14), "Q05")]
        )
    );
    // A line with a claim problem is not counted either: line 1 has the wrong unit (Q07),
    // so line 2 alone is balance-checked, and fits.
    let lines = [
        claim_line(1, "AU", "0201300080", 1_500_000, "T", "EX", CERT),
        beef(2, 1_500_000, CERT),
    ];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 7), "Q07")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
}

#[test]
fn claim_problems_in_code_table_order_after_field_problems() {
    let mut w = World::new();
    w.add_certs(&[
        G1::add("AU", CERT),
        // Expired, last year's quota, another importer.
        G1::add("AU", "9AUOLD").set(|g| {
            g.issued = "20250101".into();
            g.expires = "20251231".into();
            g.year = "2025".into();
            g.ior = IOR_B.into();
        }),
        // Not yet issued.
        G1::add("AU", "9AUFUT").set(|g| g.issued = "20260401".into()),
    ]);
    let got = w.gt(&[G1::cancel("AU", "9AUFUT").rec()]);
    assert_eq!(got, s1_ok("AU", "9AUFUT", "X", 2_000_000));
    let e = n("1000001");
    // Line 1: HTS not covered, expired, quota year, IOR: Q06 Q04 Q09 Q02.
    // Line 2: type, cancelled, not yet issued: Q12 Q03 Q10.
    let lines = [
        claim_line(1, "AU", "0202300080", 100, "KG", "EX", "9AUOLD"),
        claim_line(2, "AU", "0201300080", 100, "KG", "CE", "9AUFUT"),
    ];
    let got = w.ae(&entry("A", "ABC", "1000001", IOR_A, &lines));
    let l1 = |c| (At::Line("001", 7), c);
    let l2 = |c| (At::Line("002", 10), c);
    assert_eq!(
        got,
        ax_refused(
            "ABC",
            &e,
            3,
            &[
                l1("Q06"),
                l1("Q04"),
                l1("Q09"),
                l1("Q02"),
                l2("Q12"),
                l2("Q03"),
                l2("Q10")
            ]
        )
    );
}

#[test]
fn problems_ordered_by_record_then_field_then_code() {
    let mut w = world();
    let e = n("1000001");
    let mut d = entry(
        "A",
        "ABC",
        "1000001",
        "NOT-AN-IOR",
        &[
            // Line 001: wrong unit -> Q07 on its 52 (7).
            claim_line(1, "AU", "0201300080", 100, "T", "EX", CERT),
            // Line 002: bad HTS on its 50 (9) and a certificate not on file (10).
            claim_line(2, "AU", "ABCDEFGHIJ", 100, "KG", "EX", "9AU99999"),
            // Line 003: fine (no IOR to compare, no balance problem).
            beef(3, 100, CERT),
        ],
    );
    d[0] = r10("A", "ABC", &e, "", "01");
    let got = w.ae(&d);
    assert_eq!(
        got,
        ax_refused(
            "ABC",
            &e,
            3,
            &[
                (At::Summary(3), "E13"),
                (At::Summary(3), "E06"),
                (At::Summary(4), "E05"),
                (At::Line("001", 7), "Q07"),
                (At::Line("002", 9), "E11"),
                (At::Line("002", 10), "Q01"),
            ]
        )
    );
    // Entry-level problems come before line problems of the same transaction:
    // E02 (on the 10's entry number) before a line's Q02.
    accepted_add(&mut w, "1000002", IOR_A, &[]);
    let got = w.ae(&entry("A", "ABC", "1000002", IOR_B, &[beef(1, 100, CERT)]));
    assert_eq!(
        got,
        ax_refused(
            "ABC",
            &n("1000002"),
            3,
            &[(At::Summary(3), "E02"), (At::Line("001", 7), "Q02")]
        )
    );
}

#[test]
fn replace_raises_and_lowers_claims() {
    let mut w = world();
    let e = n("1000001");
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 500_000, CERT)]);
    // Raise 5000 -> 15000: checked against 15000 left plus the 5000 given back.
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 1_500_000, CERT)]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("001", 7, "5000.00", "KG")], 2));
    // Lower to 1000, on two lines.
    let got = w.ae(&entry(
        "R",
        "ABC",
        "1000001",
        IOR_A,
        &[beef(1, 60_000, CERT), beef(2, 40_000, CERT)],
    ));
    assert_eq!(
        got,
        ax_accepted(
            "ABC",
            &e,
            3,
            &[("001", 7, "19400.00", "KG"), ("002", 10, "19000.00", "KG")],
            3
        )
    );
    assert_eq!(w.balance("AU", CERT), (2_000_000, 100_000));
    // Another entry takes 10000; raising to 11000 then exceeds (10000 left + 1000 back).
    accepted_add(&mut w, "1000002", IOR_A, &[beef(1, 1_000_000, CERT)]);
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 1_100_000, CERT)]));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 7), "Q05")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 1_100_000));
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 1_000_000, CERT)]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("001", 7, "0.00", "KG")], 4));
    // A replace may drop every claim.
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[], 5));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 1_000_000));
    // The history: each replace gives back (C, old version) then takes (D, new version).
    let got = w.ec(&[c1("C", IOR_A, "AU", CERT, "")]);
    let d = "20260315";
    let e2 = n("1000002");
    assert_eq!(
        got,
        vec![
            c0("C", IOR_A, "AU", CERT, 1),
            c2("AU", CERT, "Q", "0201", "KG", 2_000_000, 1_000_000, "20261231", "A", "2026"),
            c4(IOR_A, "20260101", "DOWNS BEEF EXPORTS PTY LTD"),
            c3("ABC", &e, 1, "D", 500_000, d, 1),
            c3("ABC", &e, 1, "C", 500_000, d, 1),
            c3("ABC", &e, 1, "D", 1_500_000, d, 2),
            c3("ABC", &e, 1, "C", 1_500_000, d, 2),
            c3("ABC", &e, 1, "D", 60_000, d, 3),
            c3("ABC", &e, 2, "D", 40_000, d, 3),
            c3("ABC", &e2, 1, "D", 1_000_000, d, 1),
            c3("ABC", &e, 1, "C", 60_000, d, 3),
            c3("ABC", &e, 2, "C", 40_000, d, 3),
            c3("ABC", &e, 1, "D", 1_000_000, d, 4),
            c3("ABC", &e, 1, "C", 1_000_000, d, 4),
        ]
    );
    w.assert_ledger_consistent();
}

#[test]
fn delete_then_reclaim_by_another_entry() {
    let mut w = world();
    let (e1, e2) = (n("1000001"), n("1000002"));
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 2_000_000, CERT)]);
    let got = w.ae(&entry("A", "ABC", "1000002", IOR_A, &[beef(1, 1, CERT)]));
    assert_eq!(got, ax_refused("ABC", &e2, 3, &[(At::Line("001", 7), "Q05")]));
    // The delete gives everything back: no C00, version zeros on the final E1.
    let got = w.ae(&[r10("D", "ABC", &e1, "2704", "02")]);
    assert_eq!(got, ax_accepted("ABC", &e1, 3, &[], 0));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
    let got = w.ae(&entry("A", "ABC", "1000002", IOR_A, &[beef(1, 2_000_000, CERT)]));
    assert_eq!(got, ax_accepted("ABC", &e2, 3, &[("001", 7, "0.00", "KG")], 1));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 2_000_000));
    assert_eq!(w.usage_event_count("AU", CERT), 3);
    w.assert_ledger_consistent();
}

#[test]
fn replace_may_keep_but_not_raise_a_claim_on_a_cancelled_certificate() {
    let mut w = world();
    let e = n("1000001");
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 500_000, CERT)]);
    assert_eq!(w.gt(&[G1::cancel("AU", CERT).rec()]), s1_ok("AU", CERT, "X", 1_500_000));
    // No new claim (Q03) ...
    q_refused(&mut w, "1000002", IOR_A, beef(1, 100, CERT), &["Q03"]);
    // ... but the entry may keep its claim, split over lines, up to the old quantity.
    let got = w.ae(&entry(
        "R",
        "ABC",
        "1000001",
        IOR_A,
        &[beef(1, 300_000, CERT), beef(2, 200_000, CERT)],
    ));
    assert_eq!(
        got,
        ax_accepted(
            "ABC",
            &e,
            3,
            &[("001", 7, "17000.00", "KG"), ("002", 10, "15000.00", "KG")],
            2
        )
    );
    // Lowered, then raised above the lowered claim: Q03.
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 400_000, CERT)]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("001", 7, "16000.00", "KG")], 3));
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 400_001, CERT)]));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 7), "Q03")]));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 400_000));
    // Deleting gives it back even though cancelled.
    let got = w.ae(&[r10("D", "ABC", &e, "2704", "02")]);
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[], 0));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 0));
    w.assert_ledger_consistent();
}

#[test]
fn replace_may_keep_but_not_raise_a_claim_on_an_expired_certificate() {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", "9AUEXP").set(|g| g.expires = "20260331".into())]);
    let e = n("1000001");
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 500_000, "9AUEXP")]);
    w.date = ymd(2026, 4, 15);
    q_refused(&mut w, "1000002", IOR_A, beef(1, 100, "9AUEXP"), &["Q04"]);
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 500_000, "9AUEXP")]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("001", 7, "15000.00", "KG")], 2));
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 500_100, "9AUEXP")]));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 7), "Q04")]));
    // Moving the kept claim to another certificate is a new claim there.
    w.add_certs(&[G1::add("AU", CERT)]);
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 500_000, CERT)]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("001", 7, "15000.00", "KG")], 3));
    assert_eq!(w.balance("AU", "9AUEXP"), (2_000_000, 0));
    // And it cannot come back to the expired one.
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 500_000, "9AUEXP")]));
    assert_eq!(got, ax_refused("ABC", &e, 3, &[(At::Line("001", 7), "Q04")]));
    w.assert_ledger_consistent();
}

#[test]
fn replace_may_keep_a_claim_across_the_year_end() {
    // A 2026 certificate expires on 31 December; in January the quota year no
    // longer matches the business date either. A kept claim survives both.
    let mut w = world();
    let e = n("1000001");
    accepted_add(&mut w, "1000001", IOR_A, &[beef(1, 500_000, CERT)]);
    w.date = ymd(2027, 1, 5);
    q_refused(&mut w, "1000002", IOR_A, beef(1, 100, CERT), &["Q04", "Q09"]);
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 400_000, CERT)]));
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("001", 7, "16000.00", "KG")], 2));
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 400_001, CERT)]));
    assert_eq!(
        got,
        ax_refused(
            "ABC",
            &e,
            3,
            &[(At::Line("001", 7), "Q04"), (At::Line("001", 7), "Q09")]
        )
    );
    assert_eq!(w.balance("AU", CERT), (2_000_000, 400_000));
    w.assert_ledger_consistent();
}

#[test]
fn transactions_of_one_batch_see_each_other_whole_response() {
    let mut w = world();
    let (e1, e2, e3) = (n("1000001"), n("1000002"), n("1000003"));
    let details = [
        entry("A", "ABC", "1000001", IOR_A, &[beef(1, 1_500_000, CERT)]),
        entry("A", "ABC", "1000002", IOR_A, &[beef(1, 600_000, CERT)]),
        vec![r10("D", "ABC", &e1, "2704", "02")],
        entry("A", "ABC", "1000003", IOR_A, &[beef(1, 600_000, CERT)]),
    ]
    .concat();
    let input = BatchSpec {
        sender: "ABC",
        password: "PWABC1",
        app: "AE",
        reference: "",
        blocks: vec![("ABC", details)],
    };
    let got = String::from_utf8(w.send(Channel::Abi, &input.bytes())).unwrap();
    assert_eq!(
        (e1.as_str(), e2.as_str(), e3.as_str()),
        ("10000018", "10000026", "10000034")
    );
    let want = "A1001ABC      031526     AX                                                     
B  2704ABCAX                                                                    
E0SUMMRYABC10000018   000003                                                    
E0LINE  ABC10000018001000007                                                    
E1 IC00   CLAIM APPLIED, LEFT 5000.00 KG          ABC1000001800000              
E1A 000   ENTRY SUMMARY ACCEPTED                  ABC1000001800001              
E0SUMMRYABC10000026   000008                                                    
E0LINE  ABC10000026001000012                                                    
E1 FQ05   QUANTITY EXCEEDS CERTIFICATE BALANCE    ABC1000002600000              
E1RF999   ENTRY SUMMARY REJECTED                  ABC1000002600000              
E0SUMMRYABC10000018   000013                                                    
E1A 000   ENTRY SUMMARY ACCEPTED                  ABC1000001800000              
E0SUMMRYABC10000034   000014                                                    
E0LINE  ABC10000034001000018                                                    
E1 IC00   CLAIM APPLIED, LEFT 14000.00 KG         ABC1000003400000              
E1A 000   ENTRY SUMMARY ACCEPTED                  ABC1000003400001              
Y  2704ABCAX00014                                                               
Z1001ABC      031526                                                            
";
    assert_eq!(got, want);
    assert_eq!(w.balance("AU", CERT), (2_000_000, 600_000));
}

#[test]
fn lines_without_a_certificate_and_other_records_are_passed_over() {
    let mut w = world();
    let e = n("1000001");
    let details = vec![
        r10("A", "ABC", &e, "2704", "02"),
        r11(IOR_A),
        pad("20ANY RECORD AFTER THE 11 (PASSED OVER) !@#$%^&*()"),
        r40("001", "NZ"),
        pad("41MFIDAUDARDOW123BRI"),
        r50("0406900000", &[("000000005000", "KG")]),
        r40("002", "AU"),
        r50("0201300080", &[("000000100000", "KG")]),
        r52("IM", "ANYTHING!!"),
        pad("30PASSED OVER"),
        r40("003", "AU"),
        r50("0201300080", &[("000000100000", "KG")]),
        r52("EX", CERT),
        pad("60TRAILING RECORD OF THE LINE"),
    ];
    let got = w.ae(&details);
    assert_eq!(got, ax_accepted("ABC", &e, 3, &[("003", 15, "19000.00", "KG")], 1));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 100_000));
}

#[test]
fn ledger_stays_consistent_after_everything_above() {
    // A compact run through add, replace, delete, cancel and replace-keep, checking
    // the replay of usage events against `used` at the end.
    let mut w = world();
    accepted_add(
        &mut w,
        "1000001",
        IOR_A,
        &[beef(1, 700_000, CERT), beef(2, 300_000, CERT)],
    );
    accepted_add(&mut w, "1000002", IOR_A, &[beef(1, 900_000, CERT)]);
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 1_100_000, CERT)]));
    assert_eq!(
        got,
        ax_accepted("ABC", &n("1000001"), 3, &[("001", 7, "0.00", "KG")], 2)
    );
    assert_eq!(w.gt(&[G1::cancel("AU", CERT).rec()]), s1_ok("AU", CERT, "X", 0));
    let got = w.ae(&[r10("D", "ABC", &n("1000002"), "2704", "02")]);
    assert_eq!(got, ax_accepted("ABC", &n("1000002"), 3, &[], 0));
    assert_eq!(w.balance("AU", CERT), (2_000_000, 1_100_000));
    w.assert_ledger_consistent();
}
