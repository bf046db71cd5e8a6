//! EC → EZ and GQ → GR (queries.md): answers byte for byte, every R code,
//! access control (R03, and `ecertd grant` through the binary), and that a
//! refused query discloses nothing.

mod apps_support;

use std::path::Path;
use std::process::Command;

use apps_support::*;
use ecertd::envelope::Channel;

const EXP: &str = "DOWNS BEEF EXPORTS PTY LTD";

fn n(digits7: &str) -> String {
    entry_no("ABC", digits7)
}

/// AU certificates naming IOR_A (active, expired, cancelled, exhausted), one
/// naming IOR_C, an NZ one naming IOR_A; ABC has claimed two of them for IOR_A.
fn world() -> World {
    let mut w = World::new();
    w.add_certs(&[
        G1::add("AU", "9AU12345B"),
        G1::add("AU", "9AU12347B").qty(800_000).set(|g| {
            g.hts = "0202".into();
            g.ior = IOR_C.into();
        }),
        G1::add("AU", "9AU2025").set(|g| {
            g.issued = "20250101".into();
            g.expires = "20251231".into();
            g.year = "2025".into();
        }),
        G1::add("AU", "9AUCAN").qty(50_000),
        G1::add("AU", "9AUFULL").qty(100),
    ]);
    w.add_certs_from("NZ1", &[G1::add("NZ", "9NZ00001").set(|g| g.hts = "0202".into())]);
    assert_eq!(
        w.gt(&[G1::cancel("AU", "9AUCAN").rec()]),
        s1_ok("AU", "9AUCAN", "X", 50_000)
    );
    let got = w.ae(&entry(
        "A",
        "ABC",
        "1000001",
        IOR_A,
        &[beef(1, 1_250_000, "9AU12345B"), beef(2, 100, "9AUFULL")],
    ));
    assert_eq!(got.last().unwrap(), &e1_accepted("ABC", &n("1000001"), 1));
    w
}

#[test]
fn ec_type_i_whole_response_with_every_status() {
    let mut w = world();
    let input = BatchSpec {
        sender: "ABC",
        password: "PWABC1",
        app: "EC",
        reference: "Q-1",
        blocks: vec![("ABC", vec![c1("I", IOR_A, "", "", "")])],
    };
    let got = String::from_utf8(w.send(Channel::Abi, &input.bytes())).unwrap();
    // By country then number; status C, E, X, A, the first that applies.
    let want = "\
A1001ABC      031526     EZ                                Q-1                  
B  2704ABCEZ                                                                    
C0I12-3456789AB            00000005                                             
C2AU9AU12345B Q0201      KG 00000200000000000125000000000075000020261231A2026   
C412-3456789AB20260101DOWNS BEEF EXPORTS PTY LTD                                
C3ABC10000018001D0000012500002026031500001                                      
C2AU9AU2025   Q0201      KG 00000200000000000000000000000200000020251231E2025   
C412-3456789AB20250101DOWNS BEEF EXPORTS PTY LTD                                
C2AU9AUCAN    Q0201      KG 00000005000000000000000000000005000020261231C2026   
C412-3456789AB20260101DOWNS BEEF EXPORTS PTY LTD                                
C2AU9AUFULL   Q0201      KG 00000000010000000000010000000000000020261231X2026   
C412-3456789AB20260101DOWNS BEEF EXPORTS PTY LTD                                
C3ABC10000018002D0000000001002026031500001                                      
C2NZ9NZ00001  Q0202      KG 00000200000000000000000000000200000020261231A2026   
C412-3456789AB20260101DOWNS BEEF EXPORTS PTY LTD                                
Y  2704ABCEZ00013                                                               
Z1001ABC      031526                                                            
";
    assert_eq!(got, want);
}

#[test]
fn ec_quota_year_filter_and_type_c() {
    let mut w = world();
    let got = w.ec(&[
        c1("I", IOR_A, "", "", "2025"),
        c1("I", IOR_A, "", "", "2024"),
        c1("C", IOR_A, "AU", "9AUFULL", ""),
    ]);
    assert_eq!(
        got,
        vec![
            c0("I", IOR_A, "", "", 1),
            c2("AU", "9AU2025", "Q", "0201", "KG", 2_000_000, 0, "20251231", "E", "2025"),
            c4(IOR_A, "20250101", EXP),
            // Nothing found: count zero and no C9.
            c0("I", IOR_A, "", "", 0),
            c0("C", IOR_A, "AU", "9AUFULL", 1),
            c2("AU", "9AUFULL", "Q", "0201", "KG", 100, 100, "20261231", "X", "2026"),
            c4(IOR_A, "20260101", EXP),
            c3("ABC", &n("1000001"), 2, "D", 100, "20260315", 1),
        ]
    );
}

