use super::*;

fn broker() -> Sender {
    Sender {
        id: "ABC".into(),
        kind: SenderKind::Broker,
        country: None,
        filers: vec![],
    }
}

/// An accepted entry summary with one debit: line 1 of `entry` (version
/// `version`) claims `quantity` of certificate `certificate` on `date`.
fn debit(entry: EntryNumber, version: u32, certificate: i64, quantity: u64, date: u32) -> EntryChange {
    EntryChange {
        entry,
        version,
        deleted: false,
        ior: None,
        credits: vec![],
        debits: vec![ClaimChange {
            line: 1,
            certificate,
            quantity: Hundredths::new(quantity),
            version,
        }],
        date: Date::from_ccyymmdd(date).unwrap(),
    }
}

/// A store file at `path` as schema version `version` left it, holding
/// what `sql` inserts (foreign keys off, as a migration runs).
fn store_at_version(path: &std::path::Path, version: usize, sql: &str) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    for migration in &MIGRATIONS[..version] {
        conn.execute_batch(migration).unwrap();
    }
    conn.pragma_update(None, "user_version", version as i64).unwrap();
    conn.execute_batch(sql).unwrap();
    conn
}

/// A store written by schema version 1 (balances inside `certificates`)
/// opens with its certificates, balances and events intact, and its next
/// claim continues the certificate's event sequence.
#[test]
fn version_1_store_migrates_with_its_balances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    store_at_version(
        &path,
        1,
        "INSERT INTO certificates (country, number, program, hts, unit, certified, used, issued, expires,
         quota_year, ior, exporter, events) VALUES
         ('AU','C1','Q','0201','KG',10000,2500,20260101,20261231,2026,'12-3456789AB','X',1),
         ('NZ','C2','Q','0201','KG',500,0,20260101,20261231,2026,'12-3456789AB','Y',0);
         INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version)
         VALUES (1,1,'ABC','12345676',1,'D',2500,20260315,1);",
    );
    let mut s = Store::open(&path).unwrap();
    let au = Country::from_stored("AU").unwrap();
    let c1 = CertificateNumber::from_stored("C1").unwrap();
    let entry = EntryNumber::parse(FilerCode::from_stored("ABC").unwrap(), b"12345676").unwrap();
    s.write(|tx| -> Result<()> {
        let cert = tx.certificate(au, c1)?.unwrap();
        assert_eq!(
            (cert.id, cert.used, cert.terms.certified),
            (1, Hundredths::new(2500), Hundredths::new(10000))
        );
        assert_eq!(cert.terms.exporter, "X");
        tx.apply_entry(&debit(entry, 2, 1, 100, 20260316))?;
        Ok(())
    })
    .unwrap();
    let next_id = s
        .write(|tx| -> Result<_> {
            let mut terms = tx.certificate_by_id(2)?.unwrap().terms;
            terms.number = CertificateNumber::from_stored("C3").unwrap();
            tx.insert_certificate(&terms)
        })
        .unwrap();
    assert_eq!(next_id, 3);
    let (events, mismatches) = s
        .read(|tx| -> Result<_> { Ok((tx.usage_events(1)?, tx.ledger_mismatches()?)) })
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].quantity, Hundredths::new(100));
    assert!(mismatches.is_empty(), "{mismatches:?}");
    let balances: Vec<(i64, i64, i64)> = s
        .conn
        .prepare("SELECT seq, used, certified FROM usage_events WHERE certificate = 1 ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(balances, vec![(1, 2500, 10000), (2, 2600, 10000)]);
    let version: i64 = s.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
}

