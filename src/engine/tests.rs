use super::*;
use crate::gen::{self, EntryMix, Population, Rng, COUNTRIES};
use crate::store::CertificateReader;

/// A store on disk holding the generated population and its senders.
fn populated(path: &std::path::Path, pop: &Population, date: Date) -> Store {
    let mut store = Store::open(path).unwrap().with_password_rounds(1);
    let countries = COUNTRIES
        .iter()
        .map(|&(c, id)| (id, SenderKind::Country, Country::parse(c.as_bytes())));
    for (id, kind, country) in countries.chain([("ABC", SenderKind::Broker, None)]) {
        let sender = Sender {
            id: id.to_string(),
            kind,
            country,
            filers: Vec::new(),
        };
        store.add_sender(&sender, &gen::password(id)).unwrap();
    }
    for c in 0..COUNTRIES.len() {
        let mut gt = Vec::new();
        gen::write_gt(&mut gt, pop, c, 10, "FB").unwrap();
        let mut session = Session::new(Channel::Ecert);
        let n = Engine::new(&mut store, date)
            .process_stream(&mut session, &gt[..], 64, |_| Ok(()))
            .unwrap();
        assert!(n > 0);
    }
    store
}

fn responses(engine: &mut Engine<'_>, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut session = Session::new(Channel::Abi);
    engine
        .process_stream(&mut session, input, 4, |r| {
            out.extend_from_slice(&r.response);
            Ok(())
        })
        .unwrap();
    out
}

/// A look-ahead whose reads fail costs speed only: the writer reads every
/// certificate itself and answers as it would without one.
#[test]
fn a_failing_lookahead_leaves_the_reading_to_the_writer() {
    let date = Date::new(2026, 3, 15).unwrap();
    let pop = Population {
        certificates: 24,
        per_ior: 4,
        certified: 3_000,
    };
    let mix = EntryMix {
        entries: 60,
        entries_per_batch: 5,
        max_lines: 3,
        refused_share: 0.2,
        claim: 1_000,
        first_number: 1,
    };
    let mut ae = Vec::new();
    gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(3), "FB").unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut alone = populated(&dir.path().join("alone.db"), &pop, date);
    let want = responses(&mut Engine::new(&mut alone, date), &ae);

    let mut store = populated(&dir.path().join("failing.db"), &pop, date);
    // A database without the store's tables: every read fails.
    let broken = CertificateReader::open(&dir.path().join("empty.db")).unwrap();
    let mut engine = Engine::new(&mut store, date);
    engine.lookahead = Some(Lookahead::start(broken).unwrap());
    let got = responses(&mut engine, &ae);
    assert_eq!(engine.batches_read_ahead(), 0);
    assert!(!got.is_empty());
    assert!(got == want, "responses differ from the writer's alone");
}
