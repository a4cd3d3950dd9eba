//! The audit log: every statement of every role, allowed or refused, in an
//! append-only, hash-chained, fsynced log in the state folder.
//!
//! Records are JSON lines in segments `audit-NNNNNN.jsonl`; each carries the
//! hash of the one before, so an edit breaks the chain. `HEAD` holds the
//! sequence number and hash of the newest record, so cutting records off the
//! end is detected too. A record torn by a crash is cut off when the log is
//! next opened. A full segment is closed and the next one started under the
//! same lock as an append, so rotation never stalls queries.
//!
//! Logins, failed and successful, are records too ([`Event::Login`]). A
//! chain verifies only against itself: whoever can write the folder can
//! rewrite every record and hash. [`checkpoint`] anchors it outside: a
//! signed statement of the head, kept elsewhere, that a rewritten log no
//! longer matches.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

pub mod checkpoint;

/// The hash before the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Size at which a segment is closed.
const SEGMENT_BYTES: u64 = 64 << 20;

/// What happened to a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Ran to completion; its rows were returned.
    Allowed,
    /// Refused by the privacy layer.
    Refused,
    /// Failed (syntax, planning or execution error).
    Error,
    /// Stopped before completion (cancelled, or the client went away).
    Cancelled,
}

/// What a record is about, when not a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A login: `allowed`, or `refused` with the reason as the rule.
    Login,
}

/// One audited statement or login.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// UTC time, RFC 3339.
    pub time: String,
    pub user: String,
    pub role: String,
    /// The statement as parsed and printed back (normalized whitespace and case).
    pub sql: String,
    pub decision: Decision,
    /// The privacy rule that refused it, or the error class.
    pub rule: Option<String>,
    pub rows: Option<u64>,
    pub suppressed_cells: u64,
    /// Set for records that are not statements (absent from older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// The client's address, for logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Hash of the previous record.
    pub prev: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    record: Record,
    hash: String,
}

#[derive(Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// A statement to log, before it gets its place in the chain.
#[derive(Debug, Clone)]
pub struct Entry {
    pub user: String,
    pub role: String,
    pub sql: String,
    pub decision: Decision,
    pub rule: Option<String>,
    pub rows: Option<u64>,
    pub suppressed_cells: u64,
    pub event: Option<Event>,
    pub address: Option<String>,
}

impl Entry {
    /// A statement's entry.
    pub fn statement(
        user: &str,
        role: &str,
        sql: &str,
        decision: Decision,
        rule: Option<String>,
    ) -> Entry {
        Entry {
            user: user.to_owned(),
            role: role.to_owned(),
            sql: sql.to_owned(),
            decision,
            rule,
            rows: None,
            suppressed_cells: 0,
            event: None,
            address: None,
        }
    }

    /// A login's entry: `refused` gives the reason it was refused (never the password).
    pub fn login(user: &str, role: Option<&str>, address: &str, refused: Option<&str>) -> Entry {
        Entry {
            user: user.to_owned(),
            role: role.unwrap_or_default().to_owned(),
            sql: String::new(),
            decision: if refused.is_some() {
                Decision::Refused
            } else {
                Decision::Allowed
            },
            rule: refused.map(str::to_owned),
            rows: None,
            suppressed_cells: 0,
            event: Some(Event::Login),
            address: Some(address.to_owned()),
        }
    }
}

/// The open log. Appends from several processes (a server and `tsunagu sql`
/// on the same store) are serialized with a lock file. Appends of one
/// process made at the same time are written together with one `fsync`
/// (group commit): each caller still returns only once its record is
/// durable. The chain's tail is remembered between writes and checked
/// against the files (head, segment length, no newer segment) under the
/// lock, so a record another process appended is never missed.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    lock: Mutex<File>,
    /// Entries waiting to be written, and the outcome of written ones.
    queue: Mutex<Queue>,
    written: Condvar,
    /// Where the chain ended after this process's last write.
    tail: Mutex<Option<Tail>>,
}

