//! Helpers shared by the integration tests: fixture paths, the demo and
//! spec senders, the library pipeline and the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ecertd::engine::{BatchResult, Engine, Session};
use ecertd::envelope::{Channel, SenderKind};
use ecertd::model::Sender;
use ecertd::store::Store;
use ecertd::types::{Country, Date};

/// The business date of the spec examples and the fixtures.
pub const BUSINESS_DATE: &str = "2026-03-15";

pub fn business_date() -> Date {
    Date::new(2026, 3, 15).unwrap()
}

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = repo(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The files of a repository folder ending in `ext`, sorted by name.
pub fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(ext)))
        .collect();
    v.sort();
    v
}

/// (id, kind, country, password) of a sender; a broker files for its own ID.
pub type SenderSpec = (&'static str, SenderKind, Option<&'static str>, &'static str);

/// The senders of the spec examples (examples/README.md).
pub const SPEC_SENDERS: &[SenderSpec] = &[
    ("AU1", SenderKind::Country, Some("AU"), "PWAU01"),
    ("NZ1", SenderKind::Country, Some("NZ"), "PWNZ01"),
    ("ABC", SenderKind::Broker, None, "PWABC1"),
];

/// The demo senders of fixtures/valid/README.md.
pub const DEMO_SENDERS: &[SenderSpec] = &[
    ("AU1", SenderKind::Country, Some("AU"), "PWAU01"),
    ("NZ1", SenderKind::Country, Some("NZ"), "PWNZ01"),
    ("MX1", SenderKind::Country, Some("MX"), "PWMX01"),
    ("ABC", SenderKind::Broker, None, "PWABC1"),
    ("DEF", SenderKind::Broker, None, "PWDEF1"),
];

/// A fresh in-memory store with `senders` registered.
pub fn store_with(senders: &[SenderSpec]) -> Store {
    register(Store::open_in_memory().unwrap(), senders)
}

/// Registers `senders` in `store`.
pub fn register(mut store: Store, senders: &[SenderSpec]) -> Store {
    for &(id, kind, country, password) in senders {
        let sender = Sender {
            id: id.to_string(),
            kind,
            country: country.map(|c| Country::parse(c.as_bytes()).unwrap()),
            filers: Vec::new(),
        };
        store.add_sender(&sender, password).unwrap();
    }
    store
}

/// Runs one input through the library pipeline, as `ecertd process` does.
pub fn process_results(store: &mut Store, channel: Channel, input: &[u8]) -> Vec<BatchResult> {
    let mut engine = Engine::new(store, business_date());
    let mut session = Session::new(channel);
    let mut results = Vec::new();
    engine
        .process_stream(&mut session, input, 64, |r| {
            results.push(r.clone());
            Ok(())
        })
        .unwrap();
    results
}

/// The response bytes of one input, through the library.
pub fn process(store: &mut Store, channel: Channel, input: &[u8]) -> Vec<u8> {
    process_results(store, channel, input)
        .into_iter()
        .flat_map(|r| r.response)
        .collect()
}

/// The channel an example or fixture arrives on.
pub fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Abi => "abi",
        Channel::Ecert => "ecert",
    }
}

/// Shows two byte strings line by line when they differ.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let g = String::from_utf8_lossy(got);
    let w = String::from_utf8_lossy(want);
    let (gl, wl): (Vec<&str>, Vec<&str>) = (g.split('\n').collect(), w.split('\n').collect());
    for i in 0..gl.len().max(wl.len()) {
        let (a, b) = (gl.get(i).copied(), wl.get(i).copied());
        if a != b {
            panic!(
                "{what}: first difference at line {}:\n  want {b:?}\n  got  {a:?}",
                i + 1
            );
        }
    }
    panic!("{what}: responses differ ({} vs {} bytes)", got.len(), want.len());
}

/// An `ecertd` invocation with its own spool root, immune to the caller's
/// ECERTD_* environment.
pub struct Bin {
    pub dir: tempfile::TempDir,
}

impl Bin {
    /// A temporary directory, nothing initialised.
    pub fn bare() -> Bin {
        Bin {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `init` and the given senders.
    pub fn with_senders(senders: &[SenderSpec]) -> Bin {
        let bin = Bin::bare();
        bin.ok(&["init"]);
        for &(id, kind, country, password) in senders {
            let mut args = vec!["sender", "add", "--id", id, "--password", password, "--kind"];
            match kind {
                SenderKind::Country => args.extend(["country", "--country", country.unwrap()]),
                SenderKind::Broker => args.extend(["broker", "--filer", id]),
            }
            bin.ok(&args);
        }
        bin
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ecertd"));
        for var in ["ECERTD_ROOT", "ECERTD_DB", "ECERTD_CONFIG", "ECERTD_BUSINESS_DATE"] {
            c.env_remove(var);
        }
        c.arg("--root")
            .arg(self.dir.path().join("spool"))
            .arg("--business-date")
            .arg(BUSINESS_DATE);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and insists on exit 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ecertd {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `ecertd process FILE --channel CH`, its standard output.
    pub fn process(&self, file: &Path, channel: Channel) -> Vec<u8> {
        self.ok(&["process", file.to_str().unwrap(), "--channel", channel_name(channel)])
            .stdout
    }

    /// Writes a file in the temporary directory.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}
