//! The A/B…Y/Z batch envelope: framing checks, the batch rejection response
//! and the response envelope. Pure: no I/O, the business date is a parameter.

use crate::codes::Code;
use crate::layout::{self, Field, FieldState, Layout};
use crate::record::{BatchKind, RawBatch, Record};
use crate::types::Date;

/// Where a file or connection came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Abi,
    Ecert,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Abi => "abi",
            Channel::Ecert => "ecert",
        }
    }
}

/// Kinds of registered senders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderKind {
    Broker,
    Country,
}

impl SenderKind {
    pub fn name(self) -> &'static str {
        match self {
            SenderKind::Broker => "broker",
            SenderKind::Country => "country",
        }
    }

    pub fn parse(s: &str) -> Option<SenderKind> {
        match s {
            "broker" => Some(SenderKind::Broker),
            "country" => Some(SenderKind::Country),
            _ => None,
        }
    }
}

/// The inbound applications.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum App {
    Gt,
    Gq,
    Ae,
    Ec,
}

impl App {
    pub const ALL: [App; 4] = [App::Gt, App::Gq, App::Ae, App::Ec];

    pub fn parse(id: &[u8]) -> Option<App> {
        match id {
            b"GT" => Some(App::Gt),
            b"GQ" => Some(App::Gq),
            b"AE" => Some(App::Ae),
            b"EC" => Some(App::Ec),
            _ => None,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            App::Gt => "GT",
            App::Gq => "GQ",
            App::Ae => "AE",
            App::Ec => "EC",
        }
    }

    /// The identifier of the response application.
    pub fn response_id(self) -> &'static [u8; 2] {
        match self {
            App::Gt => b"GS",
            App::Gq => b"GR",
            App::Ae => b"AX",
            App::Ec => b"EZ",
        }
    }

    pub fn channel(self) -> Channel {
        match self {
            App::Gt | App::Gq => Channel::Ecert,
            App::Ae | App::Ec => Channel::Abi,
        }
    }

    pub fn sender_kind(self) -> SenderKind {
        match self {
            App::Gt | App::Gq => SenderKind::Country,
            App::Ae | App::Ec => SenderKind::Broker,
        }
    }
}

/// A batch-level problem, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based record number within the batch (0 when the input had none).
    pub record: usize,
    /// First column concerned, 0 for the whole record.
    pub column: usize,
    /// The record identifier as read.
    pub id: [u8; 2],
    pub code: Code,
    /// What a person calls the place: a field name or a short description.
    pub what: &'static str,
    /// 1-based line of the record in its input (0 when unknown).
    pub line: u64,
}

impl Problem {
    pub fn at(record_index: usize, rec: &Record<'_>, column: usize, code: Code, what: &'static str) -> Problem {
        Problem {
            record: record_index + 1,
            column,
            id: rec.id_as_read(),
            code,
            what,
            line: rec.line,
        }
    }

    pub fn at_field(record_index: usize, rec: &Record<'_>, field: &Field, code: Code) -> Problem {
        Problem::at(record_index, rec, field.column(), code, field.name)
    }
}

/// Sorts problems into the order they are reported and caps them at 99.
pub fn finish_problems(problems: &mut Vec<Problem>) {
    problems.sort_by_key(|a| (a.record, a.column, a.code));
    problems.dedup_by(|a, b| a.record == b.record && a.column == b.column && a.code == b.code);
    problems.truncate(99);
}

/// What the A record says, with unreadable fields as spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub site: [u8; 4],
    pub sender: [u8; 3],
    pub password: [u8; 6],
    pub office: [u8; 2],
    pub reference: [u8; 21],
    /// The application, when it is one of this system's.
    pub app: Option<App>,
    /// Whether the sender field was readable at all.
    pub sender_readable: bool,
}

impl Header {
    fn blank() -> Header {
        Header {
            site: [b' '; 4],
            sender: [b' '; 3],
            password: [b' '; 6],
            office: [b' '; 2],
            reference: [b' '; 21],
            app: None,
            sender_readable: false,
        }
    }

    pub fn sender_str(&self) -> &str {
        std::str::from_utf8(&self.sender).unwrap_or("").trim_end()
    }

    pub fn reference_is_blank(&self) -> bool {
        self.reference.iter().all(|&b| b == b' ')
    }
}

/// One B…Y block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// 0-based index of the B record.
    pub b: usize,
    /// 0-based index of the Y record (or of the record that ended the block).
    pub y: usize,
    pub port: [u8; 4],
    pub filer: [u8; 3],
    pub office: [u8; 2],
    pub reference: [u8; 21],
}

impl Block {
    /// 0-based indices of the detail records.
    pub fn details(&self) -> std::ops::Range<usize> {
        self.b + 1..self.y
    }
}