/// A batch being written: when it ends, however it ends (a panic too), its
/// callers learn the outcome and the next caller may write.
struct Writing<'a> {
    log: &'a AuditLog,
    tickets: Vec<u64>,
    outcome: Option<std::result::Result<Vec<u64>, String>>,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut queue = self.log.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.writing = false;
        for (i, t) in self.tickets.iter().enumerate() {
            let done = match &self.outcome {
                Some(Ok(seqs)) => seqs
                    .get(i)
                    .copied()
                    .ok_or_else(|| "the audit record was not written".to_string()),
                Some(Err(e)) => Err(e.clone()),
                None => Err("writing the audit log failed".into()),
            };
            queue.done.insert(*t, done);
        }
        self.log.written.notify_all();
    }
}

#[derive(Debug, Default)]
struct Queue {
    next: u64,
    waiting: Vec<(u64, Entry)>,
    /// Sequence number (or error) of each written entry, by ticket.
    done: std::collections::HashMap<u64, std::result::Result<u64, String>>,
    /// A caller is writing a batch.
    writing: bool,
}

/// The end of the chain as last written: the segment, its length, the last
/// record's sequence number and hash.
#[derive(Debug, Clone, PartialEq)]
struct Tail {
    segment: u64,
    size: u64,
    seq: u64,
    hash: String,
}

/// Longest SQL text kept in a record (longer text is cut, with a marker).
const MAX_SQL: usize = 64 * 1024;

fn hash_of(record: &Record) -> String {
    let body = serde_json::to_vec(record).unwrap_or_default();
    let digest = Sha256::digest(&body);
    let mut hex = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("audit-{n:06}.jsonl"))
}

fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Audit(format!("{}: {e}", path.display()))
}

/// Segment numbers present in the folder, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir, e)),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("audit-")
            .and_then(|s| s.strip_suffix(".jsonl"))
            .and_then(|s| s.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A segment's complete records (parsed, and as written), the byte length
/// they span, and whether a torn last line follows them.
type Segment = (Vec<(Line, String)>, u64, bool);

/// The complete records of a segment and the byte length they span; a torn
/// last line (no newline, or not a record) is not counted.
fn read_segment(path: &Path) -> Result<Segment> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
    let mut good = 0u64;
    let mut torn = false;
    loop {
        let mut buf = String::new();
        let n = reader.read_line(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        if !buf.ends_with('\n') {
            torn = true;
            break;
        }
        match serde_json::from_str::<Line>(buf.trim_end()) {
            Ok(l) => {
                good += n as u64;
                lines.push((l, buf));
            }
            Err(_) => {
                // A bad line followed by nothing is a torn write; anywhere else it is an edit.
                let mut rest = String::new();
                let more = reader.read_line(&mut rest).map_err(|e| io(path, e))?;
                if more == 0 {
                    torn = true;
                    break;
                }
                return Err(EngineError::Audit(format!(
                    "{}: record after seq {} is not a valid record",
                    path.display(),
                    lines
                        .last()
                        .map(|(l, _): &(Line, String)| l.record.seq)
                        .unwrap_or(0)
                )));
            }
        }
    }
    Ok((lines, good, torn))
}

/// The last complete line of a file and the length up to its end; cuts off
/// a line torn by a crash first.
fn tail_of(path: &Path) -> Result<(Option<Line>, u64)> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, 0)),
        Err(e) => return Err(io(path, e)),
    };
    let len = file.metadata().map_err(|e| io(path, e))?.len();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    // Read backwards until the buffer holds a whole last line.
    loop {
        let step = 8192.min(start);
        start -= step;
        let mut chunk = vec![0u8; step as usize];
        file.seek(SeekFrom::Start(start)).map_err(|e| io(path, e))?;
        std::io::Read::read_exact(&mut file, &mut chunk).map_err(|e| io(path, e))?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                break;
            }
            continue;
        };
        if let Some(begin) = buf[..end].iter().rposition(|&b| b == b'\n') {
            buf = buf[begin + 1..].to_vec();
            start += begin as u64 + 1;
            break;
        }
        if start == 0 {
            break;
        }
    }
    let end = buf.iter().rposition(|&b| b == b'\n');
    let complete = match end {
        Some(e) => start + e as u64 + 1,
        None => start,
    };
    if complete < len {
        file.set_len(complete).map_err(|e| io(path, e))?;
        file.sync_all().map_err(|e| io(path, e))?;
        log::warn!(
            "audit log: removed a record torn by a crash from {}",
            path.display()
        );
    }
    let Some(e) = end else {
        return Ok((None, complete));
    };
    let text = String::from_utf8_lossy(&buf[..e]);
    let line = serde_json::from_str::<Line>(text.trim()).map_err(|_| {
        EngineError::Audit(format!("{}: the last record is not valid", path.display()))
    })?;
    Ok((Some(line), complete))
}

