//! Contention, through the real binary: eight brokers at once, four
//! dropping files in inbound/abi and four over TCP, claiming the same few
//! certificates, far beyond what they hold. 5,000 claims by default,
//! 100,000 with `ECERTD_LONG_TESTS=1`.
//!
//! What must hold: every batch has exactly one response; every entry
//! exactly one final disposition; per certificate, the sum of the claims
//! of the accepted entries (read from the responses) equals `used` in the
//! store and never exceeds the certified quantity; the ledger replays.

mod daemon_support;
mod hardening_support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use daemon_support::*;
use hardening_support::*;

const BROKERS: usize = 8;
/// Brokers 0..FILE_BROKERS drop files; the others use TCP.
const FILE_BROKERS: usize = 4;
const CERTS: usize = 12;
const ENTRIES_PER_BATCH: usize = 10;
const BATCHES_PER_FILE: usize = 4;

fn broker_id(b: usize) -> String {
    format!("BK{}", b + 1)
}

fn broker_password(b: usize) -> String {
    format!("PWBK{}1", b + 1)
}

/// Certificate `i`: (country, number).
fn cert(i: usize) -> (&'static str, String) {
    let country = if i.is_multiple_of(2) { "AU" } else { "NZ" };
    (country, format!("9{country}{i:05}C"))
}

/// One broker's work: batches (text) and, per entry number, its claims
/// `(certificate index, hundredths)`.
struct Work {
    batches: Vec<String>,
    claims: usize,
}

type Entries = HashMap<(String, String), Vec<(usize, u64)>>;

/// Splits `total` claims over the brokers: entries of 1-3 lines, each line
/// claiming a random certificate.
fn workload(total: usize, seed: u64) -> (Vec<Work>, Entries, u64) {
    let mut rng = Rng::new(seed);
    let mut entries: Entries = HashMap::new();
    let mut works: Vec<Work> = (0..BROKERS)
        .map(|_| Work {
            batches: Vec::new(),
            claims: 0,
        })
        .collect();
    let mut demand = 0u64;
    let mut made = 0usize;
    let mut k = 0u32;
    while made < total {
        for (b, w) in works.iter_mut().enumerate() {
            let id = broker_id(b);
            let mut details = Vec::new();
            for _ in 0..ENTRIES_PER_BATCH {
                k += 1;
                let n = (b as u32 + 1) * 1_000_000 + k;
                let lines: Vec<(usize, u64)> = (0..1 + rng.below(3))
                    .map(|_| (rng.below(CERTS as u64) as usize, 1_000 + rng.below(20) * 1_000))
                    .collect();
                let named: Vec<(String, String, u64)> = lines
                    .iter()
                    .map(|(c, q)| {
                        let (country, number) = cert(*c);
                        (country.to_string(), number, *q)
                    })
                    .collect();
                let refs: Vec<(&str, &str, u64)> = named.iter().map(|(c, n, q)| (c.as_str(), n.as_str(), *q)).collect();
                details.extend(entry_add(&id, n, IOR, &refs));
                demand += lines.iter().map(|(_, q)| q).sum::<u64>();
                made += lines.len();
                w.claims += lines.len();
                entries.insert((id.clone(), entry_digits_for(&id, n)), lines);
            }
            let reference = format!("C-{id}-{}", w.batches.len());
            w.batches
                .push(batch(&id, &broker_password(b), "AE", &reference, &id, &details));
        }
    }
    (works, entries, demand)
}

