//! GT → GS (certificates.md): every G condition code with its exact S1
//! records, and several whole response batches byte for byte.

mod apps_support;

use apps_support::*;
use ecertd::envelope::Channel;

const EXPORTER: &str = "DOWNS BEEF EXPORTS PTY LTD";

/// Sends one G1 (+ optional G2) and returns the S1 records.
fn one(w: &mut World, g: &G1, exporter: Option<&str>) -> Vec<String> {
    let mut d = vec![g.rec()];
    if let Some(e) = exporter {
        d.push(g2(e));
    }
    w.gt(&d)
}

/// Claims `hundredths` KG of AU `number` with a fresh ABC entry.
fn claim(w: &mut World, digits7: &str, number: &str, hundredths: u64) {
    let got = w.ae(&entry("A", "ABC", digits7, IOR_A, &[beef(1, hundredths, number)]));
    assert_eq!(
        got.last().unwrap(),
        &e1_accepted("ABC", &entry_no("ABC", digits7), 1),
        "{got:#?}"
    );
}

#[test]
fn spec_example_01_whole_batch_with_g01() {
    // The input of examples/01-gt-certificates.txt, built by the helpers.
    let mut w = World::new();
    let details = [
        cert(&G1::add("AU", "9AU12345B"), EXPORTER),
        cert(
            &G1::add("AU", "9AU12346B").qty(1_500_000).set(|g| {
                g.hts = "0202".into();
                g.ior = String::new();
            }),
            EXPORTER,
        ),
        cert(
            &G1::add("AU", "9AU12347B").qty(800_000).set(|g| {
                g.hts = "0202".into();
                g.ior = IOR_C.into();
            }),
            "RIVERINA MEATS LTD",
        ),
    ]
    .concat();
    let input = BatchSpec {
        sender: "AU1",
        password: "PWAU01",
        app: "GT",
        reference: "AU-2026-0001",
        blocks: vec![("AU1", details)],
    };
    let got = String::from_utf8(w.send(Channel::Ecert, &input.bytes())).unwrap();
    let want = "\
A1001AU1      031526     GS                                AU-2026-0001         
B  2704AU1GS                                                                    
S1AU9AU12345B AA 000CERTIFICATE ACCEPTED                    000002000000        
S1AU9AU12346B A FG01IOR NUMBER MISSING                      000000000000        
S1AU9AU12346B ARF999CERTIFICATE REJECTED                    000000000000        
S1AU9AU12347B AA 000CERTIFICATE ACCEPTED                    000000800000        
Y  2704AU1GS00004                                                               
Z1001AU1      031526                                                            
";
    assert_eq!(got, want);
    assert!(w.cert("AU", "9AU12346B").is_none(), "a refused add stores nothing");
    assert_eq!(w.balance("AU", "9AU12347B"), (800_000, 0));
}

#[test]
fn g01_missing_ior_is_reported_with_the_other_problems() {
    let mut w = World::new();
    // All else right: G01 alone (eCERT 2.0).
    let g = G1::add("AU", "9AU1").set(|g| g.ior = String::new());
    assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_refused("AU", "9AU1", "A", &["G01"]));
    // A replace needs the IOR too.
    w.add_certs(&[G1::add("AU", "9AU2")]);
    let g = G1::replace("AU", "9AU2").set(|g| g.ior = String::new());
    assert_eq!(one(&mut w, &g, None), s1_refused("AU", "9AU2", "R", &["G01"]));
    // With another problem: both, in field order.
    let g = G1::add("AU", "9AU3").set(|g| {
        g.ior = String::new();
        g.unit = "LBS".into();
    });
    assert_eq!(
        one(&mut w, &g, Some(EXPORTER)),
        s1_refused("AU", "9AU3", "A", &["G12", "G01"])
    );
}

#[test]
fn g02_ior_invalid() {
    let mut w = World::new();
    for bad in [
        "12-3456789AI",
        "123456789012",
        "12-3456789ab",
        "123-45-67890",
        "073802-0009",
    ] {
        let g = G1::add("AU", "9AU1").set(|g| g.ior = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G02"]),
            "{bad}"
        );
    }
    // The three valid forms are accepted, the SSN with its trailing space.
    for (n, ok) in [
        ("9AU2", "66-053115000"),
        ("9AU3", "123-45-6789 "),
        ("9AU4", "073802-00093"),
    ] {
        let g = G1::add("AU", n).set(|g| g.ior = ok.into());
        assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_ok("AU", n, "A", 2_000_000), "{ok}");
    }
}

