//! `ecertd serve --listen` and `--metrics`: concurrent, slow, garbage,
//! oversized and idle clients; the HTTP health and metrics endpoint.

mod daemon_support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use daemon_support::*;

/// A spool where examples 01 to 04 have been processed (so that 05 answers
/// exactly as in the spec).
fn prepared() -> Spool {
    let s = Spool::new();
    for (name, ch) in [
        ("01-gt-certificates", "ecert"),
        ("02-ae-claim", "abi"),
        ("03-ae-refused", "abi"),
        ("04-ae-replace-delete", "abi"),
    ] {
        let p = s.dir.path().join(format!("{name}.txt"));
        std::fs::write(&p, data(&format!("{name}.txt"))).unwrap();
        let out = s.ok(&["process", p.to_str().unwrap(), "--channel", ch]);
        assert_eq!(out.as_bytes(), &data(&format!("{name}.resp"))[..], "{name}");
    }
    s
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

/// Several clients at once, LF and CRLF, a slow one among them: each gets
/// exactly its answer; the slow one holds nobody up; a second sender on a
/// connection is refused (X08); the journal has a line per TCP batch.
#[test]
fn concurrent_and_slow_clients_get_their_answers() {
    let s = prepared();
    let mut d = s.start(&["--listen", "127.0.0.1:0"], &[]);
    let addr = d.addr("TCP endpoint listening");
    let query = data("05-ec-query.txt");
    let want = to_crlf(&data("05-ec-query.resp"));
    let clients = 8;
    let rounds = 4;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let slow = {
        let (query, want, barrier) = (query.clone(), want.clone(), barrier.clone());
        std::thread::spawn(move || {
            let mut c = connect(addr);
            barrier.wait();
            let start = Instant::now();
            for chunk in query.chunks(5) {
                c.write_all(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
            let got = read_batches(&mut c, 1).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "slow client"
            );
            start.elapsed()
        })
    };
    let mut fast = Vec::new();
    for i in 0..clients {
        let (query, want, barrier) = (query.clone(), want.clone(), barrier.clone());
        fast.push(std::thread::spawn(move || {
            let mut c = connect(addr);
            barrier.wait();
            let start = Instant::now();
            let sent = if i % 2 == 0 { query.clone() } else { to_crlf(&query) };
            for _ in 0..rounds {
                c.write_all(&sent).unwrap();
                let got = read_batches(&mut c, 1).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "client {i}"
                );
            }
            start.elapsed()
        }));
    }
    let fast: Vec<Duration> = fast.into_iter().map(|t| t.join().unwrap()).collect();
    let slow = slow.join().unwrap();
    let slowest_fast = fast.iter().max().unwrap();
    assert!(
        *slowest_fast < slow,
        "fast clients ({slowest_fast:?}) waited for the slow one ({slow:?})"
    );

    // One connection, two senders: the second is refused.
    let mut c = connect(addr);
    c.write_all(&query).unwrap();
    assert_eq!(read_batches(&mut c, 1).unwrap(), want);
    let other = String::from_utf8(query.clone())
        .unwrap()
        .replace("ABCPWABC1", "DEFPWDEF1")
        .replace("Z1001ABC", "Z1001DEF");
    c.write_all(other.as_bytes()).unwrap();
    let got = String::from_utf8(read_batches(&mut c, 1).unwrap()).unwrap();
    assert!(got.contains("X08   SENDER NOT AUTHORIZED"), "{got}");
    assert!(got.ends_with("\r\n"), "CRLF line ends");
    assert!(
        got.split('\n').filter(|l| !l.is_empty()).all(|l| l.ends_with('\r')),
        "CRLF line ends"
    );
    drop(c);

    let total = clients * rounds + 1 + 2;
    wait_until(Duration::from_secs(10), "journal lines", || s.journal().len() == total);
    let journal = s.journal();
    let line = journal
        .iter()
        .find(|l| l.contains(" outcome=rejected "))
        .expect("X08 line");
    assert!(
        line.contains(" input=tcp:127.0.0.1:") && line.contains(" claim=tcp-") && line.contains(" batch=2/- "),
        "{line}"
    );
    assert!(
        line.contains(" channel=abi sender=ABC app=EC ") && line.ends_with(" response=tcp"),
        "{line}"
    );
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// Garbage, an oversized batch, a stalled client and one too many
/// connections are closed; a half-sent batch is never processed; a good
/// client is served before, during and after.
#[test]
fn misbehaving_clients_are_closed_without_harm() {
    let s = prepared();
    let mut d = s.start(
        &["--listen", "127.0.0.1:0"],
        &[
            ("ECERTD_MAX_CONNECTIONS", "4"),
            ("ECERTD_MAX_BATCH_BYTES", "2048"),
            ("ECERTD_IDLE_TIMEOUT_MS", "1500"),
        ],
    );
    let addr = d.addr("TCP endpoint listening");
    let query = data("05-ec-query.txt");
    let want = to_crlf(&data("05-ec-query.resp"));
    let good = |label: &str| {
        let mut c = connect(addr);
        c.write_all(&query).unwrap();
        let got = read_batches(&mut c, 1).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(got, want, "{label}");
    };
    good("before");
    wait_until(Duration::from_secs(10), "journal line", || s.journal().len() == 1);
    let journal_before = 1;
    let counts_before = s.counts();

    // Binary garbage.
    let mut g = connect(addr);
    let junk: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = g.write_all(&junk);
    assert!(
        closed_within(&mut g, Duration::from_secs(5)),
        "garbage client not closed"
    );
    // A line far longer than a record.
    let mut g2 = connect(addr);
    let _ = g2.write_all(&vec![b'A'; 5000]);
    assert!(
        closed_within(&mut g2, Duration::from_secs(5)),
        "long-line client not closed"
    );
    // A batch past the size limit (well-formed records, no Z).
    let mut big = connect(addr);
    let mut bytes = query[..81].to_vec();
    for _ in 0..40 {
        bytes.extend_from_slice(format!("C1I{IOR:<77}\n").as_bytes());
    }
    let _ = big.write_all(&bytes);
    assert!(
        closed_within(&mut big, Duration::from_secs(5)),
        "oversized batch not closed"
    );
    good("during");
    // A half-sent batch, then the client goes away: nothing is processed.
    let mut half = connect(addr);
    half.write_all(&query[..200]).unwrap();
    half.shutdown(Shutdown::Write).unwrap();
    assert!(closed_within(&mut half, Duration::from_secs(5)));
    // The server releases a connection's slot just after closing it.
    std::thread::sleep(Duration::from_millis(100));
    // Stalled clients hold slots until the idle timeout; one more than the limit is closed at once.
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect(addr);
            c.write_all(b"A1001AB").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect(addr);
    assert!(
        closed_within(&mut extra, Duration::from_millis(1000)),
        "connection over the limit not closed"
    );
    let start = Instant::now();
    for mut c in stalled {
        assert!(
            closed_within(&mut c, Duration::from_secs(5)),
            "stalled client not closed"
        );
    }
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(4), "idle timeout took {waited:?}");
    good("after");
    wait_until(Duration::from_secs(10), "journal lines of the good batches", || {
        s.journal().len() >= journal_before + 2
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.journal().len(),
        journal_before + 2,
        "only the good batches were journaled"
    );
    assert_eq!(s.counts(), counts_before);
    assert!(d.terminate(Duration::from_secs(20)).success());
}

fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut c = connect(addr);
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// `/healthz` and the Prometheus `/metrics` after files and a TCP batch.
#[test]
fn metrics_and_health() {
    let s = Spool::new();
    let mut d = s.start(&["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], &[]);
    let tcp = d.addr("TCP endpoint listening");
    let http = d.addr("metrics endpoint listening");
    let (status, body) = http_get(http, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "ok\n");
    s.drop_file("ecert", "01.txt", &data("01-gt-certificates.txt"));
    wait_until(Duration::from_secs(30), "01", || s.responses().len() == 1 && s.idle());
    s.drop_file("abi", "02.txt", &data("02-ae-claim.txt"));
    wait_until(Duration::from_secs(30), "02", || s.responses().len() == 2 && s.idle());
    let mut c = connect(tcp);
    c.write_all(&data("03-ae-refused.txt")).unwrap();
    assert_eq!(read_batches(&mut c, 1).unwrap(), to_crlf(&data("03-ae-refused.resp")));
    drop(c);
    let (status, m) = http_get(http, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    for want in [
        "ecertd_files_total{channel=\"ecert\",outcome=\"published\"} 1",
        "ecertd_files_total{channel=\"abi\",outcome=\"published\"} 1",
        "ecertd_batches_total{source=\"file\",app=\"GT\",outcome=\"processed\"} 1",
        "ecertd_batches_total{source=\"file\",app=\"AE\",outcome=\"processed\"} 1",
        "ecertd_batches_total{source=\"tcp\",app=\"AE\",outcome=\"processed\"} 1",
        "ecertd_transactions_total{app=\"GT\",result=\"accepted\"} 2",
        "ecertd_transactions_total{app=\"GT\",result=\"rejected\"} 1",
        "ecertd_transactions_total{app=\"AE\",result=\"rejected\"} 1",
        "ecertd_claims_applied_total 2",
        "ecertd_queue_depth{folder=\"inbound/abi\"} 0",
        "ecertd_queue_depth{folder=\"archive\"} 2",
        "ecertd_outbound_files{sender=\"ABC\"} 1",
        "ecertd_oldest_waiting_seconds 0",
        "ecertd_processing_seconds_count{source=\"file\"} 2",
        "ecertd_processing_seconds_count{source=\"tcp\"} 1",
        "ecertd_processing_seconds_bucket{source=\"file\",le=\"+Inf\"} 2",
        "ecertd_tcp_connections_total 1",
        "ecertd_up 1",
        "# TYPE ecertd_processing_seconds histogram",
    ] {
        assert!(m.lines().any(|l| l == want), "missing {want:?} in:\n{m}");
    }
    let (status, _) = http_get(http, "/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(d.terminate(Duration::from_secs(20)).success());
}