/// The envelope of one batch, with every framing problem found.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub header: Header,
    pub blocks: Vec<Block>,
    pub problems: Vec<Problem>,
}

/// Copies a field when its bytes are all allowed by the field's class.
fn readable<const N: usize>(rec: &Record<'_>, field: &Field) -> Option<[u8; N]> {
    let bytes = rec.bytes.get(field.start..field.start + field.len)?;
    if field.state(bytes) == FieldState::Invalid {
        return None;
    }
    bytes.try_into().ok()
}

fn read_or_blank<const N: usize>(rec: &Record<'_>, field: &Field) -> [u8; N] {
    readable(rec, field).unwrap_or([b' '; N])
}

/// The syntax problems of a well-formed record against its layout: class,
/// mandatory fields and filler. `skip` leaves fields to the caller.
pub fn field_problems(layout: &Layout, index: usize, rec: &Record<'_>, skip: &[&str], out: &mut Vec<Problem>) {
    // Leaving fields out only removes problems: a record clean in every field has none.
    if rec.fixed().is_some_and(|r| layout.syntax_clean(r)) {
        return;
    }
    for f in &layout.fields {
        // The identifier (always first) decided the layout; `skip` is short.
        if f.start == 0 || (!skip.is_empty() && skip.contains(&f.key)) {
            continue;
        }
        if let Some(code) = f.syntax_problem(rec.bytes) {
            out.push(Problem::at_field(index, rec, f, code));
        }
    }
}

fn check_mmddyy(layout: &Layout, index: usize, rec: &Record<'_>, out: &mut Vec<Problem>) {
    let f = layout.field("date");
    let bytes = f.slice(rec.bytes);
    if f.state(bytes) == FieldState::Valid && Date::parse_mmddyy(bytes).is_none() {
        out.push(Problem::at_field(index, rec, f, Code::X12));
    }
}

fn compare(
    layout: &Layout,
    key: &str,
    index: usize,
    rec: &Record<'_>,
    expected: &[u8],
    code: Code,
    out: &mut Vec<Problem>,
) {
    let f = layout.field(key);
    if f.slice(rec.bytes) != expected {
        out.push(Problem::at_field(index, rec, f, code));
    }
}

