//! `ecertd-gen`: writes deterministic, spec-valid workload files.
//!
//! ```text
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 gt
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 ae --entries 100000 --max-lines 10 --refused 0.05
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 ae --bytes 1073741824
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 ec --queries 1000
//! ecertd-gen --out DIR --certificates 1000000 --per-ior 1000 gq --queries 1000
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ecertd::gen::{self, EntryMix, Population, Rng, COUNTRIES};

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
}

fn create(path: PathBuf) -> Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    ))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
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
    }
    Ok(())
}