#[test]
fn g03_already_on_file_even_when_cancelled_and_within_one_batch() {
    let mut w = World::new();
    // Two adds of one number in one batch: the second sees the first.
    let g = G1::add("AU", "9AU1");
    let got = w.gt(&[cert(&g, EXPORTER), cert(&g.clone().qty(5), EXPORTER)].concat());
    let mut want = s1_ok("AU", "9AU1", "A", 2_000_000);
    want.extend(s1_refused("AU", "9AU1", "A", &["G03"]));
    assert_eq!(got, want);
    assert_eq!(w.balance("AU", "9AU1"), (2_000_000, 0));
    // A cancelled certificate is still on file for an add.
    assert_eq!(
        one(&mut w, &G1::cancel("AU", "9AU1"), None),
        s1_ok("AU", "9AU1", "X", 2_000_000)
    );
    assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_refused("AU", "9AU1", "A", &["G03"]));
    // The same number for another country is another certificate.
    let nz = G1::add("NZ", "9AU1");
    assert_eq!(
        w.gt_from("NZ1", &cert(&nz, EXPORTER)),
        s1_ok("NZ", "9AU1", "A", 2_000_000)
    );
}

#[test]
fn g04_replace_or_cancel_not_on_file() {
    let mut w = World::new();
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU404"), Some(EXPORTER)),
        s1_refused("AU", "9AU404", "R", &["G04"])
    );
    assert_eq!(
        one(&mut w, &G1::cancel("AU", "9AU404"), None),
        s1_refused("AU", "9AU404", "X", &["G04"])
    );
    // On file for NZ only: still not on file for AU.
    w.add_certs_from("NZ1", &[G1::add("NZ", "9NZ1")]);
    assert_eq!(
        one(&mut w, &G1::cancel("AU", "9NZ1"), None),
        s1_refused("AU", "9NZ1", "X", &["G04"])
    );
}

#[test]
fn g05_replace_or_cancel_a_cancelled_certificate() {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", "9AU1")]);
    assert_eq!(
        one(&mut w, &G1::cancel("AU", "9AU1"), None),
        s1_ok("AU", "9AU1", "X", 2_000_000)
    );
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU1"), None),
        s1_refused("AU", "9AU1", "R", &["G05"])
    );
    assert_eq!(
        one(&mut w, &G1::cancel("AU", "9AU1"), None),
        s1_refused("AU", "9AU1", "X", &["G05"])
    );
    assert!(w.cert("AU", "9AU1").unwrap().cancelled);
}

#[test]
fn g06_country_not_the_senders() {
    let mut w = World::new();
    w.add_certs_from("NZ1", &[G1::add("NZ", "9NZ1")]);
    // AU1 speaks for AU only, whatever NZ has on file.
    for g in [
        G1::add("NZ", "9NZ1"),
        G1::add("NZ", "9NZ2"),
        G1::cancel("NZ", "9NZ1"),
        G1::replace("NZ", "9NZ1"),
    ] {
        let exporter = (g.action != "X").then_some(EXPORTER);
        let got = one(&mut w, &g, exporter);
        assert_eq!(got, s1_refused("NZ", &g.number, &g.action, &["G06"]), "{g:?}");
    }
    assert!(!w.cert("NZ", "9NZ1").unwrap().cancelled);
    // Unreadable country: G06, echoed as read.
    let g = G1::add("au", "9AU1");
    assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_refused("au", "9AU1", "A", &["G06"]));
}

#[test]
fn g07_certificate_number_invalid() {
    let mut w = World::new();
    for bad in ["9AU 12345B", "", "9au12345b", "9AU12345/B", " 9AU1"] {
        let g = G1::add("AU", bad);
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", bad, "A", &["G07"]),
            "{bad:?}"
        );
    }
    // Hyphens are allowed, and all ten positions may be used.
    for ok in ["AU-26-0001", "0123456789"] {
        let g = G1::add("AU", ok);
        assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_ok("AU", ok, "A", 2_000_000), "{ok}");
    }
}

#[test]
fn g08_action_invalid() {
    let mut w = World::new();
    // An unknown action: only positions 1-15 mean anything, G08 alone.
    let g = G1::add("AU", "9AU1").set(|g| g.action = "Z".into());
    assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_refused("AU", "9AU1", "Z", &["G08"]));
    let g = G1::add("AU", "9AU1").set(|g| g.action = "a".into());
    assert_eq!(one(&mut w, &g, None), s1_refused("AU", "9AU1", "a", &["G08"]));
    let g = G1::add("AU", "9AU1").set(|g| g.action = " ".into());
    assert_eq!(one(&mut w, &g, None), s1_refused("AU", "9AU1", " ", &["G08"]));
    assert!(w.cert("AU", "9AU1").is_none());
}

