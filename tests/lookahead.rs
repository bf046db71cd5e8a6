//! The certificate look-ahead (a second connection reading a group's
//! certificates on its own thread) changes how fast `process` runs, never
//! what it answers or what the ledger ends with.

mod common;

use common::*;
use ecertd::engine::{Engine, Session};
use ecertd::envelope::{Channel, SenderKind};
use ecertd::gen::{self, EntryMix, Population, Rng, COUNTRIES};
use ecertd::model::Sender;
use ecertd::store::{Store, StoreError};
use ecertd::types::Country;

/// A store on disk holding the generated population, with its senders.
fn populated(dir: &std::path::Path, name: &str, pop: &Population) -> Store {
    let mut store = Store::open(&dir.join(name)).unwrap().with_password_rounds(1);
    let countries = COUNTRIES.iter().map(|&(c, id)| (id, SenderKind::Country, Some(c)));
    for (id, kind, country) in countries.chain([("ABC", SenderKind::Broker, None)]) {
        let sender = Sender {
            id: id.to_string(),
            kind,
            country: country.map(|c| Country::parse(c.as_bytes()).unwrap()),
            filers: Vec::new(),
        };
        store.add_sender(&sender, &gen::password(id)).unwrap();
    }
    for c in 0..COUNTRIES.len() {
        let mut gt = Vec::new();
        gen::write_gt(&mut gt, pop, c, 10, "LA").unwrap();
        let out = process(&mut store, Channel::Ecert, &gt);
        assert!(!out.is_empty());
    }
    store
}

/// Responses of `input` processed in groups of `group` batches, how many
/// batches the look-ahead read for, and how many groups it read in one sweep
/// while the group before ran.
fn run(store: &mut Store, input: &[u8], group: usize, lookahead: bool) -> (Vec<u8>, u64, u32, u32, u64) {
    run_with(store, input, group, lookahead, |_| {})
}

/// [`run`], calling `between(n)` after the `n`th committed response.
fn run_with(
    store: &mut Store,
    input: &[u8],
    group: usize,
    lookahead: bool,
    mut between: impl FnMut(usize),
) -> (Vec<u8>, u64, u32, u32, u64) {
    let mut engine = Engine::new(store, business_date());
    if lookahead {
        engine = engine.with_lookahead();
    }
    let mut session = Session::new(Channel::Abi);
    let (mut out, mut accepted, mut rejected, mut n) = (Vec::new(), 0, 0, 0);
    engine
        .process_stream(&mut session, input, group, |r| {
            out.extend_from_slice(&r.response);
            accepted += r.accepted;
            rejected += r.rejected;
            n += 1;
            between(n);
            Ok(())
        })
        .unwrap();
    (
        out,
        engine.batches_read_ahead(),
        accepted,
        rejected,
        engine.groups_swept(),
    )
}

/// Every certificate's balance and usage history.
fn ledger(store: &mut Store, certificates: u64) -> Vec<String> {
    store
        .read(|tx| -> Result<_, StoreError> {
            assert!(tx.ledger_mismatches()?.is_empty());
            (1..=certificates as i64)
                .map(|id| {
                    let c = tx.certificate_by_id(id)?.unwrap();
                    Ok(format!("{id} {} {:?}", c.used, tx.usage_events(id)?))
                })
                .collect()
        })
        .unwrap()
}

#[test]
fn lookahead_answers_and_books_exactly_as_the_writer_alone() {
    // Few certificates of three claims each: entries in the same group claim
    // the same certificates, and many claims find them used up.
    let pop = Population {
        certificates: 48,
        per_ior: 4,
        certified: 3_000,
    };
    let mix = EntryMix {
        entries: 300,
        entries_per_batch: 6,
        max_lines: 4,
        refused_share: 0.2,
        claim: 1_000,
        first_number: 1,
    };
    let mut ae = Vec::new();
    let counts = gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(11), "LA").unwrap();
    assert_eq!(counts.batches, 50);

    let dir = tempfile::tempdir().unwrap();
    let mut ahead = populated(dir.path(), "ahead.db", &pop);
    let mut alone = populated(dir.path(), "alone.db", &pop);
    let (with, read_ahead, accepted, rejected, swept) = run(&mut ahead, &ae, 8, true);
    let (without, none, ..) = run(&mut alone, &ae, 8, false);

    assert_eq!(read_ahead, 50, "every batch's certificates read ahead");
    assert_eq!(swept, 7, "each group read in one sweep, the first too");
    assert_eq!(none, 0);
    assert!(
        accepted > 50 && rejected > 50,
        "{accepted} accepted, {rejected} refused"
    );
    assert_bytes_eq(&with, &without, "responses with and without the look-ahead");
    assert_eq!(
        ledger(&mut ahead, pop.certificates),
        ledger(&mut alone, pop.certificates)
    );
}

