//! Framing: bytes into 80-byte records, records into batches.
//!
//! The reader streams: it holds one batch at a time, and at most
//! [`KEEP`] bytes of any line, so an endless line or a huge file cannot
//! exhaust memory.

use std::io::{self, BufRead};

/// Length of every record.
pub const RECORD_LEN: usize = 80;

/// Bytes of a line kept beyond which its content is not needed: enough to
/// know it is too long and to show its identifier.
pub const KEEP: usize = RECORD_LEN + 1;

/// One record of a batch, as read.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The bytes as read, line end removed, at most [`KEEP`] of them.
    pub bytes: &'a [u8],
    /// The full length of the line, line end excluded.
    pub len: u64,
    /// 1-based line number within the input.
    pub line: u64,
    /// Exactly 80 printable bytes (decided once, when the line was read).
    well_formed: bool,
}

impl<'a> Record<'a> {
    /// The first byte that is not printable ASCII, as a 1-based column.
    pub fn first_bad_byte(&self) -> Option<usize> {
        self.bytes
            .iter()
            .position(|&b| !(0x20..=0x7e).contains(&b))
            .map(|p| p + 1)
    }

    /// Exactly 80 printable bytes.
    pub fn is_well_formed(&self) -> bool {
        self.well_formed
    }

    /// The identifier as read, two bytes, unprintable ones as `?`. The
    /// envelope records' identifier is position 1 alone.
    pub fn id_as_read(&self) -> [u8; 2] {
        let mut id = [b' '; 2];
        if let Some(&b @ (b'A' | b'B' | b'Y' | b'Z')) = self.bytes.first() {
            return [b, b' '];
        }
        for (slot, &b) in id.iter_mut().zip(self.bytes) {
            *slot = if (0x20..=0x7e).contains(&b) { b } else { b'?' };
        }
        id
    }

    /// The 80 bytes of a well-formed record.
    pub fn fixed(&self) -> Option<&'a [u8; RECORD_LEN]> {
        if self.is_well_formed() {
            self.bytes.try_into().ok()
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    kept: usize,
    len: u64,
    line: u64,
    well_formed: bool,
}

fn well_formed(kept: &[u8], len: u64) -> bool {
    len == RECORD_LEN as u64 && kept.len() == RECORD_LEN && printable(kept)
}

/// What opened a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchKind {
    /// Opened by an A record.
    Enveloped,
    /// Records before the first A or between a Z and the next A.
    Stray,
    /// An input with no record at all.
    Empty,
}

/// The records of one batch.
#[derive(Debug, Clone)]
pub struct RawBatch {
    pub kind: BatchKind,
    data: Vec<u8>,
    spans: Vec<Span>,
}

impl RawBatch {
    fn new(kind: BatchKind) -> Self {
        RawBatch {
            kind,
            data: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Builds a batch from whole lines; for tests and tools.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut b = RawBatch::new(BatchKind::Enveloped);
        for (i, l) in lines.into_iter().enumerate() {
            b.push(&l[..l.len().min(KEEP)], l.len() as u64, i as u64 + 1);
        }
        if b.spans
            .first()
            .map(|s| b.data.get(s.start) != Some(&b'A'))
            .unwrap_or(true)
        {
            b.kind = if b.spans.is_empty() {
                BatchKind::Empty
            } else {
                BatchKind::Stray
            };
        }
        b
    }

    fn push(&mut self, kept: &[u8], len: u64, line: u64) {
        self.push_line(kept, len, line, well_formed(kept, len));
    }

    #[inline]
    fn push_line(&mut self, kept: &[u8], len: u64, line: u64, well_formed: bool) {
        self.spans.push(Span {
            start: self.data.len(),
            kept: kept.len(),
            len,
            line,
            well_formed,
        });
        match <&[u8; RECORD_LEN]>::try_from(kept) {
            Ok(fixed) => self.data.extend_from_slice(fixed),
            Err(_) => self.data.extend_from_slice(kept),
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Record `i` (0-based; the record number in responses is `i + 1`).
    pub fn record(&self, i: usize) -> Record<'_> {
        let s = self.spans[i];
        Record {
            bytes: &self.data[s.start..s.start + s.kept],
            len: s.len,
            line: s.line,
            well_formed: s.well_formed,
        }
    }

    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.len()).map(|i| self.record(i))
    }

    /// The line of the first record (0 for an empty input).
    pub fn first_line(&self) -> u64 {
        self.spans.first().map(|s| s.line).unwrap_or(0)
    }