#[test]
fn r01_query_type_invalid() {
    let mut w = world();
    let got = w.ec(&[c1("X", IOR_A, "", "", ""), c1(" ", IOR_A, "", "", "")]);
    assert_eq!(
        got,
        vec![
            c0("X", IOR_A, "", "", 0),
            c9("R01"),
            c0(" ", IOR_A, "", "", 0),
            c9("R01")
        ]
    );
    let got = w.gq(&[q1("X", "AU", "9AU12345B", "", "", "")]);
    assert_eq!(got, vec![c0("X", "", "AU", "9AU12345B", 0), c9("R01")]);
}

#[test]
fn r02_ior_invalid() {
    let mut w = world();
    let got = w.ec(&[c1("I", "12-345", "", "", ""), c1("C", "", "AU", "9AU12345B", "")]);
    assert_eq!(
        got,
        vec![
            c0("I", "12-345", "", "", 0),
            c9("R02"),
            c0("C", "", "AU", "9AU12345B", 0),
            c9("R02")
        ]
    );
    // Several problems: in field order (type, IOR, ..., quota year).
    let got = w.ec(&[c1("Z", "bad", "", "", "20X6")]);
    assert_eq!(got, vec![c0("Z", "bad", "", "", 0), c9("R01"), c9("R02"), c9("R09")]);
}

#[test]
fn r03_filer_without_accepted_entry_or_grant() {
    let mut w = world();
    // ABC never filed for IOR_C: refused, nothing disclosed, for both query types.
    let got = w.ec(&[c1("I", IOR_C, "", "", ""), c1("C", IOR_C, "AU", "9AU12347B", "")]);
    assert_eq!(
        got,
        vec![
            c0("I", IOR_C, "", "", 0),
            c9("R03"),
            c0("C", IOR_C, "AU", "9AU12347B", 0),
            c9("R03")
        ]
    );
    // A refused entry for IOR_C does not open access.
    let got = w.ae(&entry("A", "ABC", "1000002", IOR_C, &[beef(1, 100, "9AU12347B")]));
    assert_eq!(got.last().unwrap(), &e1_rejected("ABC", &n("1000002")));
    assert_eq!(
        w.ec(&[c1("I", IOR_C, "", "", "")]),
        vec![c0("I", IOR_C, "", "", 0), c9("R03")]
    );
    // Another broker's filer code: ABC's filing for IOR_A does not let DEF see it.
    let got = w.batch("DEF", "EC", "", &[c1("I", IOR_A, "", "", "")]);
    assert_eq!(got, vec![c0("I", IOR_A, "", "", 0), c9("R03")]);
    // An operator grant makes it answerable.
    w.grant("ABC", IOR_C);
    let got = w.ec(&[c1("I", IOR_C, "", "", "")]);
    assert_eq!(
        got,
        vec![
            c0("I", IOR_C, "", "", 1),
            c2(
                "AU",
                "9AU12347B",
                "Q",
                "0202",
                "KG",
                800_000,
                0,
                "20261231",
                "A",
                "2026"
            ),
            c4(IOR_C, "20260101", EXP),
        ]
    );
    // So does an accepted entry, even one deleted since, and even one claiming nothing.
    let got = w.batch("DEF", "AE", "", &entry("A", "DEF", "1000003", IOR_A, &[]));
    assert_eq!(got.last().unwrap(), &e1_accepted("DEF", &entry_no("DEF", "1000003"), 1));
    let got = w.batch(
        "DEF",
        "AE",
        "",
        &[r10("D", "DEF", &entry_no("DEF", "1000003"), "2704", "02")],
    );
    assert_eq!(got.last().unwrap(), &e1_accepted("DEF", &entry_no("DEF", "1000003"), 0));
    let got = w.batch("DEF", "EC", "", &[c1("I", IOR_A, "", "", "2025")]);
    assert_eq!(
        got,
        vec![
            c0("I", IOR_A, "", "", 1),
            c2("AU", "9AU2025", "Q", "0201", "KG", 2_000_000, 0, "20251231", "E", "2025"),
            c4(IOR_A, "20250101", EXP),
        ]
    );
}