/// A store written by schema version 2 (balances in a table of their own)
/// opens with each usage event carrying its certificate's running balance:
/// the latest event's is the balance, and an event booked before the
/// certificate's quantity was lowered keeps its balance within range.
#[test]
fn version_2_store_migrates_its_balances_into_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    // C1: 800 used, 600 given back, then its quantity lowered to 500.
    store_at_version(
        &path,
        2,
        "INSERT INTO certificates (id, country, number, program, hts, unit, certified, issued, expires,
         quota_year, ior, exporter) VALUES
         (1, 'AU','C1','Q','0201','KG',500,20260101,20261231,2026,'12-3456789AB','X'),
         (2, 'NZ','C2','Q','0201','KG',500,20260101,20261231,2026,'12-3456789AB','Y');
         INSERT INTO balances (certificate, certified, used, events) VALUES (1, 500, 200, 2), (2, 500, 0, 0);
         INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version) VALUES
         (1,1,'ABC','12345676',1,'D',800,20260315,1),
         (1,2,'ABC','12345676',1,'C',600,20260316,1);",
    );
    let mut s = Store::open(&path).unwrap();
    let events: Vec<(i64, i64, i64, i64)> = s
        .conn
        .prepare("SELECT certificate, seq, used, certified FROM usage_events ORDER BY certificate, seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(events, vec![(1, 1, 800, 800), (1, 2, 200, 500)]);
    let tables: i64 = s
        .conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'balances'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tables, 0);
    let au = Country::from_stored("AU").unwrap();
    let nz = Country::from_stored("NZ").unwrap();
    let number = |n: &str| CertificateNumber::from_stored(n).unwrap();
    // Read one at a time, and as a group (the last of several events, and
    // none); the next event continues C1's sequence and balance.
    s.write(|tx| -> Result<()> {
        assert_eq!(tx.certificate(au, number("C1"))?.unwrap().used, Hundredths::new(200));
        assert_eq!(tx.certificate(nz, number("C2"))?.unwrap().used, Hundredths::ZERO);
        Ok(())
    })
    .unwrap();
    s.write(|tx| -> Result<()> {
        tx.prefetch_certificates(&mut vec![(nz, number("C2")), (au, number("C1"))])?;
        assert_eq!(tx.certificate(au, number("C1"))?.unwrap().used, Hundredths::new(200));
        assert_eq!(tx.certificate(nz, number("C2"))?.unwrap().used, Hundredths::ZERO);
        tx.apply_entry(&debit(
            EntryNumber::parse(FilerCode::from_stored("ABC").unwrap(), b"12345684").unwrap(),
            1,
            1,
            100,
            20260317,
        ))
    })
    .unwrap();
    let last: (i64, i64, i64) = s
        .conn
        .query_row(
            "SELECT seq, used, certified FROM usage_events WHERE certificate = 1 ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(last, (3, 300, 500));
    assert!(s.read(|tx| tx.ledger_mismatches()).unwrap().is_empty());
}

/// A store written by schema version 3 (events clustered by certificate)
/// opens with its events intact, in booking order under the unique ledger
/// index; the next claim continues the certificate's sequence and balance.
#[test]
fn version_3_store_migrates_its_events_under_the_ledger_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    let rows = |conn: &Connection| -> Vec<(i64, i64, String, i64, i64, i64)> {
        conn.prepare(
            "SELECT certificate, seq, kind, quantity, used, certified FROM usage_events ORDER BY certificate, seq",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    };
    let before = rows(&store_at_version(
        &path,
        3,
        "INSERT INTO certificates (id, country, number, program, hts, unit, certified, issued, expires,
         quota_year, ior, exporter) VALUES
         (1, 'AU','C1','Q','0201','KG',1000,20260101,20261231,2026,'12-3456789AB','X'),
         (2, 'NZ','C2','Q','0201','KG',500,20260101,20261231,2026,'12-3456789AB','Y');
         INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version, used,
         certified) VALUES
         (2,1,'ABC','12345684',1,'D',50,20260315,1,50,500),
         (1,1,'ABC','12345676',1,'D',800,20260315,1,800,1000),
         (1,2,'ABC','12345676',1,'C',600,20260316,1,200,1000);",
    ));
    let mut s = Store::open(&path).unwrap();
    assert_eq!(rows(&s.conn), before);
    let index: String = s
        .conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'usage_events_by_certificate'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(index.starts_with("CREATE UNIQUE INDEX"), "{index}");
    // The key is unique, and events stay append-only.
    let again = "INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version, used,
         certified) VALUES (1,2,'ABC','12345692',1,'D',1,20260317,1,201,1000)";
    assert!(s.execute_raw(again).is_err());
    assert!(s.execute_raw("DELETE FROM usage_events").is_err());
    let au = Country::from_stored("AU").unwrap();
    let nz = Country::from_stored("NZ").unwrap();
    let number = |n: &str| CertificateNumber::from_stored(n).unwrap();
    s.write(|tx| -> Result<()> {
        tx.prefetch_certificates(&mut vec![(nz, number("C2")), (au, number("C1"))])?;
        assert_eq!(tx.certificate(au, number("C1"))?.unwrap().used, Hundredths::new(200));
        assert_eq!(tx.certificate(nz, number("C2"))?.unwrap().used, Hundredths::new(50));
        tx.apply_entry(&debit(
            EntryNumber::parse(FilerCode::from_stored("ABC").unwrap(), b"12345692").unwrap(),
            1,
            1,
            100,
            20260317,
        ))
    })
    .unwrap();
    let last = rows(&s.conn).into_iter().rfind(|r| r.0 == 1).unwrap();
    assert_eq!(last, (1, 3, "D".to_string(), 100, 300, 1000));
    assert!(s.read(|tx| tx.ledger_mismatches()).unwrap().is_empty());
}