    /// Hands `out` the batch's bytes with line ends normalised to LF, piece
    /// by piece, for duplicate detection (hashed as they come, not copied).
    /// An over-long line contributes its kept bytes and its length.
    pub fn normalized(&self, mut out: impl FnMut(&[u8])) {
        for r in self.records() {
            out(r.bytes);
            if r.len as usize != r.bytes.len() {
                out(format!("\u{0}{}", r.len).as_bytes());
            }
            out(b"\n");
        }
    }
}

/// Splits an input into batches without holding more than one at a time.
pub struct BatchReader<R> {
    input: R,
    line: u64,
    /// A line read ahead (the A that ends the previous batch): its length and line number.
    pending: Option<(u64, u64)>,
    seen_any: bool,
    done: bool,
    scratch: Vec<u8>,
    /// Finished batches handed back, whose buffers the next batches reuse.
    spare: Vec<RawBatch>,
}

impl<R: BufRead> BatchReader<R> {
    pub fn new(input: R) -> Self {
        BatchReader {
            input,
            line: 0,
            pending: None,
            seen_any: false,
            done: false,
            scratch: Vec::with_capacity(KEEP),
            spare: Vec::new(),
        }
    }

    /// Reads one line into `scratch` (at most KEEP bytes kept); returns its
    /// full length, or `None` at end of input.
    fn read_line(&mut self) -> io::Result<Option<u64>> {
        self.scratch.clear();
        let mut len: u64 = 0;
        let mut any = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            any = true;
            let (chunk, found) = match memchr_lf(buf) {
                Some(p) => (&buf[..p], Some(p)),
                None => (buf, None),
            };
            let room = KEEP + 1 - self.scratch.len().min(KEEP + 1);
            self.scratch.extend_from_slice(&chunk[..chunk.len().min(room)]);
            len += chunk.len() as u64;
            match found {
                Some(p) => {
                    self.input.consume(p + 1);
                    break;
                }
                None => {
                    let n = buf.len();
                    self.input.consume(n);
                }
            }
        }
        if !any {
            return Ok(None);
        }
        self.line += 1;
        // A CR right before the LF (or at the very end) is part of the line end.
        if len as usize == self.scratch.len() && self.scratch.last() == Some(&b'\r') {
            self.scratch.pop();
            len -= 1;
        } else if len as usize > self.scratch.len() {
            // Over-long line: its tail was not kept; the CR question does not matter.
        }
        self.scratch.truncate(KEEP);
        Ok(Some(len))
    }

    /// Hands a batch back once it is no longer needed: the next batch
    /// reuses its buffers instead of allocating.
    pub fn recycle(&mut self, batch: RawBatch) {
        self.spare.push(batch);
    }

    /// Hands a whole group of batches back (see [`BatchReader::recycle`]):
    /// the next group is read into their buffers, where fresh ones would
    /// be faulted in page by page.
    pub fn recycle_all(&mut self, batches: Vec<RawBatch>) {
        self.spare.extend(batches);
    }

    /// Takes a recycled batch's buffers, or new ones, for a batch of `kind`.
    fn open_batch(spare: &mut Vec<RawBatch>, kind: BatchKind) -> RawBatch {
        match spare.pop() {
            Some(mut b) => {
                b.kind = kind;
                b.data.clear();
                b.spans.clear();
                b
            }
            None => RawBatch::new(kind),
        }
    }

    /// Adds one line to the batch being read. Returns `true` when the line
    /// belongs to the next batch (an A after the first record; nothing is
    /// added) or ends this one (a Z of an enveloped batch; added).
    #[inline]
    fn take_line(
        spare: &mut Vec<RawBatch>,
        batch: &mut Option<RawBatch>,
        kept: &[u8],
        len: u64,
        line: u64,
        well_formed: bool,
    ) -> Step {
        let first = kept.first().copied();
        match batch.as_mut() {
            None => {
                let kind = if first == Some(b'A') {
                    BatchKind::Enveloped
                } else {
                    BatchKind::Stray
                };
                let mut b = Self::open_batch(spare, kind);
                b.push_line(kept, len, line, well_formed);
                *batch = Some(b);
                Step::More
            }
            Some(b) => {
                if first == Some(b'A') {
                    return Step::Before;
                }
                b.push_line(kept, len, line, well_formed);
                if b.kind == BatchKind::Enveloped && first == Some(b'Z') {
                    Step::After
                } else {
                    Step::More
                }
            }
        }
    }

    /// The next batch, or `None` when the input is exhausted.
    pub fn next_batch(&mut self) -> io::Result<Option<RawBatch>> {
        if self.done {
            return Ok(None);
        }
        let mut batch: Option<RawBatch> = None;
        if let Some((len, line)) = self.pending.take() {
            // `scratch` still holds the pending line's bytes (an A: it opens a batch).
            let wf = well_formed(&self.scratch, len);
            Self::take_line(&mut self.spare, &mut batch, &self.scratch, len, line, wf);
        }
        loop {
            // Whole lines straight from the read buffer, without copying them first.
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                self.done = true;
                if batch.is_none() && !self.seen_any {
                    return Ok(Some(RawBatch::new(BatchKind::Empty)));
                }
                return Ok(batch);
            }
            let mut pos = 0;
            let mut step = Step::More;
            while pos < buf.len() {
                let rest = &buf[pos..];
                // The common case: 80 printable bytes (so no line end among them) and an LF.
                let (end, wf) = match rest.get(..=RECORD_LEN) {
                    Some(r) if r[RECORD_LEN] == b'\n' && printable(&r[..RECORD_LEN]) => (RECORD_LEN, true),
                    _ => match memchr_lf(rest) {
                        Some(p) => (p, false),
                        None => break,
                    },
                };
                let raw = &rest[..end];
                let (kept, len) = if wf {
                    (raw, RECORD_LEN as u64)
                } else {
                    let len = strip_cr(raw);
                    let kept = &raw[..len.min(KEEP)];
                    (kept, len as u64)
                };
                let wf = wf || well_formed(kept, len);
                self.seen_any = true;
                step = Self::take_line(&mut self.spare, &mut batch, kept, len, self.line + 1, wf);
                if step == Step::Before {
                    break;
                }
                self.line += 1;
                pos += end + 1;
                if step == Step::After {
                    break;
                }
            }
            let partial = pos < buf.len() && step == Step::More;
            self.input.consume(pos);
            if step != Step::More {
                return Ok(batch);
            }
            if partial {
                // A line without its end in the buffer: read it across refills.
                let Some(len) = self.read_line()? else { continue };
                self.seen_any = true;
                let wf = well_formed(&self.scratch, len);
                match Self::take_line(&mut self.spare, &mut batch, &self.scratch, len, self.line, wf) {
                    Step::More => {}
                    Step::Before => {
                        self.pending = Some((len, self.line));
                        return Ok(batch);
                    }
                    Step::After => return Ok(batch),
                }
            }
        }
    }
}

