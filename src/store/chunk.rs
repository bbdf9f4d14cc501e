//! The compact form of a batch of log lines: one row of `log_chunks`.
//!
//! A batch is stored column by column (sequence numbers and times as deltas, stream and stage
//! as indexes into a small dictionary of the labels the batch uses, the texts' lengths, then
//! the texts), compressed with zstd. Every line keeps its sequence number, so readers page
//! through batches exactly as through plain rows. Labels are kept as the strings the store
//! wrote, so a batch read by a newer proxdeck (with more stages) means what it meant.
//!
//! Pure encoding and decoding: no SQL here ([`super::logs`] moves lines in and out).

use crate::domain::Stage;
use crate::protocol::LogStream;
use std::collections::HashMap;

/// The first byte of every batch: the layout below. A reader refuses other values.
const FORMAT: u8 = 1;
/// zstd's level: fast to write (a batch is folded inside an append's transaction), and logs
/// shrink well already.
const LEVEL: i32 = 3;

/// One plain row as `log_lines` holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLine {
    pub seq: i64,
    pub at: i64,
    pub stream: String,
    pub stage: Option<String>,
    pub text: String,
}

/// An encoded batch and what the `log_chunks` row says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub first_seq: i64,
    pub last_seq: i64,
    pub lines: usize,
    pub min_at: i64,
    pub max_at: i64,
    /// The texts' bytes (what the user would see), for reports of the space saved.
    pub raw_bytes: usize,
    pub data: Vec<u8>,
}

/// Encodes `lines` (in sequence order, at least one).
pub fn encode(lines: &[RawLine]) -> Result<Encoded, String> {
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Err("an empty batch".into());
    };
    let mut labels: Vec<&str> = Vec::new();
    let mut label_index: HashMap<&str, u64> = HashMap::new();
    let mut stream_ix = Vec::with_capacity(lines.len());
    let mut stage_ix = Vec::with_capacity(lines.len());
    for l in lines {
        let ix = match label_index.get(l.stream.as_str()) {
            Some(ix) => *ix,
            None => {
                labels.push(l.stream.as_str());
                let ix = labels.len() as u64 - 1;
                label_index.insert(l.stream.as_str(), ix);
                ix
            }
        };
        stream_ix.push(ix);
        let sx = match l.stage.as_deref() {
            None => 0,
            Some(s) => match label_index.get(s) {
                Some(ix) => ix + 1,
                None => {
                    labels.push(s);
                    let ix = labels.len() as u64 - 1;
                    label_index.insert(s, ix);
                    ix + 1
                }
            },
        };
        stage_ix.push(sx);
    }

    let text_bytes: usize = lines.iter().map(|l| l.text.len()).sum();
    let mut raw = Vec::with_capacity(text_bytes + lines.len() * 6 + 64);
    put_varint(&mut raw, lines.len() as u64);
    put_varint(&mut raw, labels.len() as u64);
    for l in &labels {
        put_varint(&mut raw, l.len() as u64);
        raw.extend_from_slice(l.as_bytes());
    }
    put_varint(&mut raw, zigzag(first.seq));
    for w in lines.windows(2) {
        let step = w[1].seq - w[0].seq;
        if step <= 0 {
            return Err(format!("sequence numbers out of order at {}", w[1].seq));
        }
        put_varint(&mut raw, step as u64);
    }
    put_varint(&mut raw, zigzag(first.at));
    for w in lines.windows(2) {
        put_varint(&mut raw, zigzag(w[1].at.wrapping_sub(w[0].at)));
    }
    for ix in &stream_ix {
        put_varint(&mut raw, *ix);
    }
    for ix in &stage_ix {
        put_varint(&mut raw, *ix);
    }
    for l in lines {
        put_varint(&mut raw, l.text.len() as u64);
    }
    for l in lines {
        raw.extend_from_slice(l.text.as_bytes());
    }
    // With zstd's checksum, a damaged batch is an error rather than different text.
    let packed = zstd::bulk::Compressor::new(LEVEL)
        .and_then(|mut c| {
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
            c.compress(&raw)
        })
        .map_err(|e| format!("compress a log batch: {e}"))?;
    let mut data = Vec::with_capacity(packed.len() + 11);
    data.push(FORMAT);
    put_varint(&mut data, raw.len() as u64);
    data.extend_from_slice(&packed);
    Ok(Encoded {
        first_seq: first.seq,
        last_seq: last.seq,
        lines: lines.len(),
        min_at: lines.iter().map(|l| l.at).min().unwrap_or(first.at),
        max_at: lines.iter().map(|l| l.at).max().unwrap_or(last.at),
        raw_bytes: text_bytes,
        data,
    })
}