/// Checks the envelope of a batch. `channel` is the channel it came in on,
/// when known (`ecertd check` has none).
pub fn frame(raw: &RawBatch, channel: Option<Channel>) -> Envelope {
    let mut env = Envelope {
        header: Header::blank(),
        blocks: Vec::new(),
        problems: Vec::new(),
    };
    match raw.kind {
        BatchKind::Empty => {
            env.problems.push(Problem {
                record: 0,
                column: 0,
                id: [b' '; 2],
                code: Code::X03,
                what: "empty input",
                line: 0,
            });
            return env;
        }
        BatchKind::Stray => {
            let rec = raw.record(0);
            env.problems
                .push(Problem::at(0, &rec, 0, Code::X03, "record outside a batch"));
            return env;
        }
        BatchKind::Enveloped => {}
    }

    let (la, lb, ly, lz) = (layout::get("A"), layout::get("B"), layout::get("Y"), layout::get("Z"));
    let problems = &mut env.problems;

    // Header.
    let a = raw.record(0);
    let a_ok = a.is_well_formed();
    if !a_ok {
        problems.push(Problem::at(0, &a, 0, Code::X01, "record length or content"));
    }
    env.header.site = read_or_blank(&a, la.field("site"));
    if let Some(s) = readable::<3>(&a, la.field("sender")) {
        env.header.sender = s;
        env.header.sender_readable = s.iter().any(|&b| b != b' ');
    }
    env.header.password = read_or_blank(&a, la.field("password"));
    env.header.office = read_or_blank(&a, la.field("office"));
    env.header.reference = read_or_blank(&a, la.field("reference"));
    let app_field = la.field("app");
    let app_bytes: Option<[u8; 2]> = readable(&a, app_field);
    env.header.app = app_bytes.and_then(|b| App::parse(&b));
    if a_ok {
        field_problems(la, 0, &a, &[], problems);
        check_mmddyy(la, 0, &a, problems);
        if app_field.state(app_field.slice(a.bytes)) == FieldState::Valid {
            match env.header.app {
                None => problems.push(Problem::at_field(0, &a, app_field, Code::X06)),
                Some(app) => {
                    if channel.is_some_and(|c| c != app.channel()) {
                        problems.push(Problem::at_field(0, &a, app_field, Code::X07));
                    }
                }
            }
        }
    }
    let app_id: [u8; 2] = app_bytes.unwrap_or([b' '; 2]);

    // Blocks and trailer.
    let mut open: Option<Block> = None;
    let mut saw_z = false;
    let last = raw.len() - 1;
    for i in 1..raw.len() {
        let rec = raw.record(i);
        let well_formed = rec.is_well_formed();
        if !well_formed {
            problems.push(Problem::at(i, &rec, 0, Code::X01, "record length or content"));
        }
        match rec.bytes.first() {
            Some(b'B') => {
                if let Some(mut blk) = open.take() {
                    problems.push(Problem::at(i, &rec, 0, Code::X03, "block header before block trailer"));
                    blk.y = i;
                    env.blocks.push(blk);
                }
                if well_formed {
                    field_problems(lb, i, &rec, &[], problems);
                    compare(lb, "app", i, &rec, &app_id, Code::X12, problems);
                }
                open = Some(Block {
                    b: i,
                    y: i,
                    port: read_or_blank(&rec, lb.field("port")),
                    filer: read_or_blank(&rec, lb.field("filer")),
                    office: read_or_blank(&rec, lb.field("office")),
                    reference: read_or_blank(&rec, lb.field("reference")),
                });
            }
            Some(b'Y') => match open.take() {
                None => problems.push(Problem::at(i, &rec, 0, Code::X03, "block trailer without block header")),
                Some(mut blk) => {
                    blk.y = i;
                    let details = i - blk.b - 1;
                    if well_formed {
                        let b_rec = raw.record(blk.b);
                        field_problems(ly, i, &rec, &["port", "filer", "app"], problems);
                        // A malformed B (already X01) has nothing reliable to compare with.
                        if let Some(b_bytes) = b_rec.fixed() {
                            for key in ["port", "filer", "app"] {
                                let want = lb.field(key).slice(b_bytes);
                                compare(ly, key, i, &rec, want, Code::X04, problems);
                            }
                        }
                        let count = ly.field("count");
                        let cb = count.slice(rec.bytes);
                        if count.state(cb) == FieldState::Valid
                            && crate::types::parse_digits(cb) != Some(details as u64)
                        {
                            problems.push(Problem::at_field(i, &rec, count, Code::X05));
                        }
                    }
                    if details == 0 {
                        let b_rec = raw.record(blk.b);
                        problems.push(Problem::at(blk.b, &b_rec, 0, Code::X14, "block without detail records"));
                    }
                    env.blocks.push(blk);
                }
            },
            Some(b'Z') if i == last => {
                saw_z = true;
                if let Some(mut blk) = open.take() {
                    problems.push(Problem::at(i, &rec, 0, Code::X03, "batch trailer before block trailer"));
                    blk.y = i;
                    env.blocks.push(blk);
                } else if env.blocks.is_empty() {
                    problems.push(Problem::at(i, &rec, 0, Code::X03, "batch without blocks"));
                }
                if well_formed {
                    field_problems(lz, i, &rec, &["site", "sender"], problems);
                    if a_ok {
                        compare(
                            lz,
                            "site",
                            i,
                            &rec,
                            la.field("site").slice(a.bytes),
                            Code::X04,
                            problems,
                        );
                        compare(
                            lz,
                            "sender",
                            i,
                            &rec,
                            la.field("sender").slice(a.bytes),
                            Code::X04,
                            problems,
                        );
                    }
                    check_mmddyy(lz, i, &rec, problems);
                }
            }
            _ => {
                if open.is_none() {
                    problems.push(Problem::at(i, &rec, 0, Code::X03, "detail record outside a block"));
                }
            }
        }
    }
    if !saw_z {
        let rec = raw.record(last);
        problems.push(Problem::at(last, &rec, 0, Code::X03, "batch trailer missing"));
        if let Some(mut blk) = open.take() {
            blk.y = raw.len();
            env.blocks.push(blk);
        }
    }
    env
}

/// Accumulates response records, each followed by LF.
#[derive(Default)]
pub struct ResponseWriter {
    pub bytes: Vec<u8>,
    details: usize,
}

impl ResponseWriter {
    pub fn new() -> Self {
        ResponseWriter::default()
    }

    /// With room for `bytes` of response: a large response grown by
    /// doubling copies itself and faults in fresh memory at every step.
    pub fn with_capacity(bytes: usize) -> Self {
        ResponseWriter {
            bytes: Vec::with_capacity(bytes),
            details: 0,
        }
    }

    pub fn record(&mut self, rec: &[u8; 80]) {
        self.bytes.extend_from_slice(rec);
        self.bytes.push(b'\n');
    }

    /// Writes a detail record and counts it for the block trailer.
    pub fn detail(&mut self, rec: [u8; 80]) {
        self.record(&rec);
        self.details += 1;
    }