/// What a line did to the batch being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Added; the batch goes on.
    More,
    /// Belongs to the next batch; not added.
    Before,
    /// Added; it ends the batch.
    After,
}

/// The length of a line's content: a CR right before the LF (or at the very
/// end of the input) is part of the line end, unless the line is over-long.
#[inline]
fn strip_cr(raw: &[u8]) -> usize {
    match raw.last() {
        Some(b'\r') if raw.len() <= KEEP + 1 => raw.len() - 1,
        _ => raw.len(),
    }
}

/// Every byte printable ASCII (written to be vectorised: no early exit).
#[inline]
fn printable(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(0u8, |bad, &b| bad | u8::from(b.wrapping_sub(0x20) > 0x7e - 0x20))
        == 0
}

fn memchr_lf(buf: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(input: &[u8]) -> Vec<RawBatch> {
        let mut r = BatchReader::new(input);
        let mut v = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            v.push(b);
        }
        v
    }

    #[test]
    fn empty_input_is_one_empty_batch() {
        let v = batches(b"");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, BatchKind::Empty);
    }

    #[test]
    fn splits_on_z_and_a_and_keeps_strays() {
        let v = batches(b"junk\nA1\nB\nZ1\nmore\nA2\nB\nA3\nZ3");
        let kinds: Vec<_> = v.iter().map(|b| (b.kind, b.len())).collect();
        assert_eq!(
            kinds,
            vec![
                (BatchKind::Stray, 1),
                (BatchKind::Enveloped, 3),
                (BatchKind::Stray, 1),
                (BatchKind::Enveloped, 2),
                (BatchKind::Enveloped, 2)
            ]
        );
        assert_eq!(v[3].record(0).line, 6);
    }

    #[test]
    fn crlf_and_missing_final_line_end() {
        let v = batches(b"A\r\nZ");
        assert_eq!(v[0].record(0).bytes, b"A");
        assert_eq!(v[0].record(1).bytes, b"Z");
        assert_eq!(v[0].record(0).len, 1);
    }

    #[test]
    fn long_lines_are_capped() {
        let mut input = vec![b'A'; 10_000];
        input.push(b'\n');
        let v = batches(&input);
        assert_eq!(v[0].record(0).len, 10_000);
        assert_eq!(v[0].record(0).bytes.len(), KEEP);
        assert!(!v[0].record(0).is_well_formed());
    }

    /// A batch as read: its kind and, per record, bytes, length, line, well-formed.
    type Read = (BatchKind, Vec<(Vec<u8>, u64, u64, bool)>);

    /// The framing rules written out plainly: split on LF, strip a CR before
    /// it unless the line is over-long, keep 81 bytes, group into batches.
    fn reference(input: &[u8]) -> Vec<Read> {
        let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut out: Vec<Read> = Vec::new();
        let mut open = false;
        for (n, raw) in lines.iter().enumerate() {
            let mut len = raw.len();
            if len <= KEEP + 1 && raw.last() == Some(&b'\r') {
                len -= 1;
            }
            let kept = raw[..len.min(KEEP)].to_vec();
            let wf = len == 80 && kept.iter().all(|b| (0x20..=0x7e).contains(b));
            let first = kept.first().copied();
            if !open || first == Some(b'A') {
                let kind = if first == Some(b'A') {
                    BatchKind::Enveloped
                } else {
                    BatchKind::Stray
                };
                out.push((kind, Vec::new()));
                open = true;
            }
            let batch = out.last_mut().unwrap();
            batch.1.push((kept, len as u64, n as u64 + 1, wf));
            if batch.0 == BatchKind::Enveloped && first == Some(b'Z') {
                open = false;
            }
        }
        if out.is_empty() {
            out.push((BatchKind::Empty, Vec::new()));
        }
        out
    }

    /// Every batch read, their buffers handed back one at a time and in
    /// threes, as `process` hands back a group.
    fn read_all(input: impl BufRead) -> Vec<Read> {
        let mut r = BatchReader::new(input);
        let mut v = Vec::new();
        let mut group = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            let recs = b
                .records()
                .map(|x| (x.bytes.to_vec(), x.len, x.line, x.is_well_formed()))
                .collect();
            v.push((b.kind, recs));
            if v.len() % 2 == 0 {
                r.recycle(b);
            } else {
                group.push(b);
            }
            if group.len() == 3 {
                r.recycle_all(std::mem::take(&mut group));
            }
        }
        v
    }

    #[test]
    fn lines_across_buffer_refills_read_as_whole() {
        let rec = |c: u8| {
            let mut l = vec![b' '; 80];
            l[0] = c;
            l
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let mut input = Vec::new();
            for _ in 0..next() % 40 {
                let mut line = match next() % 12 {
                    0 => rec(b'A'),
                    1 => rec(b'Z'),
                    2 => rec(b'B'),
                    3 => vec![b'x'; (next() % 300) as usize],
                    4 => {
                        let mut l = rec(b'1');
                        l[(next() % 80) as usize] = [0u8, b'\r', 0x7f, 0xff][(next() % 4) as usize];
                        l
                    }
                    5 => vec![b'A'; 81],
                    _ => rec(b'5'),
                };
                match next() % 6 {
                    0 => line.extend_from_slice(b"\r\n"),
                    1 => line.push(b'\r'),
                    _ => line.push(b'\n'),
                }
                input.extend_from_slice(&line);
            }
            if round % 3 == 0 {
                input.pop();
            }
            let want = reference(&input);
            assert_eq!(read_all(&input[..]), want, "round {round}");
            for cap in [1, 2, 79, 80, 81, 82, 83, 160, 163, 1000] {
                let got = read_all(std::io::BufReader::with_capacity(cap, &input[..]));
                assert_eq!(got, want, "round {round} capacity {cap}");
            }
        }
    }

    #[test]
    fn normalized_ignores_line_end_style() {
        let a = batches(b"A\r\nZ\r\n");
        let b = batches(b"A\nZ");
        let bytes = |raw: &RawBatch| {
            let mut all = Vec::new();
            raw.normalized(|piece| all.extend_from_slice(piece));
            all
        };
        assert_eq!(bytes(&a[0]), bytes(&b[0]));
        assert_eq!(bytes(&a[0]), b"A\nZ\n");
    }
}