impl AuditLog {
    /// Opens (or starts) the log in `dir`.
    pub fn open(dir: &Path) -> Result<AuditLog> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        Ok(AuditLog {
            dir: dir.to_owned(),
            lock: Mutex::new(lock),
            queue: Mutex::default(),
            written: Condvar::new(),
            tail: Mutex::default(),
        })
    }

    /// The folder holding the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record and makes it durable before returning.
    pub fn append(&self, entry: Entry) -> Result<u64> {
        let relock = |p: std::sync::PoisonError<_>| p.into_inner();
        let mut queue = self.queue.lock().unwrap_or_else(relock);
        let ticket = queue.next;
        queue.next += 1;
        queue.waiting.push((ticket, entry));
        // Wait while another caller writes; it may take this entry along.
        loop {
            if let Some(done) = queue.done.remove(&ticket) {
                return done.map_err(EngineError::Audit);
            }
            if !queue.writing {
                break;
            }
            queue = self.written.wait(queue).unwrap_or_else(relock);
        }
        queue.writing = true;
        let batch = std::mem::take(&mut queue.waiting);
        drop(queue);
        let mut writing = Writing {
            log: self,
            tickets: batch.iter().map(|(t, _)| *t).collect(),
            outcome: None,
        };
        writing.outcome = Some(
            self.write_batch(batch.into_iter().map(|(_, e)| e).collect())
                .map_err(|e| e.to_string()),
        );
        drop(writing);
        let mut queue = self.queue.lock().unwrap_or_else(relock);
        queue
            .done
            .remove(&ticket)
            .unwrap_or_else(|| Err("the audit record was not written".into()))
            .map_err(EngineError::Audit)
    }

    /// Writes entries as consecutive records under the lock file, with one
    /// `fsync` per segment written; returns their sequence numbers.
    fn write_batch(&self, entries: Vec<Entry>) -> Result<Vec<u64>> {
        let lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        lock.lock().map_err(|e| io(&self.dir.join("LOCK"), e))?;
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.write_locked(&mut tail, entries);
        if result.is_err() {
            // What reached the files is unknown: read the tail again next time.
            *tail = None;
        }
        let _ = lock.unlock();
        result
    }

    /// The end of the chain: the remembered one if the files still end
    /// there, else read from the files (cutting a torn record off).
    fn current_tail(&self, remembered: Option<Tail>) -> Result<Tail> {
        if let Some(t) = remembered {
            let head = std::fs::read(self.dir.join("HEAD"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Head>(&b).ok());
            let size = std::fs::metadata(segment_path(&self.dir, t.segment)).map(|m| m.len());
            if head.is_some_and(|h| h.seq == t.seq && h.hash == t.hash)
                && size.is_ok_and(|s| s == t.size)
                && !segment_path(&self.dir, t.segment + 1).exists()
            {
                return Ok(t);
            }
        }
        let segs = segments(&self.dir)?;
        let segment = segs.last().copied().unwrap_or(1);
        let (mut seq, mut hash) = (0, GENESIS.to_owned());
        let mut size = 0;
        for &n in segs.iter().rev() {
            let (last, len) = tail_of(&segment_path(&self.dir, n))?;
            if n == segment {
                size = len;
            }
            if let Some(l) = last {
                seq = l.record.seq;
                hash = l.hash;
                break;
            }
        }
        Ok(Tail {
            segment,
            size,
            seq,
            hash,
        })
    }

    fn write_locked(&self, remembered: &mut Option<Tail>, entries: Vec<Entry>) -> Result<Vec<u64>> {
        let mut tail = self.current_tail(remembered.take())?;
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // Lines to append, per segment, in order.
        let mut pending: Vec<(u64, String)> = Vec::new();
        let mut seqs = Vec::with_capacity(entries.len());
        for entry in entries {
            if tail.size >= SEGMENT_BYTES {
                tail.segment += 1;
                tail.size = 0;
            }
            let mut sql = entry.sql;
            if sql.len() > MAX_SQL {
                let mut cut = MAX_SQL;
                while !sql.is_char_boundary(cut) {
                    cut -= 1;
                }
                sql.truncate(cut);
                sql.push_str(" …[cut]");
            }
            let record = Record {
                seq: tail.seq + 1,
                time: time.clone(),
                user: entry.user,
                role: entry.role,
                sql,
                decision: entry.decision,
                rule: entry.rule,
                rows: entry.rows,
                suppressed_cells: entry.suppressed_cells,
                event: entry.event,
                address: entry.address,
                prev: tail.hash.clone(),
            };
            let hash = hash_of(&record);
            tail.seq = record.seq;
            let mut line = serde_json::to_string(&Line {
                record,
                hash: hash.clone(),
            })
            .map_err(|e| EngineError::Audit(e.to_string()))?;
            line.push('\n');
            tail.hash = hash;
            tail.size += line.len() as u64;
            seqs.push(tail.seq);
            match pending.last_mut() {
                Some((segment, text)) if *segment == tail.segment => text.push_str(&line),
                _ => pending.push((tail.segment, line)),
            }
        }
        for (segment, text) in pending {
            let path = segment_path(&self.dir, segment);
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            file.write_all(text.as_bytes()).map_err(|e| io(&path, e))?;
            file.sync_data().map_err(|e| io(&path, e))?;
        }
        let head = serde_json::to_vec(&Head {
            seq: tail.seq,
            hash: tail.hash.clone(),
        })
        .map_err(|e| EngineError::Audit(e.to_string()))?;
        let tmp = self.dir.join("HEAD.tmp");
        std::fs::write(&tmp, head).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, self.dir.join("HEAD")).map_err(|e| io(&tmp, e))?;
        *remembered = Some(tail);
        Ok(seqs)
    }
}

