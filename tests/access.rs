//! Access control through the real binary, by file and over TCP: a broker
//! querying another filer's importer (R03), a country querying or
//! cancelling another country's certificate (R05, G06), a wrong password
//! or unknown sender (X08), a filer code in a B record that the sender may
//! not file for (X09). Each is refused with the spec's code; the answer
//! discloses nothing (it is the same whether the certificate exists or
//! not); nothing is applied; the daemon's log has an `access refused` line
//! naming the code and the journal a line for the batch.

mod daemon_support;
mod hardening_support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use daemon_support::*;
use hardening_support::*;

/// A spool with the examples' AU certificates and ABC's claims on them
/// (so ABC may query IOR 12-3456789AB, DEF may not), and its daemon.
fn setup() -> (Spool, Daemon, SocketAddr) {
    let s = Spool::new();
    let mut d = s.start(&["--listen", "127.0.0.1:0"], &[]);
    let addr = d.addr("TCP endpoint listening");
    drop_wait(&s, "ecert", "01.txt", &data("01-gt-certificates.txt"));
    drop_wait(&s, "abi", "02.txt", &data("02-ae-claim.txt"));
    (s, d, addr)
}

fn drop_wait(s: &Spool, ch: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    s.drop_file(ch, name, bytes);
    wait_until(Duration::from_secs(30), name, || {
        !s.responses_for(name).is_empty() && s.idle()
    });
    s.response(name)
}

fn tcp(addr: SocketAddr, text: &str) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(text.as_bytes()).unwrap();
    read_batches(&mut c, 1).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace('\r', "")
}

/// The `access refused` log line of a file input, or of the `n`th TCP one.
fn refusal_logged(d: &Daemon, claim_suffix: Option<&str>, code: &str, sender: &str) -> serde_json::Value {
    let (suffix, code, sender) = (claim_suffix.map(str::to_string), code.to_string(), sender.to_string());
    let lines = wait_logs(d, "access refused", 1, Duration::from_secs(10), move |v| {
        let f = &v["fields"];
        let at = match &suffix {
            Some(sfx) => f["claim"].as_str().is_some_and(|c| c.ends_with(sfx.as_str())),
            None => f["peer"].as_str().is_some(),
        };
        at && f["codes"].as_str().is_some_and(|c| c.split(',').any(|x| x == code)) && f["sender"] == sender.as_str()
    });
    let l = lines.last().unwrap().clone();
    assert_eq!(l["level"], "WARN", "{l}");
    l
}

fn journal_line(s: &Spool, needles: &[&str]) -> String {
    let mut found = None;
    wait_until(
        Duration::from_secs(10),
        &format!("journal line with {needles:?}"),
        || {
            found = s
                .journal()
                .into_iter()
                .rev()
                .find(|l| needles.iter().all(|n| l.contains(n)));
            found.is_some()
        },
    );
    found.unwrap()
}

/// Records of a response that would disclose a certificate or its usage.
fn disclosing(resp: &[u8]) -> Vec<String> {
    records(resp)
        .into_iter()
        .filter(|r| r.starts_with(b"C2") || r.starts_with(b"C3") || r.starts_with(b"C4"))
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect()
}

/// R03: DEF asks about ABC's importer, by IOR and by certificate, in a
/// file and over TCP; the answers are those for a certificate that does
/// not exist.
#[test]
fn broker_querying_another_filers_importer_is_r03() {
    let (s, d, addr) = setup();
    let q = |number: &str| {
        batch(
            "DEF",
            "PWDEF1",
            "EC",
            "",
            "DEF",
            &[format!("C1I{IOR}"), format!("C1C{IOR}AU{number:<10}")],
        )
    };
    let got = drop_wait(&s, "abi", "def-query.txt", q("9AU12345B").as_bytes());
    let t = text(&got);
    assert_eq!(t.matches("C9RFR03   IOR NOT AUTHORIZED FOR FILER").count(), 2, "{t}");
    assert!(disclosing(&got).is_empty(), "disclosed: {:?}", disclosing(&got));
    assert!(!t.contains("DOWNS") && !t.contains("ABC1234567"), "{t}");
    // The same as for a certificate that does not exist (but for the number echoed).
    let none = drop_wait(&s, "abi", "def-query-none.txt", q("9AU99999Z").as_bytes());
    assert_eq!(text(&none).replace("9AU99999Z", "9AU12345B"), t, "existence disclosed");
    refusal_logged(&d, Some("-def-query.txt"), "R03", "DEF");
    let j = journal_line(&s, &[" input=def-query.txt "]);
    assert!(
        j.contains(" sender=DEF app=EC outcome=processed accepted=0 rejected=2 "),
        "{j}"
    );
    // Over TCP.
    let got = tcp(addr, &q("9AU12345B"));
    assert_eq!(text(&got), t, "TCP answer");
    refusal_logged(&d, None, "R03", "DEF");
    let j = journal_line(&s, &[" claim=tcp-"]);
    assert!(
        j.contains(" sender=DEF app=EC outcome=processed accepted=0 rejected=2 "),
        "{j}"
    );
}