/// The remaining quantities the C00 records report, per certificate, in
/// hundredths: `(entry key, line) → LEFT`.
fn lefts(resp: &[u8], entries: &Entries, out: &mut [Vec<u64>]) {
    let mut at: Option<((String, String), usize)> = None;
    for r in records(resp) {
        if r.starts_with(b"E0LINE  ") {
            let key = (
                String::from_utf8_lossy(&r[8..11]).into_owned(),
                String::from_utf8_lossy(&r[11..19]).into_owned(),
            );
            let line: usize = String::from_utf8_lossy(&r[19..22]).parse().unwrap();
            at = Some((key, line));
        } else if r.starts_with(b"E1 IC00") {
            let text = String::from_utf8_lossy(&r[10..50]).into_owned();
            let left = text
                .split("LEFT ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .unwrap_or_else(|| panic!("C00 narrative {text:?}"));
            let (units, cents) = left.split_once('.').unwrap();
            let h = units.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap();
            let (key, line) = at.clone().expect("C00 after an E0 LINE");
            let c = entries[&key][line - 1].0;
            out[c].push(h);
        }
    }
}

/// The final E1 records of AX responses, `(filer, entry) → dispositions`, and the entries refused Q05.
fn dispositions(resp: &[u8], out: &mut BTreeMap<(String, String), Vec<u8>>, q05: &mut HashMap<(String, String), bool>) {
    for r in records(resp) {
        if r.len() < 61 || &r[..2] != b"E1" {
            continue;
        }
        let key = (
            String::from_utf8_lossy(&r[50..53]).into_owned(),
            String::from_utf8_lossy(&r[53..61]).into_owned(),
        );
        match r[2] {
            b'A' | b'R' => out.entry(key).or_default().push(r[2]),
            _ if &r[4..7] == b"Q05" => {
                q05.insert(key, true);
            }
            _ => {}
        }
    }
}

#[test]
fn eight_brokers_claiming_the_same_certificates() {
    let total = size(5_000, 100_000);
    let seed = 0xC0_47E5_7105;
    let (works, entries, demand) = workload(total, seed);
    let claims: usize = works.iter().map(|w| w.claims).sum();
    // Supply: 60 % of the demand, spread evenly: many claims must be refused.
    let per_cert = demand * 6 / 10 / CERTS as u64;
    let s = Spool::new();
    for b in 0..BROKERS {
        add_broker(&s, &broker_id(b), &broker_password(b));
    }
    for (country, sender, pw) in [("AU", "AU1", "PWAU01"), ("NZ", "NZ1", "PWNZ01")] {
        let mut details = Vec::new();
        for i in (0..CERTS).filter(|i| cert(*i).0 == country) {
            details.extend(certificate(country, &cert(i).1, per_cert));
        }
        s.drop_file(
            "ecert",
            &format!("gt-{country}.txt"),
            batch(sender, pw, "GT", "", sender, &details).as_bytes(),
        );
    }
    let mut d = s.start(&["--listen", "127.0.0.1:0"], &[]);
    let addr = d.addr("TCP endpoint listening");
    wait_until(Duration::from_secs(60), "certificates", || {
        s.responses().len() == 2 && s.idle()
    });

    let barrier = Arc::new(Barrier::new(BROKERS));
    let started = Instant::now();
    let mut threads = Vec::new();
    for (b, w) in works.iter().enumerate() {
        let batches = w.batches.clone();
        let barrier = barrier.clone();
        let inbound = s.inbound("abi");
        threads.push(std::thread::spawn(move || -> Vec<(String, Vec<u8>)> {
            barrier.wait();
            if b < FILE_BROKERS {
                // Files of a few batches each, written under a dot-name and renamed.
                for (f, chunk) in batches.chunks(BATCHES_PER_FILE).enumerate() {
                    let name = format!("{}-{f:05}.txt", broker_id(b));
                    let tmp = inbound.join(format!(".{name}"));
                    std::fs::write(&tmp, chunk.concat()).unwrap();
                    std::fs::rename(&tmp, inbound.join(&name)).unwrap();
                }
                Vec::new()
            } else {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                batches
                    .iter()
                    .map(|text| {
                        c.write_all(text.as_bytes()).unwrap();
                        (text.clone(), read_batches(&mut c, 1).expect("TCP answer"))
                    })
                    .collect()
            }
        }));
    }
    let tcp_answers: Vec<Vec<(String, Vec<u8>)>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let tcp_done = started.elapsed();
    let files: Vec<String> = (0..FILE_BROKERS)
        .flat_map(|b| {
            (0..works[b].batches.len().div_ceil(BATCHES_PER_FILE)).map(move |f| format!("{}-{f:05}.txt", broker_id(b)))
        })
        .collect();
    wait_until(Duration::from_secs(3600), "every file answered", || {
        s.responses().len() == files.len() + 2 && s.idle()
    });
    let took = started.elapsed();
    let (hwm, rss) = memory_kib(d.pid());

    // Every batch exactly one response; every entry exactly one disposition.
    let mut finals: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    let mut left: Vec<Vec<u64>> = vec![Vec::new(); CERTS];
    let mut q05 = HashMap::new();
    for (b, answers) in tcp_answers.iter().enumerate().skip(FILE_BROKERS) {
        assert_eq!(answers.len(), works[b].batches.len(), "TCP answers of {}", broker_id(b));
        for (_, a) in answers {
            let recs = records(a);
            assert!(
                recs[0].starts_with(b"A") && &recs[0][25..27] == b"AX",
                "{}",
                String::from_utf8_lossy(a)
            );
            dispositions(a, &mut finals, &mut q05);
            lefts(a, &entries, &mut left);
        }
    }
    for f in &files {
        let resp = s.response(f);
        let batches = records(&resp).iter().filter(|r| r.starts_with(b"Z")).count();
        let b: usize = f[2..3].parse::<usize>().unwrap() - 1;
        let fi: usize = f[4..9].parse().unwrap();
        let want = works[b].batches.len().min((fi + 1) * BATCHES_PER_FILE) - fi * BATCHES_PER_FILE;
        assert_eq!(batches, want, "batches answered in {f}");
        dispositions(&resp, &mut finals, &mut q05);
        lefts(&resp, &entries, &mut left);
    }
    assert_eq!(finals.len(), entries.len(), "entries with a disposition");
    let mut used_by_responses = [0u64; CERTS];
    let (mut accepted, mut refused, mut claims_accepted) = (0, 0, 0);
    for (key, v) in &finals {
        assert_eq!(v.len(), 1, "{key:?}: {} final dispositions", v.len());
        let lines = entries.get(key).unwrap_or_else(|| panic!("unknown entry {key:?}"));
        if v[0] == b'A' {
            accepted += 1;
            claims_accepted += lines.len();
            for (c, q) in lines {
                used_by_responses[*c] += q;
            }
        } else {
            refused += 1;
        }
    }
    let refused_q05 = q05.len();
    // The store agrees with the responses; nothing is over-claimed.
    let mut st = s.store();
    for (c, want) in used_by_responses.iter().enumerate() {
        let (country, number) = cert(c);
        let got = st
            .read(|tx| {
                tx.certificate(
                    ecertd::types::Country::from_stored(country).unwrap(),
                    ecertd::types::CertificateNumber::from_stored(&number).unwrap(),
                )
            })
            .unwrap()
            .expect("certificate on file");
        assert_eq!(got.used.get(), *want, "certificate {number}: used vs accepted claims");
        assert!(got.used.get() <= got.terms.certified.get(), "{number} over-claimed");
    }
    assert!(s.ledger_mismatches().is_empty(), "{:?}", s.ledger_mismatches());
    // Serial: each applied claim saw the balance the one before it left, so
    // the remaining quantities reported per certificate are all different,
    // one per accepted claim line, and the lowest is what is left now.
    for (c, v) in left.iter_mut().enumerate() {
        let lines = finals
            .iter()
            .filter(|(_, d)| d[0] == b'A')
            .map(|(k, _)| entries[k].iter().filter(|(x, _)| *x == c).count())
            .sum::<usize>();
        assert_eq!(v.len(), lines, "certificate {c}: C00 records vs accepted claim lines");
        v.sort_unstable();
        let n = v.len();
        v.dedup();
        assert_eq!(v.len(), n, "certificate {c}: two claims reported the same balance");
        assert_eq!(
            v.first().copied(),
            Some(per_cert - used_by_responses[c]),
            "certificate {c}: last balance"
        );
    }
    // Contention really happened: claims were refused for want of balance,
    // and every certificate was nearly used up.
    assert!(
        refused_q05 > 0 && accepted > 0,
        "accepted {accepted}, refused for balance {refused_q05}"
    );
    for (c, used) in used_by_responses.iter().enumerate() {
        assert!(
            *used * 100 >= per_cert * 90,
            "certificate {c} only {used} of {per_cert} used"
        );
    }
    // The journal: one line per batch.
    let batches: usize = works.iter().map(|w| w.batches.len()).sum();
    wait_until(Duration::from_secs(30), "journal", || s.journal().len() == batches + 2);
    let st = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "exit {st}");
    eprintln!(
        "contention: {claims} claims in {} entries, {batches} batches ({} by file in {} files, {} over TCP), \
         8 brokers, {CERTS} certificates of {per_cert} each (demand {demand}): {took:.2?} \
         ({:.0} claims/s; TCP brokers done in {tcp_done:.2?}); entries accepted {accepted}, refused {refused} \
         ({refused_q05} for balance), claims applied {claims_accepted}; daemon VmHWM {} MiB, VmRSS {} MiB",
        entries.len(),
        works[..FILE_BROKERS].iter().map(|w| w.batches.len()).sum::<usize>(),
        files.len(),
        works[FILE_BROKERS..].iter().map(|w| w.batches.len()).sum::<usize>(),
        claims as f64 / took.as_secs_f64(),
        hwm / 1024,
        rss / 1024,
    );
}
