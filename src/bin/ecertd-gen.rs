//! `ecertd-gen`: writes deterministic, spec-valid workload files.
//!
//! ```text
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 gt
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 ae --entries 100000 --max-lines 10 --refused 0.05
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 ae --bytes 1073741824
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 ec --queries 1000
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 gq --queries 1000
//! ecertd-gen --certificates 10000000 --per-ior 1000 load --db FILE --usage-events 50000000 --senders
//! ```
//!
//! `load` writes straight into a store (created if needed) what the GT files
//! and accepted AE files of the same population would leave there: the
//! certificates, then usage events from entry summaries of broker ABC.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ecertd::envelope::SenderKind;
use ecertd::gen::{self, EntryMix, Population, Rng, SyntheticSpec, COUNTRIES};
use ecertd::model::Sender;
use ecertd::store::Store;
use ecertd::types::{Country, Date};

#[derive(Parser)]
#[command(name = "ecertd-gen", about = "Deterministic eCERT/ABI workload files")]
struct Cli {
    /// Output directory (created)
    #[arg(long, default_value = "workload")]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Size of the certificate population the files refer to
    #[arg(long, default_value_t = 10_000)]
    certificates: u64,
    /// Certificates naming each importer of record
    #[arg(long, default_value_t = 100)]
    per_ior: u64,
    /// Certified quantity of each certificate, in hundredths
    #[arg(long, default_value_t = 100_000_000_000)]
    certified: u64,
    /// Prefix of batch references (unique per run keeps duplicates apart)
    #[arg(long, default_value = "GEN")]
    tag: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Certificates: one file per country, gt-CC.txt
    Gt {
        #[arg(long, default_value_t = 1000)]
        per_batch: usize,
    },
    /// Entry summaries from broker ABC: ae-NNNN.txt
    Ae {
        #[arg(long, default_value_t = 10_000)]
        entries: u64,
        /// Keep writing entries until the file holds this many bytes (overrides --entries)
        #[arg(long)]
        bytes: Option<u64>,
        #[arg(long, default_value_t = 100)]
        entries_per_batch: u64,
        #[arg(long, default_value_t = 10)]
        max_lines: u64,
        /// Share of entries with a claim that must be refused
        #[arg(long, default_value_t = 0.05)]
        refused: f64,
        /// Files to spread the entries over
        #[arg(long, default_value_t = 1)]
        files: u64,
        /// Quantity of each claim, in hundredths
        #[arg(long, default_value_t = 100)]
        claim: u64,
    },
    /// Importer usage queries from broker ABC: ec.txt
    Ec {
        #[arg(long, default_value_t = 1000)]
        queries: u64,
    },
    /// Country usage queries from AU1: gq.txt
    Gq {
        #[arg(long, default_value_t = 1000)]
        queries: u64,
    },
    /// Bulk-load the population and usage events into a store (no files)
    Load {
        /// The SQLite store (created and migrated if needed)
        #[arg(long)]
        db: PathBuf,
        /// Usage events (debits) from accepted entry summaries of broker ABC
        #[arg(long, default_value_t = 0)]
        usage_events: u64,
        /// Lines per entry summary: 1 to this many
        #[arg(long, default_value_t = 10)]
        max_lines: u64,
        /// Quantity of each debit, in hundredths
        #[arg(long, default_value_t = 100)]
        claim: u64,
        /// Date of the usage events, YYYY-MM-DD
        #[arg(long, default_value = "2026-03-15")]
        business_date: String,
        /// Certificates or entries per transaction
        #[arg(long, default_value_t = 100_000)]
        per_commit: u64,
        /// SQLite page cache while loading, MiB
        #[arg(long, default_value_t = 2048)]
        cache_mib: u64,
        /// Also register the generated senders (AU1, NZ1, UY1, AR1, ABC) with their demo passwords
        #[arg(long)]
        senders: bool,
    },
}

