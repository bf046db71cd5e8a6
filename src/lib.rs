//! `ecertd`: an eCERT 2.0 quota-certificate and ABI entry-summary processor.
//!
//! See ARCHITECTURE.md for the map. The functional core (`layout`, `record`,
//! `envelope`, `apps`, `types`) does no I/O; `store`, `engine`, `spool`,
//! `daemon` and `cli` are the shell around it.

pub mod apps;
pub mod cli;
pub mod codes;
pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod engine;
pub mod envelope;
pub mod fault;
pub mod gen;
pub mod journal;
pub mod layout;
pub mod lookahead;
pub mod metrics;
pub mod model;
pub mod net;
pub mod record;
pub mod spool;
pub mod store;
pub mod types;
pub mod worker;
