//! `ecertd serve` with the drop folders: pick-up, responses, hostile
//! entries, configuration, status, restart repair. Runs the built binary.

mod daemon_support;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::time::Duration;

use daemon_support::*;

const EXAMPLES: &[(&str, &str)] = &[
    ("01-gt-certificates", "ecert"),
    ("02-ae-claim", "abi"),
    ("03-ae-refused", "abi"),
    ("04-ae-replace-delete", "abi"),
    ("05-ec-query", "abi"),
    ("06-gq-query", "ecert"),
    ("07-rejected-batch", "ecert"),
];

fn wait_response(s: &Spool, name: &str) -> Vec<u8> {
    wait_until(Duration::from_secs(30), &format!("response to {name}"), || {
        !s.responses_for(name).is_empty() && s.idle()
    });
    s.response(name)
}

/// The worked examples dropped one after the other in both channels give
/// the exact bytes of the spec; the journal has one line per batch.
#[test]
fn examples_through_both_channels() {
    let s = Spool::new();
    let mut d = s.start(&[], &[]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    for (name, channel) in EXAMPLES {
        let file = format!("{name}.txt");
        s.drop_file(channel, &file, &data(&file));
        let got = wait_response(&s, &file);
        if *name == "07-rejected-batch" {
            // Every problem is reported (the example shows only the first):
            // same A, B, Z records and the rejection shape.
            let want = data(&format!("{name}.resp"));
            let (g, w): (Vec<&[u8]>, Vec<&[u8]>) = (
                got.split(|&b| b == b'\n').collect(),
                want.split(|&b| b == b'\n').collect(),
            );
            assert_eq!(g[..2], w[..2], "07 A/B records");
            assert_eq!(g[g.len() - 2], w[w.len() - 2], "07 Z record");
            assert!(g.iter().any(|l| l.starts_with(b"X1 FX02")), "07: X02 reported");
            assert!(g.iter().any(|l| l.starts_with(b"X1 FX01")), "07: X01 reported");
            assert!(g[g.len() - 4].starts_with(b"X1RF999"), "07: final X1");
        } else {
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&data(&format!("{name}.resp"))),
                "response to {file}"
            );
        }
    }
    // Where things went.
    assert_eq!(s.entries("outbound"), vec!["ABC", "AU1"]);
    assert_eq!(s.entries("outbound/AU1").len(), 3);
    assert_eq!(s.entries("outbound/ABC").len(), 4);
    let archived = s.entries("archive");
    assert_eq!(archived.len(), 7);
    for (name, channel) in EXAMPLES {
        assert!(
            archived.iter().any(|a| a.ends_with(&format!("-{channel}-{name}.txt"))
                && a.len() == 20 + 1 + channel.len() + 1 + name.len() + 4),
            "{name} archived: {archived:?}"
        );
    }
    assert!(s.entries("rejected").is_empty());
    assert!(s.temp_files().is_empty());
    // The journal: one line per batch, fields in order, the response named.
    let journal = s.journal();
    assert_eq!(journal.len(), 7, "{journal:#?}");
    let first = &journal[0];
    let fields: Vec<&str> = first.split(' ').collect();
    assert!(fields[0].ends_with('Z') && fields[0].len() == 24, "{first}");
    let keys: Vec<&str> = fields[1..].iter().map(|f| f.split('=').next().unwrap()).collect();
    assert_eq!(
        keys,
        ["input", "claim", "batch", "channel", "sender", "app", "outcome", "accepted", "rejected", "response"]
    );
    assert!(first.contains(" input=01-gt-certificates.txt "), "{first}");
    assert!(
        first.contains(" sender=AU1 app=GT outcome=processed accepted=2 rejected=1 "),
        "{first}"
    );
    assert!(
        first.contains(" response=outbound/AU1/") && first.ends_with("-01-gt-certificates.txt.resp"),
        "{first}"
    );
    assert!(journal[6].contains(" outcome=rejected "), "{}", journal[6]);
    assert!(s.ledger_mismatches().is_empty());
    let st = d.terminate(Duration::from_secs(20));
    assert!(st.success(), "exit {st}");
}