fn create(path: PathBuf) -> Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    ))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.what, What::Load { .. }) {
        std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    }
    let pop = Population {
        certificates: cli.certificates,
        per_ior: cli.per_ior,
        certified: cli.certified,
    };
    let mut rng = Rng::new(cli.seed);
    match cli.what {
        What::Gt { per_batch } => {
            for (i, (country, _)) in COUNTRIES.iter().enumerate() {
                let mut w = create(cli.out.join(format!("gt-{country}.txt")))?;
                let batches = gen::write_gt(&mut w, &pop, i, per_batch, &format!("{}-{country}", cli.tag))?;
                w.flush()?;
                println!("gt-{country}.txt: {batches} batches");
            }
        }
        What::Ae {
            entries,
            bytes,
            entries_per_batch,
            max_lines,
            refused,
            files,
            claim,
        } => {
            // About 3 records per line plus 2 per entry, 81 bytes each.
            let per_entry = 81 * (2 + 3 * (max_lines + 1) / 2);
            let entries = bytes.map(|b| b / per_entry.max(1) + 1).unwrap_or(entries);
            let files = files.max(1);
            let mut first = 1;
            for f in 0..files {
                let n = entries / files + u64::from(f < entries % files);
                let mix = EntryMix {
                    entries: n,
                    entries_per_batch,
                    max_lines: max_lines.max(1),
                    refused_share: refused,
                    claim,
                    first_number: first,
                };
                first += n;
                let name = format!("ae-{:04}.txt", f + 1);
                let mut w = create(cli.out.join(&name))?;
                let c = gen::write_ae(&mut w, &pop, &mix, &mut rng, &format!("{}-{}", cli.tag, f + 1))?;
                w.flush()?;
                println!(
                    "{name}: {} batches, {} entries, {} claims, {} entries with a refused claim, {} bytes",
                    c.batches, c.entries, c.claims, c.refused_entries, c.bytes
                );
            }
        }
        What::Ec { queries } => {
            let mut w = create(cli.out.join("ec.txt"))?;
            gen::write_ec(&mut w, &pop, queries, &mut rng, &cli.tag)?;
            w.flush()?;
            println!("ec.txt: {queries} queries");
        }
        What::Gq { queries } => {
            let mut w = create(cli.out.join("gq.txt"))?;
            gen::write_gq(&mut w, &pop, 0, queries, &mut rng, &cli.tag)?;
            w.flush()?;
            println!("gq.txt: {queries} queries");
        }
        What::Load {
            db,
            usage_events,
            max_lines,
            claim,
            business_date,
            per_commit,
            cache_mib,
            senders,
        } => {
            let business_date = Date::parse_iso(&business_date)
                .with_context(|| format!("--business-date {business_date:?}: expected YYYY-MM-DD"))?;
            let mut store = Store::open(&db).with_context(|| format!("opening store {}", db.display()))?;
            if senders {
                let mut all: Vec<(String, Option<Country>)> = COUNTRIES
                    .iter()
                    .map(|(c, s)| (s.to_string(), Country::from_stored(c)))
                    .collect();
                all.push(("ABC".to_string(), None));
                for (id, country) in all {
                    let sender = Sender {
                        id: id.clone(),
                        kind: if country.is_some() {
                            SenderKind::Country
                        } else {
                            SenderKind::Broker
                        },
                        country,
                        filers: vec![],
                    };
                    store
                        .add_sender(&sender, &gen::password(&id))
                        .with_context(|| format!("registering sender {id}"))?;
                }
            }
            let spec = SyntheticSpec {
                population: pop,
                usage_events,
                max_lines: max_lines.max(1),
                claim: claim.max(1),
                seed: cli.seed,
                business_date,
                per_commit,
                cache_mib,
            };
            let start = std::time::Instant::now();
            let mut last = (String::new(), u64::MAX);
            store
                .load_synthetic(&spec, &mut |what, done, total| {
                    let decile = (done * 10).checked_div(total).unwrap_or(10);
                    if (what, decile) != (last.0.as_str(), last.1) {
                        eprintln!("{what}: {done} of {total} ({:.0} s)", start.elapsed().as_secs_f64());
                        last = (what.to_string(), decile);
                    }
                })
                .with_context(|| format!("loading {}", db.display()))?;
            println!(
                "{}: {} certificates, {usage_events} usage events loaded in {:.1} s",
                db.display(),
                pop.certificates,
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