/// The outcome of verifying a log.
#[derive(Debug)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Segments read.
    pub segments: usize,
    /// A torn last record (a crash while writing) that the next start removes.
    pub torn_tail: bool,
    /// Sequence number and hash of the last record (`0` and the genesis hash when empty).
    pub last: (u64, String),
}

/// Checks every record's hash and link, the sequence, and the head.
pub fn verify(dir: &Path) -> Result<Verified> {
    verify_through(dir, None).map(|(v, _)| v)
}

/// Verifies the log as [`verify`] does, and returns the hash of record `at`
/// (`None` when the log does not reach it).
pub fn verify_through(dir: &Path, at: Option<u64>) -> Result<(Verified, Option<String>)> {
    let mut hash_at = (at == Some(0)).then(|| GENESIS.to_owned());
    let fail = |m: String| Err(EngineError::Audit(m));
    let segs = segments(dir)?;
    let mut prev = GENESIS.to_owned();
    let mut seq = 0u64;
    let mut hashes_at_head = None;
    let head: Option<Head> = match std::fs::read(dir.join("HEAD")) {
        Ok(b) => Some(
            serde_json::from_slice(&b)
                .map_err(|e| EngineError::Audit(format!("HEAD is not valid: {e}")))?,
        ),
        Err(_) => None,
    };
    let mut torn_tail = false;
    for (i, &n) in segs.iter().enumerate() {
        let path = segment_path(dir, n);
        let (lines, _, torn) = read_segment(&path)?;
        if torn {
            if i + 1 != segs.len() {
                return fail(format!("{}: a record is cut short", path.display()));
            }
            torn_tail = true;
        }
        for (line, _) in lines {
            let r = &line.record;
            if r.seq != seq + 1 {
                return fail(format!(
                    "{}: expected record {}, found {} (records removed or reordered)",
                    path.display(),
                    seq + 1,
                    r.seq
                ));
            }
            if r.prev != prev {
                return fail(format!(
                    "{}: record {} does not follow the record before it (chain broken)",
                    path.display(),
                    r.seq
                ));
            }
            if hash_of(r) != line.hash {
                return fail(format!(
                    "{}: record {} was altered (hash mismatch)",
                    path.display(),
                    r.seq
                ));
            }
            seq = r.seq;
            prev = line.hash.clone();
            if at == Some(seq) {
                hash_at = Some(prev.clone());
            }
            if head.as_ref().is_some_and(|h| h.seq == seq) {
                hashes_at_head = Some(prev.clone());
            }
        }
    }
    if let Some(h) = head {
        if h.seq > seq {
            return fail(format!(
                "the log ends at record {seq} but its head says {}: records were cut off",
                h.seq
            ));
        }
        if hashes_at_head.as_deref() != Some(h.hash.as_str()) {
            return fail(format!("record {} does not match the head", h.seq));
        }
    } else if seq > 0 {
        return fail("the log has records but no HEAD".into());
    }
    Ok((
        Verified {
            records: seq,
            segments: segs.len(),
            torn_tail,
            last: (seq, prev),
        },
        hash_at,
    ))
}