/// A group's certificates read in one sweep while the group before ran are
/// not used when another connection committed in between: here it gives
/// every certificate another importer, so the later claims must be refused.
#[test]
fn a_sweep_is_dropped_when_another_connection_commits_between_groups() {
    let pop = Population {
        certificates: 48,
        per_ior: 4,
        certified: 3_000,
    };
    let mix = EntryMix {
        entries: 240,
        entries_per_batch: 6,
        max_lines: 3,
        refused_share: 0.0,
        claim: 1_000,
        first_number: 1,
    };
    let mut ae = Vec::new();
    let counts = gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(7), "LC").unwrap();
    assert_eq!(counts.batches, 40);

    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for (name, lookahead) in [("ahead.db", true), ("alone.db", false)] {
        let mut store = populated(dir.path(), name, &pop);
        let mut other = Store::open(&dir.path().join(name)).unwrap();
        // After the first group (8 batches) has committed, before the next.
        let got = run_with(&mut store, &ae, 8, lookahead, |n| {
            if n == 8 {
                other
                    .execute_raw("UPDATE certificates SET ior = '99-9999999AA'")
                    .unwrap();
            }
        });
        outcomes.push(got);
    }
    let (with, _, accepted, rejected, swept) = &outcomes[0];
    let (without, ..) = &outcomes[1];
    assert_eq!(*swept, 4, "the group after the other commit is read afresh");
    assert!(
        *accepted > 0 && *rejected > 100,
        "{accepted} accepted, {rejected} refused"
    );
    assert_bytes_eq(with, without, "responses with and without the look-ahead");
}

#[test]
fn a_store_in_memory_runs_without_lookahead() {
    let pop = Population {
        certificates: 8,
        per_ior: 4,
        certified: 3_000,
    };
    let mix = EntryMix {
        entries: 12,
        entries_per_batch: 4,
        max_lines: 2,
        refused_share: 0.0,
        claim: 1_000,
        first_number: 1,
    };
    let mut store = store_with(&[("ABC", SenderKind::Broker, None, "PWABC1")]);
    let mut ae = Vec::new();
    gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(1), "LA").unwrap();
    let (out, read_ahead, ..) = run(&mut store, &ae, 8, true);
    assert_eq!(read_ahead, 0);
    assert!(!out.is_empty());
}

/// Through the binary: `lookahead` on (the default) and off answer the same
/// bytes, and only the default reads ahead.
#[test]
fn process_reads_ahead_unless_configured_off() {
    let pop = Population {
        certificates: 16,
        per_ior: 4,
        certified: 3_000,
    };
    let mix = EntryMix {
        entries: 40,
        entries_per_batch: 5,
        max_lines: 3,
        refused_share: 0.2,
        claim: 1_000,
        first_number: 1,
    };
    let senders: Vec<SenderSpec> = vec![
        ("AU1", SenderKind::Country, Some("AU"), "PWAU01"),
        ("NZ1", SenderKind::Country, Some("NZ"), "PWNZ01"),
        ("UY1", SenderKind::Country, Some("UY"), "PWUY01"),
        ("AR1", SenderKind::Country, Some("AR"), "PWAR01"),
        ("ABC", SenderKind::Broker, None, "PWABC1"),
    ];
    let mut ae = Vec::new();
    gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(5), "LB").unwrap();
    let answers: Vec<(Vec<u8>, String)> = ["true", "false"]
        .iter()
        .map(|setting| {
            let bin = Bin::with_senders(&senders);
            for c in 0..COUNTRIES.len() {
                let mut gt = Vec::new();
                gen::write_gt(&mut gt, &pop, c, 4, "LB").unwrap();
                bin.process(&bin.write(&format!("gt-{c}.txt"), &gt), Channel::Ecert);
            }
            let file = bin.write("ae.txt", &ae);
            let out = bin
                .command()
                .env("ECERTD_LOOKAHEAD", setting)
                .env("ECERTD_LOG_LEVEL", "ecertd=debug")
                .args(["process", file.to_str().unwrap(), "--channel", "abi"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            (out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect();
    assert_bytes_eq(&answers[0].0, &answers[1].0, "responses with lookahead on and off");
    assert!(
        answers[0].1.contains("certificates read ahead batches=8"),
        "{}",
        answers[0].1
    );
    assert!(
        answers[1].1.contains("certificates read ahead batches=0"),
        "{}",
        answers[1].1
    );
}