/// A decoded batch, column by column; lines are materialized only when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub seqs: Vec<i64>,
    pub ats: Vec<i64>,
    streams: Vec<u32>,
    /// 0: no stage; else 1 + an index into `labels`.
    stages: Vec<u32>,
    /// Each label parsed as a stream and as a stage.
    label_streams: Vec<LogStream>,
    label_stages: Vec<Option<Stage>>,
    text: String,
    /// Where each line's text ends in `text`.
    ends: Vec<u32>,
}

impl Decoded {
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    pub fn text(&self, i: usize) -> &str {
        &self.text[self.start(i)..self.ends[i] as usize]
    }

    pub fn stream(&self, i: usize) -> LogStream {
        self.label_streams[self.streams[i] as usize]
    }

    pub fn stage(&self, i: usize) -> Option<Stage> {
        match self.stages[i] {
            0 => None,
            ix => self.label_stages[ix as usize - 1],
        }
    }

    /// The index of the first line whose sequence number is above `seq`.
    pub fn first_after(&self, seq: i64) -> usize {
        self.seqs.partition_point(|s| *s <= seq)
    }

    /// The number of lines whose sequence number is below `seq`.
    pub fn count_before(&self, seq: i64) -> usize {
        self.seqs.partition_point(|s| *s < seq)
    }

    /// Every line's text, ASCII-lowercased, in one string (for case-insensitive search; the
    /// same offsets as the texts).
    pub fn lowered_text(&self) -> String {
        self.text.to_ascii_lowercase()
    }

    /// Line `i` of a string made by [`Decoded::lowered_text`].
    pub fn slice<'a>(&self, lowered: &'a str, i: usize) -> &'a str {
        &lowered[self.start(i)..self.ends[i] as usize]
    }
}

