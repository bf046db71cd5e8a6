//! The four inbound applications. Each module has the same shape:
//! `split` groups a block's detail records into transactions (reporting
//! batch-level record problems), `evaluate` applies the rules to one
//! transaction given the state it needs, `render` writes its response records.

pub mod certificates;
pub mod entries;
pub mod queries;

use crate::codes::Code;
use crate::envelope::{App, Block, Problem};
use crate::record::RawBatch;

/// A transaction-level problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnProblem {
    /// 0-based index in the batch of the record concerned.
    pub record: usize,
    /// First column concerned (0: the record as a whole).
    pub column: usize,
    pub code: Code,
    /// Where the problem sorts: normally `(record, column)`.
    pub order: (usize, usize),
    /// For an entry-summary line problem: the index of the line's `40` record.
    pub line: Option<usize>,
}

impl TxnProblem {
    pub fn new(record: usize, column: usize, code: Code) -> TxnProblem {
        TxnProblem {
            record,
            column,
            code,
            order: (record, column),
            line: None,
        }
    }

    /// A problem of an entry-summary line.
    pub fn on_line(mut self, line: usize) -> TxnProblem {
        self.line = Some(line);
        self
    }

    /// Sorts the problem at another place than the record it names.
    pub fn sorted_at(mut self, record: usize, column: usize) -> TxnProblem {
        self.order = (record, column);
        self
    }
}

/// Sorts problems in the order rules.md asks: record, field, code table.
pub fn sort_problems(p: &mut [TxnProblem]) {
    p.sort_by_key(|a| (a.order, a.code));
}

/// The transactions of one block, by application.
#[derive(Clone, Debug)]
pub enum Transactions {
    Certificates(Vec<certificates::Transaction>),
    Entries(Vec<entries::Transaction>),
    ImporterQueries(Vec<usize>),
    CountryQueries(Vec<usize>),
}

impl Transactions {
    pub fn len(&self) -> usize {
        match self {
            Transactions::Certificates(v) => v.len(),
            Transactions::Entries(v) => v.len(),
            Transactions::ImporterQueries(v) | Transactions::CountryQueries(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Splits a block into transactions of its application.
pub fn split(app: App, raw: &RawBatch, block: &Block, problems: &mut Vec<Problem>) -> Transactions {
    match app {
        App::Gt => Transactions::Certificates(certificates::split(raw, block, problems)),
        App::Ae => Transactions::Entries(entries::split(raw, block, problems)),
        App::Ec => Transactions::ImporterQueries(queries::split(raw, block, b"C1", problems)),
        App::Gq => Transactions::CountryQueries(queries::split(raw, block, b"Q1", problems)),
    }
}

/// The batch-level record problems [`split`] reports, for diagnostics that
/// do not need the transactions.
pub fn split_problems(app: App, raw: &RawBatch, block: &Block, problems: &mut Vec<Problem>) {
    match app {
        App::Ae => entries::split_problems(raw, block, problems),
        _ => {
            split(app, raw, block, problems);
        }
    }
}