#[test]
fn g09_program_invalid() {
    let mut w = World::new();
    for bad in ["X", " ", "q"] {
        let g = G1::add("AU", "9AU1").set(|g| g.program = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G09"]),
            "{bad:?}"
        );
    }
}

#[test]
fn g10_hts_coverage_invalid() {
    let mut w = World::new();
    for bad in ["020", "02 01", "0201A", "", " 0201"] {
        let g = G1::add("AU", "9AU1").set(|g| g.hts = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G10"]),
            "{bad:?}"
        );
    }
    for (n, ok) in [("9AU2", "0201300080"), ("9AU3", "020130")] {
        let g = G1::add("AU", n).set(|g| g.hts = ok.into());
        assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_ok("AU", n, "A", 2_000_000));
    }
}

#[test]
fn g11_quantity_invalid() {
    let mut w = World::new();
    for bad in ["000000000000", "00000000010 ", "", "0000000001.0", "-00000000100"] {
        let g = G1::add("AU", "9AU1").set(|g| g.quantity = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G11"]),
            "{bad:?}"
        );
    }
    // The largest quantity and the smallest are fine.
    let g = G1::add("AU", "9AU2").qty(999_999_999_999);
    assert_eq!(
        one(&mut w, &g, Some(EXPORTER)),
        s1_ok("AU", "9AU2", "A", 999_999_999_999)
    );
    let g = G1::add("AU", "9AU3").qty(1);
    assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_ok("AU", "9AU3", "A", 1));
}

#[test]
fn g12_unit_invalid() {
    let mut w = World::new();
    for bad in ["LBS", " KG", "kg", "", "PCS"] {
        let g = G1::add("AU", "9AU1").set(|g| g.unit = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G12"]),
            "{bad:?}"
        );
    }
    for (i, unit) in ["KG", "T", "SME", "M2", "DOZ", "NO", "L"].iter().enumerate() {
        let n = format!("9AU{i}U");
        let g = G1::add("AU", &n).set(|g| g.unit = unit.to_string());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_ok("AU", &n, "A", 2_000_000),
            "{unit}"
        );
    }
}

#[test]
fn g13_issue_date_invalid() {
    let mut w = World::new();
    for bad in ["20260230", "20261301", "2026010 ", "", "00000000", "20250229"] {
        let g = G1::add("AU", "9AU1").set(|g| g.issued = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G13"]),
            "{bad:?}"
        );
    }
    // 29 February of a leap year exists.
    let g = G1::add("AU", "9AU2").set(|g| {
        g.issued = "20240229".into();
    });
    assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_ok("AU", "9AU2", "A", 2_000_000));
}

#[test]
fn g14_expiry_date_invalid_or_before_issue() {
    let mut w = World::new();
    for bad in ["20251231", "20261232", "", "2026123A"] {
        let g = G1::add("AU", "9AU1").set(|g| g.expires = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G14"]),
            "{bad:?}"
        );
    }
    // Expiring on the issue date is not before it.
    let g = G1::add("AU", "9AU2").set(|g| g.expires = "20260101".into());
    assert_eq!(one(&mut w, &g, Some(EXPORTER)), s1_ok("AU", "9AU2", "A", 2_000_000));
}

#[test]
fn g15_quota_year_invalid() {
    let mut w = World::new();
    for bad in ["", "20X6", "026 "] {
        let g = G1::add("AU", "9AU1").set(|g| g.year = bad.into());
        assert_eq!(
            one(&mut w, &g, Some(EXPORTER)),
            s1_refused("AU", "9AU1", "A", &["G15"]),
            "{bad:?}"
        );
    }
}