/// R05 and G06: NZ queries and cancels AU's certificate; nothing is shown
/// or changed, and the answers do not tell whether it exists.
#[test]
fn country_querying_or_cancelling_another_countrys_certificate() {
    let (s, d, addr) = setup();
    let before = s.ok(&["query", "certificate", "AU", "9AU12345B", "--json"]);
    let gq = |number: &str| {
        batch(
            "NZ1",
            "PWNZ01",
            "GQ",
            "",
            "NZ1",
            &[format!("Q1CAU{number:<10}"), "Q1SAU          10".to_string()],
        )
    };
    let got = drop_wait(&s, "ecert", "nz-query.txt", gq("9AU12345B").as_bytes());
    let t = text(&got);
    assert_eq!(t.matches("C9RFR05   COUNTRY DOES NOT MATCH SENDER").count(), 2, "{t}");
    assert!(disclosing(&got).is_empty(), "disclosed: {:?}", disclosing(&got));
    let none = drop_wait(&s, "ecert", "nz-query-none.txt", gq("9AU99999Z").as_bytes());
    assert_eq!(text(&none).replace("9AU99999Z", "9AU12345B"), t, "existence disclosed");
    refusal_logged(&d, Some("-nz-query.txt"), "R05", "NZ1");
    let j = journal_line(&s, &[" input=nz-query.txt "]);
    assert!(
        j.contains(" sender=NZ1 app=GQ outcome=processed accepted=0 rejected=2 "),
        "{j}"
    );

    // Cancel, replace and add on AU's numbers, by file then over TCP.
    let gt = |number: &str, reference: &str| {
        let mut details = vec![format!("G1XAU{number:<10}")];
        details.push(format!(
            "G1RAU{number:<10}Q0201      000000000100KG 20260101202612312026{IOR}"
        ));
        details.extend(certificate("AU", number, 100));
        batch("NZ1", "PWNZ01", "GT", reference, "NZ1", &details)
    };
    let got = drop_wait(&s, "ecert", "nz-cancel.txt", gt("9AU12345B", "NZ-X-1").as_bytes());
    let t = text(&got);
    assert_eq!(t.matches("G06").count(), 3, "{t}");
    for code in ["G03", "G04", "G05", "G17", "G18"] {
        assert!(!t.contains(code), "{code} discloses the certificate: {t}");
    }
    let none = drop_wait(&s, "ecert", "nz-cancel-none.txt", gt("9AU99999Z", "NZ-X-2").as_bytes());
    assert_eq!(
        text(&none)
            .replace("9AU99999Z", "9AU12345B")
            .replace("NZ-X-2", "NZ-X-1"),
        t,
        "existence disclosed"
    );
    refusal_logged(&d, Some("-nz-cancel.txt"), "G06", "NZ1");
    let j = journal_line(&s, &[" input=nz-cancel.txt "]);
    assert!(
        j.contains(" sender=NZ1 app=GT outcome=processed accepted=0 rejected=3 "),
        "{j}"
    );
    // Over TCP (the broker channel): a country's GT is not even allowed there.
    let got = tcp(addr, &gt("9AU12345B", "NZ-X-3"));
    assert!(
        text(&got).contains("X1 FX07   APPLICATION NOT ALLOWED FOR SENDER"),
        "{}",
        text(&got)
    );
    refusal_logged(&d, None, "X07", "NZ1");
    // Over TCP on a country endpoint (`listen_channel = "ecert"`).
    let mut d = d;
    assert!(d.terminate(Duration::from_secs(20)).success());
    let mut d = s.start(&["--listen", "127.0.0.1:0"], &[("ECERTD_LISTEN_CHANNEL", "ecert")]);
    let addr = d.addr("TCP endpoint listening");
    let got = tcp(addr, &gt("9AU12345B", "NZ-X-4"));
    assert_eq!(text(&got).matches("G06").count(), 3, "{}", text(&got));
    refusal_logged(&d, None, "G06", "NZ1");
    let got = tcp(addr, &gq("9AU12345B"));
    assert_eq!(text(&got), text(&s.response("nz-query.txt")), "TCP answer");
    refusal_logged(&d, None, "R05", "NZ1");
    let j = journal_line(&s, &[" claim=tcp-", " channel=ecert sender=NZ1 app=GQ "]);
    assert!(
        j.contains(" claim=tcp-") && j.contains(" accepted=0 rejected=2 "),
        "{j}"
    );
    // Nothing changed.
    assert_eq!(s.ok(&["query", "certificate", "AU", "9AU12345B", "--json"]), before);
    let missing = s
        .cmd()
        .args(["query", "certificate", "AU", "9AU99999Z"])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "NZ1 added an AU certificate");
    assert!(s.ledger_mismatches().is_empty());
}