    pub fn header(&mut self, h: &Header, app: Option<App>, date: Date) {
        let la = layout::get("A");
        let resp: &[u8] = app.map(|a| &a.response_id()[..]).unwrap_or(b"  ");
        let rec = la
            .blank()
            .text("site", &h.site)
            .text("sender", &h.sender)
            .number("date", u64::from(date.mmddyy()))
            .text("app", resp)
            .text("office", &h.office)
            .text("reference", &h.reference)
            .finish();
        self.record(&rec);
    }

    pub fn block_header(&mut self, blk: &Block, app: App) {
        self.details = 0;
        let rec = layout::get("B")
            .blank()
            .text("port", &blk.port)
            .text("filer", &blk.filer)
            .text("app", app.response_id())
            .text("office", &blk.office)
            .text("reference", &blk.reference)
            .finish();
        self.record(&rec);
    }

    pub fn block_trailer(&mut self, blk: &Block, app: App) {
        let rec = layout::get("Y")
            .blank()
            .text("port", &blk.port)
            .text("filer", &blk.filer)
            .text("app", app.response_id())
            .number("count", self.details as u64)
            .text("office", &blk.office)
            .finish();
        self.record(&rec);
    }

    pub fn trailer(&mut self, h: &Header, date: Date) {
        let rec = layout::get("Z")
            .blank()
            .text("site", &h.site)
            .text("sender", &h.sender)
            .number("date", u64::from(date.mmddyy()))
            .text("office", &h.office)
            .finish();
        self.record(&rec);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The response to a batch refused as a whole (envelope.md, "Batch rejection").
pub fn render_rejection(header: &Header, problems: &[Problem], date: Date) -> Vec<u8> {
    let mut w = ResponseWriter::new();
    w.header(header, header.app, date);
    let mut b = [b' '; 80];
    b[0] = b'B';
    w.record(&b);
    w.details = 0;
    let (x0, x1) = (layout::get("X0"), layout::get("X1"));
    for p in problems.iter().take(99) {
        w.detail(
            x0.blank()
                .number("record", p.record as u64)
                .number("column", p.column.min(99) as u64)
                .as_read("record_id", &p.id)
                .finish(),
        );
        w.detail(
            x1.blank()
                .text("severity", b"F")
                .text("code", p.code.as_str().as_bytes())
                .text("narrative", p.code.narrative().as_bytes())
                .finish(),
        );
    }
    w.detail(
        x1.blank()
            .text("disposition", b"R")
            .text("severity", b"F")
            .text("code", Code::BatchRejected.as_str().as_bytes())
            .text("narrative", Code::BatchRejected.narrative().as_bytes())
            .finish(),
    );
    let y = layout::get("Y").blank().number("count", w.details as u64).finish();
    w.record(&y);
    w.trailer(header, date);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(lines: &[&str]) -> RawBatch {
        RawBatch::from_lines(lines.iter().map(|l| l.as_bytes()))
    }

    fn pad(s: &str) -> String {
        format!("{s:<80}")
    }

    fn gt_batch() -> Vec<String> {
        vec![
            pad("A1001AU1PWAU01031526     GT"),
            pad("B  2704AU1GT"),
            pad("G1XAU9AU12345B"),
            pad("Y  2704AU1GT00001"),
            pad("Z1001AU1      031526"),
        ]
    }

    #[test]
    fn clean_envelope() {
        let lines = gt_batch();
        let env = frame(
            &raw(&lines.iter().map(String::as_str).collect::<Vec<_>>()),
            Some(Channel::Ecert),
        );
        assert_eq!(env.problems, vec![]);
        assert_eq!(env.blocks.len(), 1);
        assert_eq!(env.blocks[0].details(), 2..3);
        assert_eq!(env.header.app, Some(App::Gt));
    }

    #[test]
    fn wrong_channel_is_x07() {
        let lines = gt_batch();
        let env = frame(
            &raw(&lines.iter().map(String::as_str).collect::<Vec<_>>()),
            Some(Channel::Abi),
        );
        assert_eq!(env.problems.len(), 1);
        assert_eq!((env.problems[0].code, env.problems[0].column), (Code::X07, 26));
    }

    #[test]
    fn count_and_trailer_mismatch() {
        let mut lines = gt_batch();
        lines[3] = pad("Y  2704AU2GT00002");
        lines[4] = pad("Z1002AU1      031526");
        let env = frame(&raw(&lines.iter().map(String::as_str).collect::<Vec<_>>()), None);
        let got: Vec<_> = env.problems.iter().map(|p| (p.record, p.column, p.code)).collect();
        assert_eq!(got, vec![(4, 8, Code::X04), (4, 13, Code::X05), (5, 2, Code::X04)]);
    }
}