#[test]
fn g16_exporter_name_missing() {
    let mut w = World::new();
    // A blank name in the G2.
    let g = G1::add("AU", "9AU1");
    assert_eq!(one(&mut w, &g, Some("")), s1_refused("AU", "9AU1", "A", &["G16"]));
    // No G2 at all after an add.
    assert_eq!(one(&mut w, &g, None), s1_refused("AU", "9AU1", "A", &["G16"]));
    // A missing G2 is the last problem, after those of the G1 (record order).
    let bad = g.clone().set(|g| g.unit = "LBS".into());
    assert_eq!(one(&mut w, &bad, None), s1_refused("AU", "9AU1", "A", &["G12", "G16"]));
    // Two transactions: the add without G2 is refused, the next one is read on.
    let got = w.gt(&[vec![g.rec()], cert(&G1::add("AU", "9AU2"), EXPORTER)].concat());
    let mut want = s1_refused("AU", "9AU1", "A", &["G16"]);
    want.extend(s1_ok("AU", "9AU2", "A", 2_000_000));
    assert_eq!(got, want);
    // A replace without G2 keeps the exporter name; with a blank one it is refused.
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU2").qty(3_000_000), None),
        s1_ok("AU", "9AU2", "R", 3_000_000)
    );
    assert_eq!(w.cert("AU", "9AU2").unwrap().terms.exporter, EXPORTER);
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU2"), Some("")),
        s1_refused("AU", "9AU2", "R", &["G16"])
    );
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU2"), Some("NEW EXPORTER")),
        s1_ok("AU", "9AU2", "R", 2_000_000)
    );
    assert_eq!(w.cert("AU", "9AU2").unwrap().terms.exporter, "NEW EXPORTER");
}

#[test]
fn g17_replace_below_quantity_used() {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", "9AU1")]);
    claim(&mut w, "1000001", "9AU1", 500_000);
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU1").qty(499_999), None),
        s1_refused("AU", "9AU1", "R", &["G17"])
    );
    assert_eq!(w.balance("AU", "9AU1"), (2_000_000, 500_000));
    // Down to exactly the quantity used: accepted, nothing remains.
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU1").qty(500_000), None),
        s1_ok("AU", "9AU1", "R", 0)
    );
    // Raised again.
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU1").qty(700_000), None),
        s1_ok("AU", "9AU1", "R", 200_000)
    );
    assert_eq!(w.balance("AU", "9AU1"), (700_000, 500_000));
    w.assert_ledger_consistent();
}

#[test]
fn g18_unit_change_after_use() {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", "9AU1"), G1::add("AU", "9AU2")]);
    // Nothing used yet: the unit may change.
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU2").set(|g| g.unit = "T".into()), None),
        s1_ok("AU", "9AU2", "R", 2_000_000)
    );
    claim(&mut w, "1000001", "9AU1", 100);
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU1").set(|g| g.unit = "T".into()), None),
        s1_refused("AU", "9AU1", "R", &["G18"])
    );
    // Both: quantity below used and unit change, in field order.
    assert_eq!(
        one(
            &mut w,
            &G1::replace("AU", "9AU1").qty(99).set(|g| g.unit = "T".into()),
            None
        ),
        s1_refused("AU", "9AU1", "R", &["G17", "G18"])
    );
    // The same unit after use is fine.
    assert_eq!(
        one(&mut w, &G1::replace("AU", "9AU1").qty(100), None),
        s1_ok("AU", "9AU1", "R", 0)
    );
}

#[test]
fn every_problem_reported_in_field_order() {
    let mut w = World::new();
    let g = G1::add("AU", "9AU1").set(|g| {
        g.program = "X".into();
        g.hts = "02".into();
        g.quantity = num(0, 12);
        g.unit = "LBS".into();
        g.issued = "20261301".into();
        g.expires = "20260000".into();
        g.year = String::new();
        g.ior = String::new();
    });
    assert_eq!(
        one(&mut w, &g, Some("")),
        s1_refused(
            "AU",
            "9AU1",
            "A",
            &["G09", "G10", "G11", "G12", "G13", "G14", "G15", "G01", "G16"]
        )
    );
    // On file already: G03 (certificate number, position 6) comes before the later fields.
    w.add_certs(&[G1::add("AU", "9AU2")]);
    let g = G1::add("AU", "9AU2").set(|g| {
        g.program = "X".into();
        g.ior = "BAD".into();
    });
    assert_eq!(
        one(&mut w, &g, Some(EXPORTER)),
        s1_refused("AU", "9AU2", "A", &["G03", "G09", "G02"])
    );
}

#[test]
fn replace_terms_and_new_ior_apply_to_later_claims_only() {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", "9AU1")]);
    claim(&mut w, "1000001", "9AU1", 300_000);
    // The country names another importer and raises the quantity.
    let g = G1::replace("AU", "9AU1").qty(2_500_000).set(|g| g.ior = IOR_B.into());
    assert_eq!(one(&mut w, &g, None), s1_ok("AU", "9AU1", "R", 2_200_000));
    assert_eq!(w.balance("AU", "9AU1"), (2_500_000, 300_000));
    // A claim for the old importer is now refused (Q02) ...
    let n = entry_no("ABC", "1000002");
    let got = w.ae(&entry("A", "ABC", "1000002", IOR_A, &[beef(1, 100, "9AU1")]));
    assert_eq!(got, ax_refused("ABC", &n, 3, &[(At::Line("001", 7), "Q02")]));
    // ... one for the new importer is accepted; the old claim stays.
    let n = entry_no("ABC", "1000003");
    let got = w.ae(&entry("A", "ABC", "1000003", IOR_B, &[beef(1, 100, "9AU1")]));
    assert_eq!(got, ax_accepted("ABC", &n, 3, &[("001", 7, "21999.00", "KG")], 1));
    assert_eq!(w.balance("AU", "9AU1"), (2_500_000, 300_100));
}

