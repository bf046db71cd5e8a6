use super::*;
use crate::gen::{self, EntryMix, Population, Rng, COUNTRIES};
use crate::record::{BatchReader, RawBatch};
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

/// Every certificate's balance and usage history, audited.
fn ledger(store: &mut Store, certificates: i64) -> Vec<String> {
    store
        .read(|tx| -> Result<_, StoreError> {
            assert!(tx.ledger_mismatches()?.is_empty());
            (1..=certificates)
                .map(|id| {
                    let c = tx.certificate_by_id(id)?.unwrap();
                    Ok(format!("{id} {} {:?}", c.used, tx.usage_events(id)?))
                })
                .collect()
        })
        .unwrap()
}

/// A group's sweep shared between the reader and the writer: whichever of
/// them reads a chunk, and however many each reads, the answers and the
/// ledger are the writer's alone.
#[test]
fn a_sweep_shared_with_the_writer_answers_as_the_writer_alone() {
    let date = Date::new(2026, 3, 15).unwrap();
    let pop = Population {
        certificates: 200,
        per_ior: 10,
        certified: 3_000,
    };
    let mix = EntryMix {
        entries: 120,
        entries_per_batch: 5,
        max_lines: 4,
        refused_share: 0.2,
        claim: 1_000,
        first_number: 1,
    };
    // Then entries of other numbers claiming the same certificates again:
    // a group's sweep is read before the group ahead of it commits.
    let mut ae = Vec::new();
    gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(5), "SH").unwrap();
    let again = EntryMix {
        first_number: 5_000,
        ..mix
    };
    gen::write_ae(&mut ae, &pop, &again, &mut Rng::new(6), "SI").unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut alone = populated(&dir.path().join("alone.db"), &pop, date);
    let want = responses(&mut Engine::new(&mut alone, date), &ae);
    let want_ledger = ledger(&mut alone, 200);

    // Chunks of 4 keys; a group of 4 batches names up to 80.
    for reader_chunks in [0, 2, 12, usize::MAX] {
        let mut store = populated(&dir.path().join(format!("shared-{reader_chunks}.db")), &pop, date);
        let reader = store.certificate_reader().unwrap().unwrap();
        let mut engine = Engine::new(&mut store, date);
        engine.lookahead = Some(Lookahead::start_sharing(reader, 4, reader_chunks).unwrap());
        let got = responses(&mut engine, &ae);
        assert!(engine.groups_swept() > 0, "reader_chunks {reader_chunks}: swept");
        if reader_chunks < 12 {
            assert!(
                engine.sweep_chunks_read_by_writer() > 0,
                "reader_chunks {reader_chunks}: the writer read its share"
            );
        }
        drop(engine);
        assert!(
            got == want,
            "reader_chunks {reader_chunks}: responses differ from the writer's alone"
        );
        assert_eq!(ledger(&mut store, 200), want_ledger, "reader_chunks {reader_chunks}");
    }
}

/// The daemon commits a file group by group, each in an engine of its own,
/// and may commit other batches on the same connection in between, which
/// `PRAGMA data_version` does not show: a sweep read before such a change
/// is dropped, and the file is answered as by the writer alone.
#[test]
fn a_sweep_is_dropped_when_the_writers_own_connection_commits_between_groups() {
    let date = Date::new(2026, 3, 15).unwrap();
    let pop = Population {
        certificates: 40,
        per_ior: 4,
        certified: 3_000,
    };
    let mix = EntryMix {
        entries: 120,
        entries_per_batch: 5,
        max_lines: 3,
        refused_share: 0.0,
        claim: 1_000,
        first_number: 1,
    };
    let mut ae = Vec::new();
    gen::write_ae(&mut ae, &pop, &mix, &mut Rng::new(9), "OC").unwrap();
    let mut reader = BatchReader::new(&ae[..]);
    let mut batches = Vec::new();
    while let Some(b) = reader.next_batch().unwrap() {
        batches.push(b);
    }
    let groups: Vec<Arc<Vec<RawBatch>>> = batches.chunks(6).map(|g| Arc::new(g.to_vec())).collect();
    assert_eq!(groups.len(), 4);
    let dir = tempfile::tempdir().unwrap();

    let mut answers = Vec::new();
    for ahead in [true, false] {
        let mut store = populated(&dir.path().join(format!("own-{ahead}.db")), &pop, date);
        let mut session = Session::new(Channel::Abi);
        let (mut carried, mut out, mut swept, mut first) = (None, Vec::new(), 0, 0);
        for (i, group) in groups.iter().enumerate() {
            let mut engine = Engine::new(&mut store, date);
            if ahead {
                engine = engine.with_ahead(carried.take());
            }
            let next = groups.get(i + 1);
            let last = next.is_none();
            for r in engine
                .process_input_group(&mut session, group, "c-1", "f.txt", first, last, next)
                .unwrap()
            {
                out.extend_from_slice(&r.response);
            }
            first += group.len() as u64;
            swept += engine.groups_swept();
            carried = engine.into_ahead();
            if i == 0 {
                // Time for the next group's sweep to be read, then a change
                // on the same connection: every importer's certificates
                // now belong to another.
                std::thread::sleep(std::time::Duration::from_millis(300));
                store
                    .execute_raw("UPDATE certificates SET ior = '99-9999999AA'")
                    .unwrap();
            }
        }
        if ahead {
            assert_eq!(swept, 3, "the group after the change read afresh");
        }
        answers.push(out);
    }
    assert!(answers[0] == answers[1], "responses differ from the writer's alone");
}