/// A group's balances are read by seeking the ledger index, once per
/// certificate: no scan of the events.
#[test]
fn group_balances_seek_the_ledger_index() {
    let s = Store::open_in_memory().unwrap();
    let plan: Vec<String> = s
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {LATEST_EVENTS}"))
        .unwrap()
        .query_map([std::rc::Rc::new(vec![rusqlite::types::Value::Integer(1)])], |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.contains("SEARCH u USING INTEGER PRIMARY KEY (rowid=?)")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.contains("SEARCH v USING COVERING INDEX usage_events_by_certificate (certificate=?)")),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|l| l.starts_with("SCAN u") || l.starts_with("SCAN v")),
        "{plan:?}"
    );
}

/// The group look-up seeks each key (no scan of a country's certificates).
#[test]
fn group_look_up_seeks_each_key() {
    let s = Store::open_in_memory().unwrap();
    let plan: Vec<String> = s
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {TERMS_BY_NUMBERS}"))
        .unwrap()
        .query_map(
            params!["AU", std::rc::Rc::new(vec![rusqlite::types::Value::Text("C1".into())])],
            |r| r.get::<_, String>(3),
        )
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.contains("SEARCH c USING PRIMARY KEY (country=? AND number=?)")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|l| l.starts_with("SCAN c")), "{plan:?}");
}

#[test]
fn senders_and_passwords() {
    let mut s = Store::open_in_memory().unwrap();
    s.add_sender(&broker(), "PWABC1").unwrap();
    assert!(matches!(s.add_sender(&broker(), "X"), Err(StoreError::SenderExists(_))));
    let got = s.authenticate("ABC", b"PWABC1").unwrap().unwrap();
    assert_eq!(got.filers, vec![FilerCode::from_stored("ABC").unwrap()]);
    assert!(s.authenticate("ABC", b"PWABC2").unwrap().is_none());
    assert!(s.authenticate("XYZ", b"PWABC1").unwrap().is_none());
    assert!(s.remove_sender("ABC").unwrap());
    assert!(s.authenticate("ABC", b"PWABC1").unwrap().is_none());
}