/// Unauthenticated input: the response goes to rejected/ beside the input
/// and its .why note; no outbound folder gets anything. An application not
/// allowed on the channel is X07.
#[test]
fn unauthenticated_and_wrong_channel() {
    let s = Spool::new();
    let mut d = s.start(&[], &[]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    let bad = String::from_utf8(data("01-gt-certificates.txt"))
        .unwrap()
        .replace("AU1PWAU01", "AU1PWXXXX");
    s.drop_file("ecert", "badpw.txt", bad.as_bytes());
    let got = wait_response(&s, "badpw.txt");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("X08   SENDER NOT AUTHORIZED"), "{text}");
    assert!(s.entries("outbound").is_empty(), "{:?}", s.entries("outbound"));
    // The spec's names: rejected/NAME.resp beside the input rejected/NAME.
    let mut rejected = s.entries("rejected");
    rejected.sort();
    assert_eq!(rejected, vec!["badpw.txt", "badpw.txt.resp", "badpw.txt.why"]);
    assert_eq!(fs::read(s.root.join("rejected/badpw.txt")).unwrap(), bad.as_bytes());
    assert_eq!(fs::read(s.root.join("rejected/badpw.txt.resp")).unwrap(), got);
    assert!(s.entries("archive").is_empty());
    // A second input of that name does not overwrite the first: SEQ-NAME.
    s.drop_file("ecert", "badpw.txt", bad.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.entries("rejected").len() < 6 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rejected = s.entries("rejected");
    assert_eq!(rejected.len(), 6, "{rejected:?}");
    let second = rejected
        .iter()
        .find(|n| n.ends_with("-badpw.txt"))
        .expect("second input in rejected/ under SEQ-NAME");
    assert_eq!(
        fs::read(s.root.join("rejected").join(format!("{second}.resp"))).unwrap(),
        got
    );
    assert!(rejected.contains(&format!("{second}.why")));
    assert_eq!(fs::read(s.root.join("rejected/badpw.txt.resp")).unwrap(), got);
    assert!(
        s.journal()[0].contains(" sender=- app=GT outcome=rejected "),
        "{:?}",
        s.journal()
    );

    // An entry summary dropped in the country channel.
    s.drop_file("ecert", "ae-on-ecert.txt", &data("02-ae-claim.txt"));
    let got = wait_response(&s, "ae-on-ecert.txt");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("X07   APPLICATION NOT ALLOWED FOR SENDER"), "{text}");
    assert_eq!(s.entries("outbound/ABC").len(), 1);
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// A file written under a dot-name is left alone until renamed, then
/// picked up exactly once.
#[test]
fn dot_name_then_rename_is_picked_up_once() {
    let s = Spool::new();
    let mut d = s.start(&[], &[]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    let bytes = data("01-gt-certificates.txt");
    let tmp = s.inbound("ecert").join(".upload.tmp");
    fs::write(&tmp, &bytes[..300]).unwrap();
    std::thread::sleep(Duration::from_millis(400)); // several poll intervals
    assert!(tmp.exists(), "dot-name file must not be touched");
    assert!(s.entries("work").is_empty() && s.responses().is_empty());
    let mut all = bytes[..300].to_vec();
    all.extend_from_slice(&bytes[300..]);
    fs::write(&tmp, &all).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(s.responses().is_empty());
    fs::rename(&tmp, s.inbound("ecert").join("upload.txt")).unwrap();
    let got = wait_response(&s, "upload.txt");
    assert_eq!(got, data("01-gt-certificates.resp"));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(s.responses().len(), 1);
    assert_eq!(s.entries("archive").len(), 1);
    assert_eq!(s.journal().len(), 1);
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// Symlinks, FIFOs, directories, hard-linked files, bad names and oversized
/// files end in rejected/ with a note, are never read or followed, and do
/// not hold up the files after them.
#[test]
fn hostile_entries_are_refused_without_being_read() {
    let s = Spool::new();
    // The size limit from the spool's configuration file.
    fs::write(s.root.join("ecertd.toml"), "max_file_bytes = 4000\n").unwrap();
    let outside = s.dir.path().join("secret.txt");
    fs::write(&outside, b"top secret\n").unwrap();
    let abi = s.inbound("abi");
    let ecert = s.inbound("ecert");
    symlink(&outside, abi.join("link.txt")).unwrap();
    symlink(s.dir.path(), abi.join("dirlink")).unwrap();
    symlink("/nonexistent/target", ecert.join("dangling")).unwrap();
    let fifo = std::ffi::CString::new(abi.join("fifo.txt").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    fs::create_dir(abi.join("adir")).unwrap();
    fs::write(abi.join("adir").join("inner.txt"), data("02-ae-claim.txt")).unwrap();
    fs::write(s.dir.path().join("linked"), data("02-ae-claim.txt")).unwrap();
    fs::hard_link(s.dir.path().join("linked"), abi.join("hardlink.txt")).unwrap();
    fs::write(abi.join("bad name.txt"), data("02-ae-claim.txt")).unwrap();
    fs::write(abi.join("x".repeat(129)), data("02-ae-claim.txt")).unwrap();
    fs::write(abi.join(std::ffi::OsStr::from_bytes(b"caf\xe9\n.txt")), b"A").unwrap();
    let mut big = Vec::new();
    while big.len() <= 4000 {
        big.extend_from_slice(&data("01-gt-certificates.txt"));
    }
    fs::write(ecert.join("big.txt"), &big).unwrap();
    // Dot-names are never looked at, whatever they are.
    symlink(&outside, abi.join(".hidden-link")).unwrap();
    let mut d = s.start(&[], &[]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    // A good file after all that is processed.
    s.drop_file("ecert", "good.txt", &data("01-gt-certificates.txt"));
    assert_eq!(wait_response(&s, "good.txt"), data("01-gt-certificates.resp"));
    wait_until(Duration::from_secs(20), "hostile entries moved", || {
        s.entries("inbound/abi").is_empty() && s.entries("inbound/ecert").is_empty()
    });
    let rejected = s.entries("rejected");
    let notes: Vec<&String> = rejected.iter().filter(|n| n.ends_with(".why")).collect();
    assert_eq!(notes.len(), 10, "{rejected:#?}");
    assert_eq!(rejected.len(), 20, "{rejected:#?}");
    let read_note = |suffix: &str| {
        let n = notes
            .iter()
            .find(|n| n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no note *{suffix}"));
        fs::read_to_string(s.root.join("rejected").join(n)).unwrap()
    };
    assert!(read_note("-link.txt.why").contains("symbolic link"));
    assert!(read_note("-dangling.why").contains("symbolic link"));
    assert!(read_note("-dirlink.why").contains("symbolic link"));
    assert!(read_note("-fifo.txt.why").contains("FIFO"));
    assert!(read_note("-adir.why").contains("directory"));
    assert!(read_note("-hardlink.txt.why").contains("2 hard links"));
    assert!(read_note("-bad_name.txt.why").contains("name not accepted"));
    let weird = read_note("-caf__.txt.why");
    assert!(weird.contains("caf\\xE9\\x0A.txt"), "{weird}");
    assert!(read_note("-big.txt.why").contains("over the limit of 4000 bytes"));
    // Links were moved, not followed: the target is untouched and the moved entry is still a link.
    assert_eq!(fs::read(&outside).unwrap(), b"top secret\n");
    let moved = rejected.iter().find(|n| n.ends_with("-link.txt")).unwrap();
    assert!(fs::symlink_metadata(s.root.join("rejected").join(moved))
        .unwrap()
        .file_type()
        .is_symlink());
    let moved = rejected.iter().find(|n| n.ends_with("-hardlink.txt")).unwrap();
    assert_eq!(fs::metadata(s.root.join("rejected").join(moved)).unwrap().nlink(), 2);
    // Nothing hostile was processed; the dot-name is still there.
    assert_eq!(s.responses().len(), 1);
    assert_eq!(s.journal().len(), 1);
    assert!(abi.join(".hidden-link").exists());
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// Files present before the start, in both channels, are processed in
/// order of arrival; a restart publishes a stored response again without
/// applying anything twice.
#[test]
fn restart_republishes_without_reapplying() {
    let s = Spool::new();
    for (name, channel) in &EXAMPLES[..5] {
        let file = format!("{name}.txt");
        s.drop_file(channel, &file, &data(&file));
        std::thread::sleep(Duration::from_millis(15)); // distinct arrival times
    }
    let mut d = s.start(&[], &[]);
    wait_until(Duration::from_secs(30), "5 responses", || {
        s.responses().len() == 5 && s.idle()
    });
    for (name, _) in &EXAMPLES[..5] {
        assert_eq!(
            s.response(&format!("{name}.txt")),
            data(&format!("{name}.resp")),
            "{name}"
        );
    }
    assert!(d.terminate(Duration::from_secs(20)).success());
    let counts = s.counts();
    // Pretend the daemon stopped after the commit of 02 but before its publication.
    let archived = s.entries("archive");
    let claim = archived
        .iter()
        .find(|a| a.ends_with("-02-ae-claim.txt"))
        .unwrap()
        .clone();
    fs::rename(s.root.join("archive").join(&claim), s.root.join("work").join(&claim)).unwrap();
    let resp = s.responses_for("02-ae-claim.txt").pop().unwrap().0;
    fs::remove_file(s.root.join(&resp.0).join(&resp.1)).unwrap();
    s.store()
        .execute_raw(&format!("UPDATE inputs SET published = 0 WHERE claim = '{claim}'"))
        .unwrap();
    let journal_before = s.journal().len();
    // A half-written response left by a crash.
    let half = s.root.join("outbound/ABC/.ecertd-tmp-20260315000000000000-x.txt.resp");
    fs::write(&half, b"A1001ABC").unwrap();
    let mut d = s.start(&[], &[]);
    wait_until(Duration::from_secs(30), "republished", || {
        s.responses().len() == 5 && s.idle()
    });
    assert!(!half.exists(), "temporary file removed at start-up");
    assert_eq!(s.response("02-ae-claim.txt"), data("02-ae-claim.resp"));
    assert_eq!(s.counts(), counts, "nothing applied again");
    assert!(s.ledger_mismatches().is_empty());
    // Its journal line was already written: not repeated.
    assert_eq!(s.journal().len(), journal_before);
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// Configuration: file, then environment, then flags; errors name the file
/// (or variable) and the key and stop before anything starts.
#[test]
fn configuration_layers_and_errors() {
    let s = Spool::new();
    let cfg = s.dir.path().join("conf.toml");
    fs::write(
        &cfg,
        format!("root = {:?}\ndb = \"from-file.db\"\n", s.root.display().to_string()),
    )
    .unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = std::process::Command::new(EXE);
        for (k, _) in std::env::vars_os() {
            if k.as_bytes().starts_with(b"ECERTD_") {
                c.env_remove(k);
            }
        }
        c.arg("--config")
            .arg(&cfg)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    // The file's db (relative to the file's folder).
    assert!(run(&[], &["init"]).status.success());
    assert!(s.dir.path().join("from-file.db").exists());
    // Environment over the file, flag over the environment.
    let env_db = s.dir.path().join("from-env.db");
    assert!(run(&[("ECERTD_DB", env_db.to_str().unwrap())], &["init"])
        .status
        .success());
    assert!(env_db.exists());
    let flag_db = s.dir.path().join("from-flag.db");
    assert!(run(
        &[("ECERTD_DB", env_db.to_str().unwrap())],
        &["--db", flag_db.to_str().unwrap(), "init"]
    )
    .status
    .success());
    assert!(flag_db.exists());
    let out = run(&[], &["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["db"].as_str().unwrap().ends_with("from-file.db"), "{v}");

    // A bad value in the file: named with its key; serve does not start.
    fs::write(&cfg, "poll_interval_ms = \"soon\"\n").unwrap();
    let out = run(&[], &["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(cfg.to_str().unwrap()) && err.contains("poll_interval_ms"),
        "{err}"
    );
    // An unknown key.
    fs::write(&cfg, "pole_interval_ms = 5\n").unwrap();
    let out = run(&[], &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pole_interval_ms"), "{err}");
    // Not TOML at all.
    fs::write(&cfg, "root = [\n").unwrap();
    let out = run(&[], &["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(cfg.to_str().unwrap()), "{err}");
    // A bad environment variable, and a bad flag.
    fs::write(&cfg, "").unwrap();
    let out = run(
        &[("ECERTD_MAX_FILE_BYTES", "lots")],
        &["--root", s.root.to_str().unwrap(), "serve"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ECERTD_MAX_FILE_BYTES") && err.contains("max_file_bytes"),
        "{err}"
    );
    let out = run(
        &[],
        &["--root", s.root.to_str().unwrap(), "serve", "--listen", "nowhere"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--listen") && err.contains("listen"),
        "{err}"
    );
    // <root>/ecertd.toml may not move the root.
    fs::write(s.root.join("ecertd.toml"), "root = \"/tmp\"\n").unwrap();
    let out = s.cmd().arg("status").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ecertd.toml") && err.contains("`root`"),
        "{err}"
    );
    fs::remove_file(s.root.join("ecertd.toml")).unwrap();
    // Nothing was started: no serve ever ran.
    assert!(s.entries("archive").is_empty());
}

/// `ecertd status`: queues, oldest waiting file, counts, last activity.
#[test]
fn status_reports_queues_and_activity() {
    let s = Spool::new();
    s.drop_file("ecert", "one.txt", &data("01-gt-certificates.txt"));
    std::thread::sleep(Duration::from_millis(30)); // file times are coarse
    s.drop_file("abi", "two.txt", &data("02-ae-claim.txt"));
    std::thread::sleep(Duration::from_millis(1100));
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["status", "--json"])).unwrap();
    assert_eq!(v["daemon_running"], false);
    assert_eq!(v["queues"]["inbound/abi"], 1);
    assert_eq!(v["queues"]["inbound/ecert"], 1);
    assert_eq!(v["queues"]["work"], 0);
    assert_eq!(v["oldest_waiting"]["file"], "inbound/ecert/one.txt");
    assert!(v["oldest_waiting"]["age_seconds"].as_u64().unwrap() >= 1);
    assert_eq!(v["counts"]["certificates"], 0);
    assert!(v["last_activity"].is_null());
    let mut d = s.start(&[], &[]);
    wait_until(Duration::from_secs(30), "2 responses", || {
        s.responses().len() == 2 && s.idle()
    });
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["status", "--json"])).unwrap();
    assert_eq!(v["daemon_running"], true);
    assert_eq!(v["queues"]["archive"], 2);
    assert_eq!(v["queues"]["inbound/abi"], 0);
    assert_eq!(v["outbound"]["AU1"], 1);
    assert_eq!(v["outbound"]["ABC"], 1);
    assert!(v["oldest_waiting"].is_null());
    assert_eq!(v["counts"]["certificates"], 2);
    assert_eq!(v["counts"]["inputs_processed"], 2);
    assert!(v["last_activity"].as_str().unwrap().ends_with('Z'));
    let text = s.ok(&["status"]);
    assert!(
        text.contains("daemon   running") && text.contains("archive") && text.contains("last activity: 20"),
        "{text}"
    );
    assert!(d.terminate(Duration::from_secs(20)).success());
    // A second daemon on the same spool is refused while one runs.
    let mut d1 = s.start(&[], &[]);
    d1.wait_log("ecertd serving", Duration::from_secs(20));
    let out = s.cmd().arg("serve").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serving"));
    assert!(d1.terminate(Duration::from_secs(20)).success());
}

/// A failure to publish (here: outbound/ABC is a file, not a folder) is not
/// acknowledged: the input stays in work/, is retried with a growing delay,
/// and is published once the cause is gone, its batch applied only once.
#[test]
fn publish_failure_is_retried_without_reapplying() {
    let s = Spool::new();
    fs::create_dir_all(s.root.join("outbound")).unwrap();
    fs::write(s.root.join("outbound/ABC"), b"in the way\n").unwrap();
    let mut d = s.start(&[], &[("ECERTD_RETRY_MAX_MS", "300")]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    s.drop_file("ecert", "01.txt", &data("01-gt-certificates.txt"));
    wait_until(Duration::from_secs(20), "01", || s.responses().len() == 1 && s.idle());
    s.drop_file("abi", "02.txt", &data("02-ae-claim.txt"));
    d.wait_log(
        "processing failed; the file stays in work/ and is retried",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(1000)); // several retries
    assert_eq!(s.entries("work").len(), 1, "kept in work/");
    assert!(s.responses_for("02.txt").is_empty());
    let counts = s.counts();
    let failures = d
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("processing failed"))
        .count();
    assert!(failures >= 2, "retried: {failures}");
    fs::remove_file(s.root.join("outbound/ABC")).unwrap();
    wait_until(Duration::from_secs(20), "02 published", || {
        s.responses().len() == 2 && s.idle()
    });
    assert_eq!(s.response("02.txt"), data("02-ae-claim.resp"));
    assert_eq!(s.counts(), counts, "applied once");
    assert_eq!(s.journal().len(), 2);
    assert!(s.ledger_mismatches().is_empty());
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// A drop folder replaced by a link to another folder is not scanned: files
/// elsewhere are never taken through it.
#[test]
fn drop_folder_replaced_by_a_link_is_not_scanned() {
    let s = Spool::new();
    let elsewhere = s.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("x.txt"), data("02-ae-claim.txt")).unwrap();
    fs::remove_dir(s.inbound("abi")).unwrap();
    symlink(&elsewhere, s.inbound("abi")).unwrap();
    let mut d = s.start(&[], &[]);
    d.wait_log(
        "drop folder is missing or not a real folder (a link?); not scanned",
        Duration::from_secs(20),
    );
    s.drop_file("ecert", "good.txt", &data("01-gt-certificates.txt"));
    wait_until(Duration::from_secs(20), "good.txt", || {
        s.responses().len() == 1 && s.entries("work").is_empty() && s.entries("inbound/ecert").is_empty()
    });
    assert_eq!(s.response("good.txt"), data("01-gt-certificates.resp"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(elsewhere.join("x.txt").exists());
    assert_eq!(s.entries("archive").len(), 1);
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// While the daemon runs, its checkpoint thread copies committed batches
/// from the WAL into the database file itself (the writer's commits leave
/// that to it).
#[test]
fn running_daemon_checkpoints_its_wal() {
    let s = Spool::new();
    let mut d = s.start(&[], &[]);
    d.wait_log("ecertd serving", Duration::from_secs(20));
    s.drop_file("ecert", "01-gt-certificates.txt", &data("01-gt-certificates.txt"));
    wait_response(&s, "01-gt-certificates.txt");
    // The database file alone, as a reader that ignores the WAL sees it.
    let uri = format!("file:{}?immutable=1", s.root.join("ecertd.db").display());
    let in_file = || -> i64 {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        rusqlite::Connection::open_with_flags(&uri, flags)
            .and_then(|c| c.query_row("SELECT count(*) FROM certificates", [], |r| r.get(0)))
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(10), "certificates in the database file", || {
        in_file() > 0
    });
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// A large file reads its certificates ahead (setting `lookahead`) and is
/// answered with the bytes `ecertd process` gives the same input. Committed
/// in several groups, each group's certificates are read in one sweep: the
/// first before its transaction, every later one while the group before it
/// commits.
#[test]
fn large_files_read_certificates_ahead() {
    let (spools, ae, want) = large_ae_workload(2, 1_000, 10);
    // 100 batches in groups of 30: four groups, the first one large enough
    // for the look-ahead.
    let records = ae.iter().filter(|&&b| b == b'\n').count();
    assert!(records * 30 / 100 >= 2_000, "{records} records");
    let s = &spools[1];
    let mut d = s.start(
        &[],
        &[("ECERTD_LOG_LEVEL", "ecertd=debug"), ("ECERTD_GROUP_BATCHES", "30")],
    );
    d.wait_log("ecertd serving", Duration::from_secs(20));
    s.drop_file("abi", "ae-large.txt", &ae);
    let got = wait_response(s, "ae-large.txt");
    let v = d.wait_log("certificates read ahead", Duration::from_secs(10));
    assert!(v["fields"]["batches"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(got == want.as_bytes(), "daemon and process answer differently");
    let groups: Vec<(u64, u64)> = d
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "certificates read ahead")
        .map(|v| {
            (
                v["fields"]["batches"].as_u64().unwrap(),
                v["fields"]["swept"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [(30, 1), (30, 1), (30, 1), (10, 1)],
        "per group: batches read ahead, swept"
    );
    assert!(s.ledger_mismatches().is_empty());
    assert!(d.terminate(Duration::from_secs(20)).success());
}