#[test]
fn r04_certificate_not_naming_the_ior_is_answered_as_not_on_file() {
    let mut w = world();
    let got = w.ec(&[
        // On file, but naming IOR_C.
        c1("C", IOR_A, "AU", "9AU12347B", ""),
        // Not on file at all.
        c1("C", IOR_A, "AU", "9AU12348B", ""),
        // On file for NZ, asked as AU.
        c1("C", IOR_A, "AU", "9NZ00001", ""),
    ]);
    assert_eq!(
        got,
        vec![
            c0("C", IOR_A, "AU", "9AU12347B", 0),
            c9("R04"),
            c0("C", IOR_A, "AU", "9AU12348B", 0),
            c9("R04"),
            c0("C", IOR_A, "AU", "9NZ00001", 0),
            c9("R04"),
        ]
    );
    // A country's own certificate that is not on file.
    let got = w.gq(&[q1("C", "AU", "9AU99999", "", "", "")]);
    assert_eq!(got, vec![c0("C", "", "AU", "9AU99999", 0), c9("R04")]);
}

#[test]
fn r05_country_querying_another_countrys_certificate() {
    let mut w = world();
    let got = w.gq(&[
        q1("C", "NZ", "9NZ00001", "", "", ""),
        q1("S", "NZ", "", "10", "", ""),
        q1("C", "au", "9AU12345B", "", "", ""),
    ]);
    assert_eq!(
        got,
        vec![
            c0("C", "", "NZ", "9NZ00001", 0),
            c9("R05"),
            c0("S", "", "NZ", "", 0),
            c9("R05"),
            c0("C", "", "au", "9AU12345B", 0),
            c9("R05"),
        ]
    );
    // NZ sees its own.
    let got = w.gq_from("NZ1", &[q1("C", "NZ", "9NZ00001", "", "", "")]);
    assert_eq!(
        got,
        vec![
            c0("C", "", "NZ", "9NZ00001", 1),
            c2("NZ", "9NZ00001", "Q", "0202", "KG", 2_000_000, 0, "20261231", "A", "2026"),
            c4(IOR_A, "20260101", EXP),
        ]
    );
}

#[test]
fn r06_condition_code_invalid() {
    let mut w = world();
    for bad in ["13", "", "1A", "09"] {
        let got = w.gq(&[q1("S", "AU", "", bad, "", "")]);
        assert_eq!(got, vec![c0("S", "", "AU", "", 0), c9("R06")], "{bad:?}");
    }
}

#[test]
fn r07_date_range_invalid() {
    let mut w = world();
    for (from, to) in [("20261301", ""), ("", "2026123 "), ("20260301", "20260228")] {
        let got = w.gq(&[q1("S", "AU", "", "11", from, to)]);
        assert_eq!(got, vec![c0("S", "", "AU", "", 0), c9("R07")], "{from:?} {to:?}");
    }
    // Both dates bad: R07 once.
    let got = w.gq(&[q1("S", "AU", "", "11", "2026X101", "20260230")]);
    assert_eq!(got, vec![c0("S", "", "AU", "", 0), c9("R07")]);
}

#[test]
fn r08_country_or_certificate_number_missing() {
    let mut w = world();
    let got = w.ec(&[
        c1("C", IOR_A, "", "9AU12345B", ""),
        c1("C", IOR_A, "AU", "", ""),
        c1("C", IOR_A, "", "", ""),
        c1("C", IOR_A, "AU", "9AU 1", ""),
    ]);
    assert_eq!(
        got,
        vec![
            c0("C", IOR_A, "", "9AU12345B", 0),
            c9("R08"),
            c0("C", IOR_A, "AU", "", 0),
            c9("R08"),
            c0("C", IOR_A, "", "", 0),
            c9("R08"),
            c0("C", IOR_A, "AU", "9AU 1", 0),
            c9("R08"),
        ]
    );
    let got = w.gq(&[q1("C", "AU", "", "", "", "")]);
    assert_eq!(got, vec![c0("C", "", "AU", "", 0), c9("R08")]);
}

#[test]
fn r09_quota_year_invalid() {
    let mut w = world();
    for bad in ["20X6", "  26", "0000"] {
        let got = w.ec(&[c1("I", IOR_A, "", "", bad)]);
        assert_eq!(got, vec![c0("I", IOR_A, "", "", 0), c9("R09")], "{bad:?}");
    }
}