#[test]
fn usage_events_are_append_only() {
    let mut s = Store::open_in_memory().unwrap();
    assert!(s.execute_raw("UPDATE usage_events SET quantity = 1").is_ok());
    s.execute_raw(
        "INSERT INTO certificates (id, country, number, program, hts, unit, certified, issued, expires, quota_year,
         ior, exporter) VALUES (1, 'AU','1','Q','0201','KG',100,20260101,20261231,2026,'12-3456789AB','X');
         INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version, used,
         certified) VALUES (1,1,'ABC','12345676',1,'D',5,20260315,1,5,100);",
    )
    .unwrap();
    assert!(s.execute_raw("UPDATE usage_events SET quantity = 1").is_err());
    assert!(s.execute_raw("DELETE FROM usage_events").is_err());
    // An event's balance never leaves 0..=certified.
    let event = |seq: i64, kind: &str, quantity: i64, used: i64| {
        format!(
            "INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version, used,
             certified) VALUES (1,{seq},'ABC','12345676',1,'{kind}',{quantity},20260315,1,{used},100)"
        )
    };
    assert!(s.execute_raw(&event(2, "D", 96, 101)).is_err());
    assert!(s.execute_raw(&event(2, "C", 6, -1)).is_err());
    assert!(s.execute_raw(&event(2, "D", 95, 100)).is_ok());
    assert!(s.read(|tx| tx.ledger_mismatches()).unwrap().is_empty());
    // The audit finds an event whose balance is not its replay, and a gap.
    s.execute_raw(&event(3, "C", 10, 100)).unwrap();
    assert_eq!(s.read(|tx| tx.ledger_mismatches()).unwrap(), vec![(1, 100, 90)]);
    s.execute_raw(&event(5, "C", 10, 90)).unwrap();
    assert_eq!(
        s.read(|tx| tx.ledger_mismatches()).unwrap(),
        vec![(1, 100, 90), (1, 90, 80)]
    );
    // And an event on a certificate that is not on file.
    s.execute_raw(&event(1, "D", 5, 5).replace("VALUES (1,", "VALUES (9,"))
        .unwrap();
    assert_eq!(
        s.read(|tx| tx.ledger_mismatches()).unwrap(),
        vec![(1, 100, 90), (1, 90, 80), (9, 5, 5)]
    );
}

/// The events' insert fails without a statement journal (`OR FAIL`): the
/// rows a refused statement wrote before the refused one go with the
/// transaction, and nothing of it is left.
#[test]
fn a_refused_event_leaves_nothing_of_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = two_certificates_with_events(
        &dir.path().join("s.db"),
        "(2,1,'ABC','12345676',1,'D',100,20260315,1,100,500)",
    );
    let au = Country::from_stored("AU").unwrap();
    let filer = FilerCode::from_stored("ABC").unwrap();
    let failed = s.write(|tx| -> Result<()> {
        tx.certificate(au, CertificateNumber::from_stored("C1").unwrap())?;
        // 70 events on C1, seq 1..=70: the first insert statement takes 64.
        for n in 0..70u32 {
            let digits = format!("{:07}", 2_000_000 + n);
            let check = crate::types::entry_check_digit(b"ABC", digits.as_bytes().try_into().unwrap()).unwrap();
            let entry = EntryNumber::parse(filer, format!("{digits}{check}").as_bytes()).unwrap();
            tx.apply_entry(&debit(entry, 1, 1, 1, 20260316))?;
        }
        // Behind the ledger's back, the 40th is already on file.
        tx.tx.execute(
            "INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version, used,
             certified) VALUES (1,40,'ABC','19999999',1,'D',1,20260316,1,1,10000)",
            [],
        )?;
        Ok(())
    });
    assert!(failed.is_err(), "the index refuses the 40th event");
    let (events, c1_used): (i64, i64) = s
        .read(|tx| -> Result<_> {
            Ok((
                tx.tx.query_row("SELECT count(*) FROM usage_events", [], |r| r.get(0))?,
                tx.certificate_by_id(1)?.unwrap().used.get() as i64,
            ))
        })
        .unwrap();
    assert_eq!((events, c1_used), (1, 0), "only the event on file before");
    assert!(s.read(|tx| tx.ledger_mismatches()).unwrap().is_empty());
}

/// A commit stays in the WAL (the automatic checkpoint is a far backstop)
/// until the checkpointer copies it into the database file itself.
#[test]
fn checkpointer_copies_the_wal_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = Store::open(&path).unwrap();
    let checkpointer = Checkpointer::open(&path).unwrap();
    checkpointer.checkpoint().unwrap(); // the schema
                                        // The database file alone, ignoring the WAL.
    let in_file = || -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let c = Connection::open_with_flags(
            uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        c.query_row("SELECT count(*) FROM query_rights", [], |r| r.get(0))
            .unwrap()
    };
    s.write(|tx| -> Result<()> {
        tx.tx.execute(
            "INSERT INTO query_rights (filer, ior, granted) VALUES ('ABC', '12-3456789AB', 1)",
            [],
        )?;
        Ok(())
    })
    .unwrap();
    assert_eq!(in_file(), 0, "committed to the WAL only");
    let (frames, copied) = checkpointer.checkpoint().unwrap();
    assert!(frames > 0 && copied == frames, "{frames} frames, {copied} copied");
    assert_eq!(in_file(), 1, "copied into the database file");
}

