//! The claims of an AE file read naively, for the benches that compare
//! themselves with `ecertd process`: only records 10, 11, 40, 50 and 52, by
//! fixed positions, no validation beyond what a claim needs.

use std::io::{self, BufRead};

/// One entry summary with its claims.
#[derive(Default)]
pub struct Entry {
    pub filer: String,
    pub number: String,
    pub ior: String,
    /// (line, country, certificate number, quantity)
    pub claims: Vec<(u16, String, String, i64)>,
    /// Records from its 10 record to the next entry's (or the batch's end).
    pub records: usize,
    /// The last 40 record's line number and origin.
    line: (u16, String),
    /// The last 50 record's quantity.
    quantity: i64,
}

fn field(line: &[u8], from: usize, to: usize) -> &str {
    line.get(from - 1..to)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// Calls `each` with every entry summary of `input`, in file order.
pub fn for_each_entry<E: From<io::Error>>(
    mut input: impl BufRead,
    mut each: impl FnMut(Entry) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(128);
    let mut entry = Entry::default();
    let mut finish = |entry: &mut Entry| {
        let done = std::mem::take(entry);
        if done.number.is_empty() {
            Ok(())
        } else {
            each(done)
        }
    };
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        entry.records += 1;
        match line.get(..2) {
            Some(b"10") => {
                finish(&mut entry)?;
                entry.records = 1;
                entry.filer = field(line, 4, 6).to_string();
                entry.number = field(line, 9, 16).to_string();
            }
            Some(b"11") => entry.ior = field(line, 3, 14).to_string(),
            Some(b"40") => entry.line = (field(line, 5, 7).parse().unwrap_or(0), field(line, 9, 10).to_string()),
            Some(b"50") => entry.quantity = field(line, 36, 47).parse().unwrap_or(0),
            Some(b"52") => {
                let number = field(line, 5, 14).trim_end().to_string();
                let (l, origin) = entry.line.clone();
                entry.claims.push((l, origin, number, entry.quantity));
            }
            _ if line.first() == Some(&b'Y') => finish(&mut entry)?,
            _ => {}
        }
    }
    finish(&mut entry)
}