/// Reads all records in order (for inspection and tests).
pub fn records(dir: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for n in segments(dir)? {
        let (lines, _, _) = read_segment(&segment_path(dir, n))?;
        out.extend(lines.into_iter().map(|(l, _)| l.record));
    }
    Ok(out)
}

/// Where a statement's end is logged (a session: its user and role).
pub(crate) trait StatementEnd: Send + Sync {
    /// Logs that `sql` ended with `decision`, `rows` returned and `cells`
    /// withheld.
    fn end(
        &self,
        sql: &str,
        decision: Decision,
        rows: u64,
        cells: u64,
        rule: Option<String>,
    ) -> Result<()>;
}

/// A result stream that logs its statement when it ends: rows returned and
/// cells the privacy layer withheld.
pub struct Audited {
    inner: datafusion::execution::SendableRecordBatchStream,
    sink: Option<Box<dyn StatementEnd>>,
    sql: String,
    release: Option<std::sync::Arc<crate::privacy::ReleaseStats>>,
    /// With `release`, its count of withheld cells when the statement
    /// started (a prepared statement runs many times); without, the cells
    /// withheld from a kept answer.
    cells: u64,
    rows: u64,
}

impl Audited {
    pub(crate) fn new(
        inner: datafusion::execution::SendableRecordBatchStream,
        sink: Box<dyn StatementEnd>,
        sql: String,
        release: Option<std::sync::Arc<crate::privacy::ReleaseStats>>,
    ) -> Self {
        Audited {
            inner,
            sink: Some(sink),
            sql,
            cells: release.as_ref().map_or(0, |r| r.cells()),
            release,
            rows: 0,
        }
    }

    /// A kept answer's stream, whose release withheld `cells` cells.
    pub(crate) fn known(
        inner: datafusion::execution::SendableRecordBatchStream,
        sink: Box<dyn StatementEnd>,
        sql: String,
        cells: u64,
    ) -> Self {
        Audited {
            inner,
            sink: Some(sink),
            sql,
            release: None,
            cells,
            rows: 0,
        }
    }

    fn finish(&mut self, decision: Decision, rule: Option<String>) -> Result<()> {
        match self.sink.take() {
            Some(s) => {
                let cells = match &self.release {
                    Some(r) => r.cells().saturating_sub(self.cells),
                    None => self.cells,
                };
                s.end(&self.sql, decision, self.rows, cells, rule)
            }
            None => Ok(()),
        }
    }
}