/// AU C1 (10,000 KG) and NZ C2 (500 KG), ids 1 and 2, of one importer.
const TWO_CERTIFICATES: &str =
    "INSERT INTO certificates (id, country, number, program, hts, unit, certified, issued, expires, quota_year,
     ior, exporter) VALUES
     (1, 'AU','C1','Q','0201','KG',10000,20260101,20261231,2026,'12-3456789AB','X'),
     (2, 'NZ','C2','Q','0201','KG',500,20260101,20261231,2026,'12-3456789AB','Y');";

/// A store at `path` holding [`TWO_CERTIFICATES`] and the usage events of
/// `events` (rows of `usage_events`, all columns in table order).
fn two_certificates_with_events(path: &std::path::Path, events: &str) -> Store {
    let mut s = Store::open(path).unwrap();
    s.execute_raw(&format!(
        "{TWO_CERTIFICATES}
             INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version,
             used, certified) VALUES {events};"
    ))
    .unwrap();
    s
}

/// [`TWO_CERTIFICATES`], each with a debit on file (C1: 2,500 of 10,000;
/// C2: 100 of 500), and a reader of the store.
fn both_certificates_used(path: &std::path::Path) -> (Store, CertificateReader) {
    let s = two_certificates_with_events(
        path,
        "(1,1,'ABC','12345676',1,'D',2500,20260315,1,2500,10000),
         (2,1,'ABC','12345684',1,'D',100,20260315,1,100,500)",
    );
    let reader = s.certificate_reader().unwrap().unwrap();
    (s, reader)
}

