use super::*;
use crate::diagnose;

#[test]
fn synthetic_ledger_loads_consistently() {
    let spec = SyntheticSpec {
        population: Population {
            certificates: 95,
            per_ior: 10,
            certified: 100_000_00,
        },
        usage_events: 1234,
        max_lines: 10,
        claim: 100,
        seed: 3,
        business_date: Date::new(2026, 3, 15).unwrap(),
        per_commit: 7,
        cache_mib: 8,
    };
    let mut entries = spec.entries();
    let (mut n, mut events, mut per_ior) = (0u64, 0u64, std::collections::HashMap::new());
    while let Some(e) = entries.next_entry(|i| i as i64 + 1) {
        let e = e.unwrap();
        n += 1;
        assert!((1..=10).contains(&e.debits.len()));
        assert_eq!(e.entry.digits_str()[..7], format!("{n:07}"));
        *per_ior.entry(e.ior.unwrap()).or_insert(0u64) += e.debits.len() as u64;
        events += e.debits.len() as u64;
    }
    assert_eq!(events, 1234);
    assert_eq!(per_ior.len(), 10);
    assert!(per_ior.values().all(|&v| v == 123 || v == 124));

    let mut store = crate::store::Store::open_in_memory().unwrap();
    let mut calls = 0;
    store.load_synthetic(&spec, &mut |_, _, _| calls += 1).unwrap();
    assert!(calls > 2);
    let (mismatches, counts) = store
        .read(|tx| -> crate::store::Result<_> { Ok((tx.ledger_mismatches()?, tx.counts()?)) })
        .unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
    let count = |k: &str| counts.iter().find(|(name, _)| *name == k).map(|c| c.1);
    assert_eq!(count("certificates"), Some(95));
    assert_eq!(count("usage_events"), Some(1234));
    assert_eq!(count("entries"), Some(n as i64));
    // What the pipeline would answer: certificate 0 as GT sent it.
    let cert = store
        .read(|tx| {
            tx.certificate(
                Country::from_stored("AU").unwrap(),
                CertificateNumber::from_stored("C000000000").unwrap(),
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(cert.terms, spec.certificate(0));
}

#[test]
fn generated_files_are_clean_and_deterministic() {
    let pop = Population {
        certificates: 40,
        per_ior: 5,
        certified: 100_000_00,
    };
    let mut gt = Vec::new();
    for c in 0..COUNTRIES.len() {
        write_gt(&mut gt, &pop, c, 4, "T").unwrap();
    }
    let mix = EntryMix {
        entries: 30,
        entries_per_batch: 7,
        max_lines: 10,
        refused_share: 0.2,
        claim: 100,
        first_number: 1,
    };
    let mut ae = Vec::new();
    let counts = write_ae(&mut ae, &pop, &mix, &mut Rng::new(7), "T").unwrap();
    let mut again = Vec::new();
    write_ae(&mut again, &pop, &mix, &mut Rng::new(7), "T").unwrap();
    assert_eq!(ae, again);
    assert_eq!(counts.entries, 30);
    assert_eq!(counts.batches, 5);
    let mut q = Vec::new();
    write_ec(&mut q, &pop, 10, &mut Rng::new(1), "T").unwrap();
    write_gq(&mut q, &pop, 0, 10, &mut Rng::new(1), "T").unwrap();
    for input in [&gt, &ae, &q] {
        let n = diagnose::check(&input[..], |d| panic!("{d}")).unwrap();
        assert_eq!(n, 0);
    }
}