#[test]
fn gq_by_condition_and_issue_dates() {
    let mut w = world();
    let cert_12345 = || {
        vec![
            c2(
                "AU",
                "9AU12345B",
                "Q",
                "0201",
                "KG",
                2_000_000,
                1_250_000,
                "20261231",
                "A",
                "2026",
            ),
            c4(IOR_A, "20260101", EXP),
            c3("ABC", &n("1000001"), 1, "D", 1_250_000, "20260315", 1),
        ]
    };
    let cert_full = || {
        vec![
            c2("AU", "9AUFULL", "Q", "0201", "KG", 100, 100, "20261231", "X", "2026"),
            c4(IOR_A, "20260101", EXP),
            c3("ABC", &n("1000001"), 2, "D", 100, "20260315", 1),
        ]
    };
    // 10 matched: not cancelled, something used.
    let got = w.gq(&[q1("S", "AU", "", "10", "", "")]);
    let mut want = vec![c0("S", "", "AU", "", 2)];
    want.extend(cert_12345());
    want.extend(cert_full());
    assert_eq!(got, want);
    // 11 unmatched: not cancelled, nothing used (the expired one included), by number.
    let got = w.gq(&[q1("S", "AU", "", "11", "", "")]);
    assert_eq!(
        got,
        vec![
            c0("S", "", "AU", "", 2),
            c2(
                "AU",
                "9AU12347B",
                "Q",
                "0202",
                "KG",
                800_000,
                0,
                "20261231",
                "A",
                "2026"
            ),
            c4(IOR_C, "20260101", "DOWNS BEEF EXPORTS PTY LTD"),
            c2("AU", "9AU2025", "Q", "0201", "KG", 2_000_000, 0, "20251231", "E", "2025"),
            c4(IOR_A, "20250101", EXP),
        ]
    );
    // 12 cancelled.
    let got = w.gq(&[q1("S", "AU", "", "12", "", "")]);
    assert_eq!(
        got,
        vec![
            c0("S", "", "AU", "", 1),
            c2("AU", "9AUCAN", "Q", "0201", "KG", 50_000, 0, "20261231", "C", "2026"),
            c4(IOR_A, "20260101", EXP),
        ]
    );
    // Issue date range, inclusive at both ends; either end may be open.
    let got = w.gq(&[
        q1("S", "AU", "", "11", "20250101", "20250101"),
        q1("S", "AU", "", "11", "20250102", ""),
        q1("S", "AU", "", "11", "", "20251231"),
        q1("S", "AU", "", "10", "20260102", "20261231"),
    ]);
    assert_eq!(
        got,
        vec![
            c0("S", "", "AU", "", 1),
            c2("AU", "9AU2025", "Q", "0201", "KG", 2_000_000, 0, "20251231", "E", "2025"),
            c4(IOR_A, "20250101", EXP),
            c0("S", "", "AU", "", 1),
            c2(
                "AU",
                "9AU12347B",
                "Q",
                "0202",
                "KG",
                800_000,
                0,
                "20261231",
                "A",
                "2026"
            ),
            c4(IOR_C, "20260101", EXP),
            c0("S", "", "AU", "", 1),
            c2("AU", "9AU2025", "Q", "0201", "KG", 2_000_000, 0, "20251231", "E", "2025"),
            c4(IOR_A, "20250101", EXP),
            c0("S", "", "AU", "", 0),
        ]
    );
}

#[test]
fn gq_type_c_shows_debits_and_credits_in_order_whole_response() {
    let mut w = world();
    // Replace lowering the claim (credit v1, debit v2), then delete (credit v2).
    let e = n("1000001");
    let got = w.ae(&entry("R", "ABC", "1000001", IOR_A, &[beef(1, 1_000_000, "9AU12345B")]));
    assert_eq!(got.last().unwrap(), &e1_accepted("ABC", &e, 2));
    w.date = ymd(2026, 3, 16);
    let got = w.ae(&[r10("D", "ABC", &e, "2704", "02")]);
    assert_eq!(got.last().unwrap(), &e1_accepted("ABC", &e, 0));
    let input = BatchSpec {
        sender: "AU1",
        password: "PWAU01",
        app: "GQ",
        reference: "",
        blocks: vec![("AU1", vec![q1("C", "AU", "9AU12345B", "", "", "")])],
    };
    let got = String::from_utf8(w.send(Channel::Ecert, &input.bytes())).unwrap();
    let want = "\
A1001AU1      031626     GR                                                     
B  2704AU1GR                                                                    
C0C            AU9AU12345B 00000001                                             
C2AU9AU12345B Q0201      KG 00000200000000000000000000000200000020261231A2026   
C412-3456789AB20260101DOWNS BEEF EXPORTS PTY LTD                                
C3ABC10000018001D0000012500002026031500001                                      
C3ABC10000018001C0000012500002026031500001                                      
C3ABC10000018001D0000010000002026031500002                                      
C3ABC10000018001C0000010000002026031600002                                      
Y  2704AU1GR00007                                                               
Z1001AU1      031626                                                            
";
    assert_eq!(got, want);
}