#[test]
fn cancel_reads_only_positions_1_to_15_and_keeps_usage() {
    let mut w = World::new();
    w.add_certs(&[G1::add("AU", "9AU1")]);
    claim(&mut w, "1000001", "9AU1", 250_000);
    // Garbage in 16-73 is not checked for a cancel.
    let g = G1::cancel("AU", "9AU1").set(|g| {
        g.program = "?".into();
        g.hts = "not-a-hts!".into();
        g.quantity = "xxxxxxxxxxxx".into();
        g.ior = "whatever".into();
    });
    // The final S1 carries certified - used, the balance the certificate keeps on record.
    assert_eq!(one(&mut w, &g, None), s1_ok("AU", "9AU1", "X", 1_750_000));
    let c = w.cert("AU", "9AU1").unwrap();
    assert!(c.cancelled);
    assert_eq!((c.terms.certified.get(), c.used.get()), (2_000_000, 250_000));
    assert_eq!(w.usage_event_count("AU", "9AU1"), 1);
}

#[test]
fn several_blocks_and_mixed_outcomes_whole_response() {
    let mut w = World::new();
    let b1 = [
        cert(&G1::add("AU", "9AU1"), EXPORTER),
        cert(&G1::add("AU", "9AU1"), EXPORTER),
        vec![G1::cancel("AU", "9AU1").rec()],
    ]
    .concat();
    let b2 = [
        cert(&G1::replace("AU", "9AU1"), EXPORTER),
        cert(&G1::add("AU", "AU-2").qty(123_456), "X"),
    ]
    .concat();
    let input = BatchSpec {
        sender: "AU1",
        password: "PWAU01",
        app: "GT",
        reference: "REF-7",
        blocks: vec![("AU1", b1), ("AU1", b2)],
    };
    let got = String::from_utf8(w.send(Channel::Ecert, &input.bytes())).unwrap();
    let want = "\
A1001AU1      031526     GS                                REF-7                
B  2704AU1GS                                                                    
S1AU9AU1      AA 000CERTIFICATE ACCEPTED                    000002000000        
S1AU9AU1      A FG03CERTIFICATE ALREADY ON FILE             000000000000        
S1AU9AU1      ARF999CERTIFICATE REJECTED                    000000000000        
S1AU9AU1      XA 000CERTIFICATE ACCEPTED                    000002000000        
Y  2704AU1GS00004                                                               
B  2704AU1GS                                                                    
S1AU9AU1      R FG05CERTIFICATE CANCELLED                   000000000000        
S1AU9AU1      RRF999CERTIFICATE REJECTED                    000000000000        
S1AUAU-2      AA 000CERTIFICATE ACCEPTED                    000000123456        
Y  2704AU1GS00003                                                               
Z1001AU1      031526                                                            
";
    assert_eq!(got, want);
}

#[test]
fn g2_out_of_place_rejects_the_batch() {
    let mut w = World::new();
    // A G2 after a cancel, and a G2 without a G1: X11 each, nothing applied.
    let details = vec![
        G1::cancel("AU", "9AU1").rec(),
        g2(EXPORTER),
        cert(&G1::add("AU", "9AU2"), EXPORTER)[0].clone(),
    ];
    let mut details = details;
    details.push(g2(EXPORTER));
    details.push(g2(EXPORTER));
    let input = BatchSpec {
        sender: "AU1",
        password: "PWAU01",
        app: "GT",
        reference: "",
        blocks: vec![("AU1", details)],
    };
    let got = String::from_utf8(w.send(Channel::Ecert, &input.bytes())).unwrap();
    let want = "\
A1001AU1      031526     GS                                                     
B                                                                               
X000000400G2                                                                    
X1 FX11   RECORD OUT OF SEQUENCE                                                
X000000700G2                                                                    
X1 FX11   RECORD OUT OF SEQUENCE                                                
X1RF999   BATCH REJECTED                                                        
Y           00005                                                               
Z1001AU1      031526                                                            
";
    assert_eq!(got, want);
    assert!(w.cert("AU", "9AU2").is_none());
}
