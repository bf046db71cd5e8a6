//! The command line (spec README, "Command line").

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Flags, Settings};
use crate::diagnose;
use crate::engine::{Engine, Session};
use crate::envelope::{Channel, SenderKind};
use crate::model::Sender;
use crate::store::Store;
use crate::types::{CertificateNumber, Country, Date, FilerCode, IorNumber};

#[derive(Parser, Debug)]
#[command(
    name = "ecertd",
    version,
    about = "eCERT 2.0 quota certificates and ABI entry summaries"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Spool root directory [default: ./spool]
    #[arg(long, global = true, env = "ECERTD_ROOT")]
    pub root: Option<PathBuf>,
    /// SQLite store [default: <root>/ecertd.db]
    #[arg(long, global = true, env = "ECERTD_DB")]
    pub db: Option<PathBuf>,
    /// Configuration file [default: <root>/ecertd.toml when present]
    #[arg(long, global = true, env = "ECERTD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Business date YYYY-MM-DD for validity checks and usage records [default: today, UTC]
    #[arg(long, global = true, env = "ECERTD_BUSINESS_DATE")]
    pub business_date: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the spool tree and the store (safe to run again)
    Init,
    /// Run the daemon in the foreground until SIGINT/SIGTERM, then drain and exit
    Serve {
        /// Also accept batches over TCP on this address, e.g. 127.0.0.1:7001 [config: listen, env: ECERTD_LISTEN]
        #[arg(long)]
        listen: Option<String>,
        /// Serve /healthz and /metrics over HTTP on this address [config: metrics, env: ECERTD_METRICS]
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Queue depths, oldest waiting file, store counts, last activity
    Status {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Process one file now and print its response batches
    Process {
        file: PathBuf,
        #[arg(long, value_enum)]
        channel: ChannelArg,
    },
    /// Check envelope and field syntax only, without the store
    Check { file: PathBuf },
    /// Print every record field by field
    Explain { file: PathBuf },
    /// Manage senders
    #[command(subcommand)]
    Sender(SenderCommand),
    /// Let a filer query an IOR it has not filed for
    Grant {
        #[arg(long)]
        filer: String,
        #[arg(long)]
        ior: String,
    },
    /// Operator view of certificates and usage
    #[command(subcommand)]
    Query(QueryCommand),
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ChannelArg {
    Abi,
    Ecert,
}

impl From<ChannelArg> for Channel {
    fn from(c: ChannelArg) -> Channel {
        match c {
            ChannelArg::Abi => Channel::Abi,
            ChannelArg::Ecert => Channel::Ecert,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum KindArg {
    Broker,
    Country,
}

#[derive(Subcommand, Debug)]
pub enum SenderCommand {
    /// Register a sender
    Add {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        #[arg(long)]
        password: String,
        #[arg(long)]
        country: Option<String>,
        /// Filer codes a broker files for (repeatable; default: its own ID)
        #[arg(long = "filer")]
        filers: Vec<String>,
    },
    /// List senders (never their passwords)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a sender
    Remove {
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueryCommand {
    /// One certificate with its usage events
    Certificate {
        country: String,
        number: String,
        #[arg(long)]
        json: bool,
    },
    /// Every certificate naming an importer of record
    Ior {
        ior: String,
        #[arg(long)]
        json: bool,
    },
}

/// Paths and dates every command agrees on.
pub struct Paths {
    pub root: PathBuf,
    pub db: PathBuf,
    pub business_date: Date,
}

impl Paths {
    /// The paths and date after the configuration layers (file, environment, flags).
    pub fn resolve(g: &Global) -> Result<Paths> {
        Ok(Paths::from_settings(&Settings::load(&flags(g, None))?))
    }

    pub fn from_settings(s: &Settings) -> Paths {
        Paths {
            root: s.root.clone(),
            db: s.db.clone(),
            business_date: s.business_date.unwrap_or_else(Date::today_utc),
        }
    }

    pub fn open_store(&self) -> Result<Store> {
        if let Some(parent) = self.db.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                bail!(
                    "store directory {} does not exist (run `ecertd init` first)",
                    parent.display()
                );
            }
        }
        Store::open(&self.db).with_context(|| format!("opening store {}", self.db.display()))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ecertd: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Spool directories created by `init`.
pub const SPOOL_DIRS: &[&str] = crate::spool::SPOOL_DIRS;

pub fn init(ctx: &Paths) -> Result<()> {
    crate::spool::Layout::new(&ctx.root).create()?;
    ctx.open_store()?;
    Ok(())
}

/// The configuration flags of the command line.
fn flags(g: &Global, serve: Option<(&Option<String>, &Option<String>)>) -> Flags {
    Flags {
        root: g.root.clone(),
        db: g.db.clone(),
        config: g.config.clone(),
        business_date: g.business_date.clone(),
        listen: serve.and_then(|(l, _)| l.clone()),
        metrics: serve.and_then(|(_, m)| m.clone()),
    }
}

fn open_input(path: &Path) -> Result<BufReader<File>> {
    // A file name may hold control bytes (a hostile drop-folder entry): shown escaped.
    let f = File::open(path).with_context(|| format!("cannot read {}", shown_path(path)))?;
    // 128 KiB reads: larger ones cost the kernel more per byte copied from
    // the page cache on this kind of machine (measured with `ecertd check`).
    Ok(BufReader::with_capacity(128 << 10, f))
}

/// A path as shown on a terminal: bytes outside printable ASCII escaped.
fn shown_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    diagnose::escape(path.as_os_str().as_bytes())
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let serve_flags = match &cli.command {
        Command::Serve { listen, metrics } => Some((listen, metrics)),
        _ => None,
    };
    let settings = Settings::load(&flags(&cli.global, serve_flags))?;
    let ctx = Paths::from_settings(&settings);
    match cli.command {
        Command::Serve { .. } => crate::daemon::serve(settings),
        Command::Status { json } => crate::daemon::status(&settings, json),
        Command::Init => {
            init(&ctx)?;
            println!("initialised {}", ctx.root.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { file } => {
            // Unreadable: the error reaches `main`, which exits 2.
            let input = open_input(&file)?;
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let name = shown_path(&file);
            let n = diagnose::check(input, |d| writeln!(out, "{name}:{d}"))
                .with_context(|| format!("reading {}", shown_path(&file)))?;
            out.flush()?;
            Ok(if n == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Explain { file } => {
            // Unreadable: the error reaches `main`, which exits 2.
            let input = open_input(&file)?;
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let n = diagnose::explain(input, &mut out)?;
            out.flush()?;
            Ok(if n == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Process { file, channel } => {
            let input = open_input(&file)?;
            let mut store = ctx.open_store()?;
            // Warnings (a failed look-ahead read) go to stderr.
            crate::daemon::init_logging(&settings);
            let mut engine = Engine::new(&mut store, ctx.business_date);
            if settings.lookahead {
                engine = engine.with_lookahead();
            }
            let mut session = Session::new(channel.into());
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            engine.process_stream(&mut session, input, 256, |r| out.write_all(&r.response))?;
            tracing::debug!(
                batches = engine.batches_read_ahead(),
                groups_swept = engine.groups_swept(),
                chunks_read_by_writer = engine.sweep_chunks_read_by_writer(),
                "certificates read ahead"
            );
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sender(cmd) => sender(&ctx, cmd),
        Command::Grant { filer, ior } => {
            let filer =
                FilerCode::parse(filer.as_bytes()).ok_or_else(|| anyhow!("--filer {filer:?}: 3 of A-Z, 0-9"))?;
            let ior = parse_ior(&ior)?;
            ctx.open_store()?.grant(filer, ior)?;
            println!("granted {filer} access to IOR {}", ior.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(q) => crate::cli::query(&ctx, q),
    }
}

/// An IOR number as typed: its 12-byte form, or the SSN form without its trailing space.
pub fn parse_ior(s: &str) -> Result<IorNumber> {
    IorNumber::from_stored(s)
        .ok_or_else(|| anyhow!("{s:?} is not an IOR number (NN-NNNNNNNSS, NNN-NN-NNNN or YYDDPP-NNNNN)"))
}

fn sender(ctx: &Paths, cmd: SenderCommand) -> Result<ExitCode> {
    let mut store = ctx.open_store()?;
    match cmd {
        SenderCommand::Add {
            id,
            kind,
            password,
            country,
            filers,
        } => {
            let kind = match kind {
                KindArg::Broker => SenderKind::Broker,
                KindArg::Country => SenderKind::Country,
            };
            let country = match country {
                Some(c) => {
                    Some(Country::parse(c.as_bytes()).ok_or_else(|| anyhow!("--country {c:?}: two letters A-Z"))?)
                }
                None => None,
            };
            let filers = filers
                .iter()
                .map(|f| FilerCode::parse(f.as_bytes()).ok_or_else(|| anyhow!("--filer {f:?}: 3 of A-Z, 0-9")))
                .collect::<Result<Vec<_>>>()?;
            if kind == SenderKind::Country && !filers.is_empty() {
                bail!("--filer is for broker senders");
            }
            store.add_sender(
                &Sender {
                    id: id.clone(),
                    kind,
                    country,
                    filers,
                },
                &password,
            )?;
            println!("sender {id} added");
        }
        SenderCommand::List { json } => {
            let senders = store.list_senders()?;
            if json {
                let v: Vec<serde_json::Value> = senders
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "id": s.id,
                            "kind": s.kind.name(),
                            "country": s.country.map(|c| c.as_str().to_string()),
                            "filers": s.filers.iter().map(|f| f.as_str().to_string()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<4} {:<8} {:<8} filers", "id", "kind", "country");
                for s in senders {
                    let filers: Vec<&str> = s.filers.iter().map(|f| f.as_str()).collect();
                    println!(
                        "{:<4} {:<8} {:<8} {}",
                        s.id,
                        s.kind.name(),
                        s.country.map(|c| c.as_str().to_string()).unwrap_or_else(|| "-".into()),
                        filers.join(",")
                    );
                }
            }
        }
        SenderCommand::Remove { id } => {
            if store.remove_sender(&id)? {
                println!("sender {id} removed");
            } else {
                eprintln!("ecertd: no sender {id}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn certificate_json(
    c: &crate::model::Certificate,
    events: &[crate::model::UsageEvent],
    date: Date,
) -> serde_json::Value {
    let t = &c.terms;
    serde_json::json!({
        "country": t.country.as_str(),
        "number": t.number.as_str(),
        "program": (t.program.code() as char).to_string(),
        "hts": t.hts.as_str(),
        "unit": t.unit.as_str(),
        "certified": t.certified.to_string(),
        "used": c.used.to_string(),
        "remaining": c.remaining().to_string(),
        "issued": t.issued.to_string(),
        "expires": t.expires.to_string(),
        "quota_year": t.quota_year,
        "ior": t.ior.as_str(),
        "exporter": t.exporter,
        "status": (c.status(date) as char).to_string(),
        "events": events.iter().map(|e| serde_json::json!({
            "entry": e.entry.to_string(),
            "line": e.line,
            "kind": (e.kind.code() as char).to_string(),
            "quantity": e.quantity.to_string(),
            "date": e.date.to_string(),
            "version": e.version,
        })).collect::<Vec<_>>(),
    })
}

fn print_certificate(c: &crate::model::Certificate, events: &[crate::model::UsageEvent], date: Date) {
    let t = &c.terms;
    println!(
        "{} {}  program {}  HTS {}  status {}",
        t.country,
        t.number,
        t.program.code() as char,
        t.hts,
        c.status(date) as char
    );
    println!(
        "  certified {} {}  used {}  remaining {}",
        t.certified,
        t.unit,
        c.used,
        c.remaining()
    );
    println!(
        "  issued {}  expires {}  quota year {}  IOR {}  exporter {}",
        t.issued,
        t.expires,
        t.quota_year,
        t.ior.as_str(),
        diagnose::escape(t.exporter.as_bytes())
    );
    for e in events {
        println!(
            "  {} {} line {:03} {} {} (version {})",
            e.date,
            e.entry,
            e.line,
            if e.kind == crate::model::UsageKind::Debit {
                "debit "
            } else {
                "credit"
            },
            e.quantity,
            e.version
        );
    }
}

fn query(ctx: &Paths, q: QueryCommand) -> Result<ExitCode> {
    let mut store = ctx.open_store()?;
    let date = ctx.business_date;
    let (found, json) = match q {
        QueryCommand::Certificate { country, number, json } => {
            let c =
                Country::parse(country.as_bytes()).ok_or_else(|| anyhow!("country {country:?}: two letters A-Z"))?;
            let n = CertificateNumber::from_stored(&number)
                .ok_or_else(|| anyhow!("certificate number {number:?}: 1-10 of A-Z, 0-9, -"))?;
            let found = store.read(|tx| -> Result<Vec<_>> {
                let mut v = Vec::new();
                if let Some(cert) = tx.certificate(c, n)? {
                    let ev = tx.usage_events(cert.id)?;
                    v.push((cert, ev));
                }
                Ok(v)
            })?;
            (found, json)
        }
        QueryCommand::Ior { ior, json } => {
            let ior = parse_ior(&ior)?;
            let found = store.read(|tx| -> Result<Vec<_>> {
                let mut v = Vec::new();
                tx.usage_for_ior(&ior, None, &mut |c, events| {
                    v.push((c, events));
                    Ok(())
                })?;
                Ok(v)
            })?;
            (found, json)
        }
    };
    if json {
        let v: Vec<_> = found.iter().map(|(c, e)| certificate_json(c, e, date)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if found.is_empty() {
        println!("no certificate found");
    } else {
        for (c, e) in &found {
            print_certificate(c, e, date);
        }
    }
    Ok(if found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