/// Decodes a batch written by [`encode`]; a damaged one is an error naming the problem.
pub fn decode(data: &[u8]) -> Result<Decoded, String> {
    let (&format, rest) = data.split_first().ok_or("an empty batch")?;
    if format != FORMAT {
        return Err(format!(
            "log batch format {format} (this proxdeck reads {FORMAT}); upgrade proxdeck"
        ));
    }
    let mut r = Reader { buf: rest, pos: 0 };
    let raw_len = r.varint()? as usize;
    let raw = zstd::bulk::decompress(&rest[r.pos..], raw_len)
        .map_err(|e| format!("decompress a log batch: {e}"))?;
    if raw.len() != raw_len {
        return Err("a log batch is shorter than its header says".into());
    }
    let mut r = Reader { buf: &raw, pos: 0 };
    let n = r.varint()? as usize;
    if n == 0 || n > raw_len {
        return Err(format!("a log batch claims {n} lines"));
    }
    let label_count = r.varint()? as usize;
    let mut label_streams = Vec::with_capacity(label_count);
    let mut label_stages = Vec::with_capacity(label_count);
    for _ in 0..label_count {
        let len = r.varint()? as usize;
        let s = std::str::from_utf8(r.bytes(len)?).map_err(|e| format!("a label: {e}"))?;
        label_streams.push(LogStream::parse(s));
        label_stages.push(s.parse::<Stage>().ok());
    }
    let mut seqs = Vec::with_capacity(n);
    let mut seq = unzigzag(r.varint()?);
    seqs.push(seq);
    for _ in 1..n {
        seq += r.varint()? as i64;
        seqs.push(seq);
    }
    let mut ats = Vec::with_capacity(n);
    let mut at = unzigzag(r.varint()?);
    ats.push(at);
    for _ in 1..n {
        at = at.wrapping_add(unzigzag(r.varint()?));
        ats.push(at);
    }
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let ix = r.varint()? as usize;
        if ix >= label_count {
            return Err(format!("a stream label {ix} of {label_count}"));
        }
        streams.push(ix as u32);
    }
    let mut stages = Vec::with_capacity(n);
    for _ in 0..n {
        let ix = r.varint()? as usize;
        if ix > label_count {
            return Err(format!("a stage label {ix} of {label_count}"));
        }
        stages.push(ix as u32);
    }
    let mut ends = Vec::with_capacity(n);
    let mut end = 0usize;
    for _ in 0..n {
        end += r.varint()? as usize;
        ends.push(u32::try_from(end).map_err(|_| "a log batch over 4 GiB")?);
    }
    let text = std::str::from_utf8(r.bytes(end)?)
        .map_err(|e| format!("a log batch's text: {e}"))?
        .to_string();
    let decoded = Decoded {
        seqs,
        ats,
        streams,
        stages,
        label_streams,
        label_stages,
        text,
        ends,
    };
    // Every line must start and end on a character boundary.
    for i in 0..n {
        let (a, b) = (decoded.start(i), decoded.ends[i] as usize);
        if !decoded.text.is_char_boundary(a) || !decoded.text.is_char_boundary(b) {
            return Err(format!("line {i} of a log batch splits a character"));
        }
    }
    Ok(decoded)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("a log batch ends early")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a number in a log batch is too long".into())
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or("a log batch ends early")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(seq: i64, at: i64, stream: &str, stage: Option<&str>, text: &str) -> RawLine {
        RawLine {
            seq,
            at,
            stream: stream.into(),
            stage: stage.map(str::to_string),
            text: text.into(),
        }
    }

    #[test]
    fn a_batch_round_trips_every_field() {
        let lines = vec![
            raw(
                5,
                1_700_000_000_000,
                "out",
                Some("terraform-apply"),
                "Plan: 1 to add",
            ),
            raw(6, 1_700_000_000_000, "err", None, ""),
            // Gaps between sequence numbers (another deployment's lines), time going back.
            raw(
                90,
                1_699_999_999_000,
                "info",
                Some("provision"),
                "ünïcödé ✓",
            ),
            raw(
                91,
                1_700_000_500_000,
                "out",
                Some("a-stage-from-the-future"),
                "x",
            ),
        ];
        let e = encode(&lines).unwrap();
        assert_eq!((e.first_seq, e.last_seq, e.lines), (5, 91, 4));
        assert_eq!((e.min_at, e.max_at), (1_699_999_999_000, 1_700_000_500_000));
        let d = decode(&e.data).unwrap();
        assert_eq!(d.seqs, [5, 6, 90, 91]);
        assert_eq!(d.ats, lines.iter().map(|l| l.at).collect::<Vec<_>>());
        assert_eq!(d.text(0), "Plan: 1 to add");
        assert_eq!(d.text(1), "");
        assert_eq!(d.text(2), "ünïcödé ✓");
        assert_eq!(d.stream(1), LogStream::Stderr);
        assert_eq!(d.stream(2), LogStream::Info);
        assert_eq!(d.stage(0), Some(Stage::TerraformApply));
        assert_eq!(d.stage(1), None);
        // A label this proxdeck does not know reads as no stage, like a plain row would.
        assert_eq!(d.stage(3), None);
        assert_eq!(d.first_after(6), 2);
        assert_eq!(d.count_before(90), 2);
        let lowered = d.lowered_text();
        assert_eq!(d.slice(&lowered, 0), "plan: 1 to add");
    }

    #[test]
    fn repetitive_logs_shrink_far_below_their_text() {
        let lines: Vec<RawLine> = (0..4096)
            .map(|i| {
                raw(
                    i + 1,
                    1_700_000_000_000 + i,
                    "stdout",
                    Some("provision"),
                    &format!("Collecting package-{i} (from -r requirements.txt (line {i}))"),
                )
            })
            .collect();
        let e = encode(&lines).unwrap();
        assert!(
            e.data.len() * 4 < e.raw_bytes,
            "{} bytes for {} bytes of text",
            e.data.len(),
            e.raw_bytes
        );
        assert_eq!(decode(&e.data).unwrap().len(), 4096);
    }

    #[test]
    fn damaged_batches_are_errors_not_panics() {
        let e = encode(&[raw(1, 1, "stdout", None, "hello")]).unwrap();
        assert!(decode(&[]).is_err());
        let mut wrong_format = e.data.clone();
        wrong_format[0] = 9;
        assert!(decode(&wrong_format).unwrap_err().contains("upgrade"));
        for cut in 1..e.data.len() {
            assert!(decode(&e.data[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = e.data.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(decode(&flipped).is_err());
        assert!(encode(&[]).is_err());
        assert!(
            encode(&[
                raw(2, 1, "stdout", None, "a"),
                raw(1, 1, "stdout", None, "b")
            ])
            .is_err()
        );
    }
}