#[test]
fn ec_sees_the_ior_now_on_the_certificate() {
    let mut w = world();
    // The country moves 9AU12347B to IOR_A: it now answers IOR_A's queries.
    let g = G1::replace("AU", "9AU12347B")
        .qty(800_000)
        .set(|g| g.hts = "0202".into());
    assert_eq!(w.gt(&[g.rec()]), s1_ok("AU", "9AU12347B", "R", 800_000));
    let got = w.ec(&[c1("C", IOR_A, "AU", "9AU12347B", "")]);
    assert_eq!(
        got,
        vec![
            c0("C", IOR_A, "AU", "9AU12347B", 1),
            c2(
                "AU",
                "9AU12347B",
                "Q",
                "0202",
                "KG",
                800_000,
                0,
                "20261231",
                "A",
                "2026"
            ),
            c4(IOR_A, "20260101", EXP),
        ]
    );
}

// ------------------------------------------------- through the binary --

fn ecertd(root: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ecertd"))
        .arg("--root")
        .arg(root)
        .args(["--business-date", "2026-03-15"])
        .args(args)
        .env_remove("ECERTD_ROOT")
        .env_remove("ECERTD_DB")
        .env_remove("ECERTD_CONFIG")
        .env_remove("ECERTD_BUSINESS_DATE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ecertd {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn r03_then_ecertd_grant_makes_the_ior_answerable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let root = root.as_path();
    ecertd(root, &["init"]);
    ecertd(
        root,
        &[
            "sender",
            "add",
            "--id",
            "AU1",
            "--kind",
            "country",
            "--country",
            "AU",
            "--password",
            "PWAU01",
        ],
    );
    ecertd(
        root,
        &[
            "sender",
            "add",
            "--id",
            "ABC",
            "--kind",
            "broker",
            "--filer",
            "ABC",
            "--password",
            "PWABC1",
        ],
    );
    let gt = BatchSpec {
        sender: "AU1",
        password: "PWAU01",
        app: "GT",
        reference: "",
        blocks: vec![(
            "AU1",
            cert(&G1::add("AU", "9AU12347B").set(|g| g.ior = IOR_C.into()), EXP),
        )],
    };
    let gt_path = dir.path().join("gt.txt");
    std::fs::write(&gt_path, gt.bytes()).unwrap();
    let out = ecertd(root, &["process", gt_path.to_str().unwrap(), "--channel", "ecert"]);
    let want = response(
        "AU1",
        "GT",
        "",
        "AU1",
        &s1_ok("AU", "9AU12347B", "A", 2_000_000),
        date(),
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);

    let ec = BatchSpec {
        sender: "ABC",
        password: "PWABC1",
        app: "EC",
        reference: "",
        blocks: vec![("ABC", vec![c1("I", IOR_C, "", "", "")])],
    };
    let ec_path = dir.path().join("ec.txt");
    std::fs::write(&ec_path, ec.bytes()).unwrap();
    let out = ecertd(root, &["process", ec_path.to_str().unwrap(), "--channel", "abi"]);
    let refused = response("ABC", "EC", "", "ABC", &[c0("I", IOR_C, "", "", 0), c9("R03")], date());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), refused);

    ecertd(root, &["grant", "--filer", "ABC", "--ior", IOR_C]);
    let out = ecertd(root, &["process", ec_path.to_str().unwrap(), "--channel", "abi"]);
    let answered = response(
        "ABC",
        "EC",
        "",
        "ABC",
        &[
            c0("I", IOR_C, "", "", 1),
            c2(
                "AU",
                "9AU12347B",
                "Q",
                "0201",
                "KG",
                2_000_000,
                0,
                "20261231",
                "A",
                "2026",
            ),
            c4(IOR_C, "20260101", EXP),
        ],
        date(),
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), answered);
}