/// What a [`CertificateReader`] fetched is the state the writer's
/// transaction started from: the writer's own view of a certificate wins
/// over the balance read there, a key not on file is remembered as such,
/// and nothing is taken once the transaction has changed certificate terms.
#[test]
fn fetched_certificates_yield_to_the_writers_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, mut reader) = both_certificates_used(&dir.path().join("s.db"));
    let (au, nz) = (Country::from_stored("AU").unwrap(), Country::from_stored("NZ").unwrap());
    let number = |n: &str| CertificateNumber::from_stored(n).unwrap();
    let entry = EntryNumber::parse(FilerCode::from_stored("ABC").unwrap(), b"12345676").unwrap();
    s.write(|tx| -> Result<()> {
        // The writer moves C1 before the reader's answer is taken.
        assert_eq!(tx.certificate(au, number("C1"))?.unwrap().used, Hundredths::new(2500));
        tx.apply_entry(&debit(entry, 1, 1, 1000, 20260316))?;
        let keys = vec![(au, number("C1")), (nz, number("C2")), (au, number("C9"))];
        let fetched = reader.snapshot(|snap| snap.certificates(keys))??;
        assert_eq!(fetched.held.len(), 2);
        assert_eq!(fetched.held[&1].cert.used, Hundredths::new(2500), "the snapshot's");
        assert_eq!(fetched.by_key[&(au, number("C9"))], None, "asked for, not on file");
        assert!(tx.hold_fetched(fetched)?);
        assert_eq!(tx.certificate(au, number("C1"))?.unwrap().used, Hundredths::new(3500));
        let c2 = tx.certificate(nz, number("C2"))?.unwrap();
        assert_eq!(
            (c2.id, c2.used, c2.terms.exporter.as_str()),
            (2, Hundredths::new(100), "Y")
        );
        assert!(tx.certificate(au, number("C9"))?.is_none());
        Ok(())
    })
    .unwrap();
    let used: i64 = s
        .read(|tx| -> Result<_> {
            Ok(tx.tx.query_row(
                "SELECT used FROM usage_events WHERE certificate = 1 ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(used, 3500);
    s.write(|tx| -> Result<()> {
        tx.cancel_certificate(2)?;
        let fetched = reader.snapshot(|snap| snap.certificates(vec![(nz, number("C2"))]))??;
        assert!(!tx.hold_fetched(fetched)?, "taken after a change of terms");
        assert!(tx.certificate(nz, number("C2"))?.unwrap().cancelled);
        Ok(())
    })
    .unwrap();
}

/// A fetch larger than what the ledger holds (a group's sweep of which the
/// writer read a few chunks itself) becomes the ledger's tables, and what
/// the ledger knew still wins over it.
#[test]
fn a_larger_fetch_takes_the_ledgers_place_and_the_ledger_still_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, mut reader) = both_certificates_used(&dir.path().join("s.db"));
    let (au, nz) = (Country::from_stored("AU").unwrap(), Country::from_stored("NZ").unwrap());
    let number = |n: &str| CertificateNumber::from_stored(n).unwrap();
    let entry = EntryNumber::parse(FilerCode::from_stored("ABC").unwrap(), b"12345692").unwrap();
    s.write(|tx| -> Result<()> {
        // The writer holds C2 and moves it; it knows C8 is not on file.
        assert!(tx.certificate(au, number("C8"))?.is_none());
        tx.certificate(nz, number("C2"))?;
        tx.apply_entry(&debit(entry, 1, 2, 50, 20260316))?;
        let keys = vec![(au, number("C1")), (nz, number("C2")), (au, number("C9"))];
        let fetched = reader.snapshot(|snap| snap.certificates(keys))??;
        assert_eq!((fetched.held.len(), tx.ledger.borrow().held.len()), (2, 1));
        assert!(tx.hold_fetched(fetched)?);
        assert_eq!(
            tx.certificate(nz, number("C2"))?.unwrap().used,
            Hundredths::new(150),
            "the ledger's"
        );
        assert_eq!(
            tx.certificate(au, number("C1"))?.unwrap().used,
            Hundredths::new(2500),
            "fetched"
        );
        assert!(tx.certificate(au, number("C9"))?.is_none());
        assert!(tx.certificate(au, number("C8"))?.is_none());
        assert!(tx.ledger.borrow().held[&2].moved);
        Ok(())
    })
    .unwrap();
    let moved = s.take_moved().unwrap();
    assert_eq!(
        moved.0,
        vec![(2, 2, Hundredths::new(150))],
        "what the transaction moved"
    );
    assert!(s.read(|tx| tx.ledger_mismatches()).unwrap().is_empty());
}

/// The next group's sweep: certificates read on the state before one
/// transaction, advanced by what it moved, are the state after it; a failed
/// transaction reports nothing moved.
#[test]
fn a_sweep_advanced_by_what_the_transaction_moved_is_the_state_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = two_certificates_with_events(
        &dir.path().join("s.db"),
        "(2,1,'ABC','12345676',1,'D',100,20260315,1,100,500)",
    );
    let mut reader = s.certificate_reader().unwrap().unwrap();
    let (au, nz) = (Country::from_stored("AU").unwrap(), Country::from_stored("NZ").unwrap());
    let number = |n: &str| CertificateNumber::from_stored(n).unwrap();
    let entry = |digits: &[u8]| EntryNumber::parse(FilerCode::from_stored("ABC").unwrap(), digits).unwrap();
    let mut swept = s
        .write(|tx| -> Result<_> {
            let swept = reader.snapshot(|snap| snap.certificates(vec![(au, number("C1")), (nz, number("C2"))]))??;
            tx.certificate(au, number("C1"))?;
            tx.apply_entry(&debit(entry(b"12345684"), 1, 1, 1000, 20260316))?;
            tx.apply_entry(&debit(entry(b"12345692"), 1, 1, 250, 20260316))?;
            Ok(swept)
        })
        .unwrap();
    assert_eq!(
        swept.held[&1].cert.used,
        Hundredths::ZERO,
        "read before the transaction"
    );
    swept.advance(&s.take_moved().unwrap());
    assert!(s.take_moved().is_none(), "taken once");
    s.write(|tx| -> Result<()> {
        assert!(tx.hold_fetched(swept)?);
        assert_eq!(tx.certificate(au, number("C1"))?.unwrap().used, Hundredths::new(1250));
        assert_eq!(tx.certificate(nz, number("C2"))?.unwrap().used, Hundredths::new(100));
        assert_eq!(
            (tx.ledger.borrow().held[&1].events, tx.ledger.borrow().held[&2].events),
            (2, 1)
        );
        tx.apply_entry(&debit(entry(b"12345700"), 1, 1, 500, 20260317))
    })
    .unwrap();
    assert!(s.read(|tx| tx.ledger_mismatches()).unwrap().is_empty());
    let failed = s.write(|tx| -> Result<()> {
        tx.certificate(au, number("C1"))?;
        tx.apply_entry(&debit(entry(b"12345718"), 1, 1, 1, 20260317))?;
        Err(StoreError::Corrupt("rolled back".into()))
    });
    assert!(failed.is_err());
    assert!(s.take_moved().is_none(), "nothing moved by a failed transaction");
    // A certificate moved, then forgotten by a change of its terms.
    s.write(|tx| -> Result<()> {
        tx.certificate(au, number("C1"))?;
        tx.apply_entry(&debit(entry(b"12345726"), 1, 1, 1, 20260317))?;
        tx.cancel_certificate(1)
    })
    .unwrap();
    assert!(s.take_moved().is_none(), "unknown once forgotten");
    s.write(|tx| -> Result<()> {
        tx.certificate(nz, number("C2"))?;
        tx.apply_entry(&debit(entry(b"12345734"), 1, 2, 1, 20260317))
    })
    .unwrap();
    let moved = s.take_moved().unwrap();
    assert_eq!(moved.0, vec![(2, 2, Hundredths::new(101))]);
}