impl futures::Stream for Audited {
    type Item = datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                this.rows += batch.num_rows() as u64;
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                let class = crate::error::ErrorKind::of(&e).audit_class();
                if let Err(a) = this.finish(Decision::Error, Some(class.into())) {
                    log::error!("{a}");
                }
                if this.release.is_some() && class != "resources" {
                    // An analyst learns nothing from why a query failed on the data.
                    log::debug!("a statement failed on the data: {e}");
                    return Poll::Ready(Some(Err(datafusion::error::DataFusionError::Execution(
                        "the query failed while reading the data (details are withheld from analysts)".into(),
                    ))));
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => match this.finish(Decision::Allowed, None) {
                Ok(()) => Poll::Ready(None),
                Err(a) => Poll::Ready(Some(Err(datafusion::error::DataFusionError::External(
                    Box::new(a),
                )))),
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl datafusion::physical_plan::RecordBatchStream for Audited {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if self.sink.is_some()
            && let Err(e) = self.finish(Decision::Cancelled, None)
        {
            log::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sql: &str) -> Entry {
        Entry {
            rows: Some(1),
            ..Entry::statement("ana", "analyst", sql, Decision::Allowed, None)
        }
    }

    #[test]
    fn chain_verifies_and_detects_edits_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..5 {
            log.append(entry(&format!("SELECT {i}"))).unwrap();
        }
        drop(log);
        assert_eq!(verify(dir.path()).unwrap().records, 5);
        let path = segment_path(dir.path(), 1);
        let text = std::fs::read_to_string(&path).unwrap();

        std::fs::write(&path, text.replace("SELECT 2", "SELECT 9")).unwrap();
        let e = verify(dir.path()).unwrap_err().to_string();
        assert!(e.contains("record 3 was altered"), "{e}");

        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n", lines[..4].join("\n"))).unwrap();
        let e = verify(dir.path()).unwrap_err().to_string();
        assert!(e.contains("cut off"), "{e}");

        let mut without = lines.clone();
        without.remove(1);
        std::fs::write(&path, format!("{}\n", without.join("\n"))).unwrap();
        assert!(verify(dir.path()).is_err());

        std::fs::write(&path, &text).unwrap();
        assert_eq!(verify(dir.path()).unwrap().records, 5);
    }

    #[test]
    fn appends_at_the_same_time_form_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    (0..40)
                        .map(|i| log.append(entry(&format!("SELECT {t}, {i}"))).unwrap())
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=640).collect::<Vec<u64>>());
        assert_eq!(verify(dir.path()).unwrap().records, 640);
        let all = records(dir.path()).unwrap();
        for t in 0..16 {
            // Each thread's records are in the order it appended them.
            let mine: Vec<&str> = all
                .iter()
                .map(|r| r.sql.as_str())
                .filter(|s| s.starts_with(&format!("SELECT {t}, ")))
                .collect();
            let expected: Vec<String> = (0..40).map(|i| format!("SELECT {t}, {i}")).collect();
            assert_eq!(mine, expected);
        }
    }

    #[test]
    fn two_writers_on_one_folder_keep_one_chain() {
        // Two processes (a server and `tsunagu sql`) each remember their tail.
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open(dir.path()).unwrap();
        let b = AuditLog::open(dir.path()).unwrap();
        for i in 0..6 {
            let log = if i % 3 == 0 { &b } else { &a };
            assert_eq!(log.append(entry(&format!("SELECT {i}"))).unwrap(), i + 1);
        }
        // A record torn by a writer that crashed is cut before the next one.
        let path = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":7,\"ti").unwrap();
        drop(f);
        assert_eq!(a.append(entry("SELECT 6")).unwrap(), 7);
        let v = verify(dir.path()).unwrap();
        assert_eq!((v.records, v.torn_tail), (7, false));
    }

    #[test]
    fn torn_record_is_cut_on_open_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.append(entry("SELECT 1")).unwrap();
        drop(log);
        let path = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"time\":\"20").unwrap();
        drop(f);
        assert!(verify(dir.path()).unwrap().torn_tail);
        let log = AuditLog::open(dir.path()).unwrap();
        log.append(entry("SELECT 2")).unwrap();
        drop(log);
        let v = verify(dir.path()).unwrap();
        assert_eq!((v.records, v.torn_tail), (2, false));
        let all = records(dir.path()).unwrap();
        assert_eq!(all[1].sql, "SELECT 2");
    }
}