/// X08: a wrong password and an unknown sender answer alike, in rejected/
/// for a file and on the connection for TCP; nothing reaches outbound/.
#[test]
fn wrong_password_and_unknown_sender_are_x08() {
    let (s, d, addr) = setup();
    let outbound_before = s.entries("outbound/ABC").len();
    let q = |sender: &str, pw: &str| batch(sender, pw, "EC", "", sender, &[format!("C1I{IOR}")]);
    let got = drop_wait(&s, "abi", "badpw.txt", q("ABC", "WRONG1").as_bytes());
    let t = text(&got);
    assert!(t.contains("X1 FX08   SENDER NOT AUTHORIZED"), "{t}");
    assert!(disclosing(&got).is_empty());
    assert!(s.root.join("rejected/badpw.txt.resp").exists());
    assert!(s.root.join("rejected/badpw.txt.why").exists());
    assert_eq!(s.entries("outbound/ABC").len(), outbound_before);
    let unknown = drop_wait(&s, "abi", "unknown.txt", q("ZZZ", "PWABC1").as_bytes());
    assert_eq!(
        text(&unknown).replace("ZZZ", "ABC"),
        t,
        "unknown sender and wrong password answer differently"
    );
    refusal_logged(&d, Some("-badpw.txt"), "X08", "ABC");
    refusal_logged(&d, Some("-unknown.txt"), "X08", "ZZZ");
    let j = journal_line(&s, &[" input=badpw.txt "]);
    assert!(
        j.contains(" sender=- app=EC outcome=rejected accepted=0 rejected=0 "),
        "{j}"
    );
    assert!(j.ends_with(" response=rejected/badpw.txt.resp"), "{j}");
    let got = tcp(addr, &q("ABC", "WRONG1"));
    assert_eq!(text(&got), t, "TCP answer");
    refusal_logged(&d, None, "X08", "ABC");
    let j = journal_line(&s, &[" claim=tcp-"]);
    assert!(j.contains(" sender=- app=EC outcome=rejected "), "{j}");
}

/// X09: ABC, with its own password, files and queries as DEF; nothing is applied.
#[test]
fn filer_code_spoofed_in_the_b_record_is_x09() {
    let (s, d, addr) = setup();
    let counts = s.counts();
    let mut details = entry('A', 5_000_001, IOR, &[("AU", "9AU12346B".to_string(), 100_000)]);
    details[0] = details[0].replacen("10AABC", "10ADEF", 1);
    let spoof = batch("ABC", "PWABC1", "AE", "SPOOF-1", "DEF", &details);
    let got = drop_wait(&s, "abi", "spoof.txt", spoof.as_bytes());
    let t = text(&got);
    assert!(t.contains("X1 FX09   FILER CODE NOT AUTHORIZED FOR SENDER"), "{t}");
    assert!(t.contains("X1RF999   BATCH REJECTED"), "{t}");
    refusal_logged(&d, Some("-spoof.txt"), "X09", "ABC");
    let j = journal_line(&s, &[" input=spoof.txt "]);
    assert!(j.contains(" sender=ABC app=AE outcome=rejected "), "{j}");
    let query = batch("ABC", "PWABC1", "EC", "", "DEF", &[format!("C1I{IOR}")]);
    let got = tcp(addr, &query);
    assert!(text(&got).contains("X1 FX09"), "{}", text(&got));
    assert!(disclosing(&got).is_empty());
    refusal_logged(&d, None, "X09", "ABC");
    let mut after = s.counts();
    // Only the remembered batch reference of the refusal is new.
    for (k, v) in after.iter_mut() {
        if *k == "batches_remembered" || *k == "inputs_processed" {
            *v = 0;
        }
    }
    let mut before = counts.clone();
    for (k, v) in before.iter_mut() {
        if *k == "batches_remembered" || *k == "inputs_processed" {
            *v = 0;
        }
    }
    assert_eq!(after, before, "a spoofed batch changed the ledger");
}