/// A write transaction's ledger is the truth only until its commit: the
/// next transaction reuses its tables, not what they held.
#[test]
fn the_next_transaction_reads_certificates_afresh() {
    let mut s = Store::open_in_memory().unwrap();
    s.execute_raw(
        "INSERT INTO certificates (id, country, number, program, hts, unit, certified, issued, expires, quota_year,
         ior, exporter) VALUES (1, 'AU','C1','Q','0201','KG',10000,20260101,20261231,2026,'12-3456789AB','X');",
    )
    .unwrap();
    let au = Country::from_stored("AU").unwrap();
    let c1 = CertificateNumber::from_stored("C1").unwrap();
    let used = |s: &mut Store| {
        s.write(|tx| -> Result<_> { Ok(tx.certificate(au, c1)?.unwrap().used) })
            .unwrap()
    };
    assert_eq!(used(&mut s), Hundredths::ZERO);
    // Events appended behind the store's back (as by another process).
    let event = |seq: i64, quantity: i64, used: i64| {
        format!(
            "INSERT INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version, used,
             certified) VALUES (1,{seq},'ABC','12345676',1,'D',{quantity},20260315,1,{used},10000)"
        )
    };
    s.execute_raw(&event(1, 500, 500)).unwrap();
    assert_eq!(used(&mut s), Hundredths::new(500));
    s.execute_raw(&event(2, 200, 700)).unwrap();
    assert_eq!(used(&mut s), Hundredths::new(700));
}

/// A new store is created with [`NEW_STORE_PAGE_SIZE`]; a store created
/// with other pages keeps them and stays usable; the WAL's automatic
/// checkpoint comes at the same size in bytes on both.
#[test]
fn new_stores_get_large_pages_and_old_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let pragma =
        |s: &Store, name: &str| -> i64 { s.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).unwrap() };

    let new = Store::open(&dir.path().join("new.db")).unwrap();
    assert_eq!(pragma(&new, "page_size"), 16_384);
    assert_eq!(pragma(&new, "wal_autocheckpoint"), 4_096);
    drop(new);
    let again = Store::open(&dir.path().join("new.db")).unwrap();
    assert_eq!(pragma(&again, "page_size"), 16_384);

    let path = dir.path().join("old.db");
    let conn = store_at_version(&path, MIGRATIONS.len(), "PRAGMA journal_mode = WAL");
    assert_eq!(
        conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap(),
        4_096
    );
    drop(conn);
    let mut old = Store::open(&path).unwrap();
    assert_eq!(pragma(&old, "page_size"), 4_096);
    assert_eq!(pragma(&old, "wal_autocheckpoint"), 16_384);
    old.add_sender(&broker(), "PWABC1").unwrap();
    assert_eq!(old.list_senders().unwrap().len(), 1);
}
