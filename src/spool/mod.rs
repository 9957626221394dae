//! The on-disk spool: append-only segment files of checksummed records and
//! one cursor file per reader. The pusher spools one record per pulled
//! snapshot (one cursor per sink); a recorder can keep its history here.
//!
//! Every record is written (and fsync'd) before any reader sees it, so a
//! crash or `kill -9` at any moment loses nothing that was appended; readers
//! that keep up read it back from the in-memory queue, never from disk.
//!
//! Record: `[len u32][crc32 u32][seq u64][unix_ms u64][payload; len]`, little
//! endian, the CRC over seq, time and payload. A record that is short or
//! fails its CRC ends the segment's readable part (a crash mid-write): the
//! rest of that segment is skipped with a warning and appends go to a new one.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const HEADER: usize = 24;
/// Largest record: bigger ones are refused on append, and a length over it
/// when reading back means corruption. (Snapshots are capped at 32 MiB.)
pub const MAX_RECORD: usize = 64 << 20;
/// Records kept in memory for sinks that keep up.
const QUEUE_RECORDS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub unix_ms: u64,
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    id: u64,
    path: PathBuf,
    entries: Vec<Entry>,
    bytes: u64,
}

/// Records dropped by a limit, for the sinks that had not delivered them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub spool_full: u64,
    pub too_old: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    max_age_ms: u64,
    segment_target: u64,
    segments: Vec<Segment>,
    /// Open for appends; always the last segment, created after open.
    writer: Option<File>,
    next_seq: u64,
    queue: VecDeque<(u64, Arc<[u8]>)>,
}

impl Spool {
    /// Opens (creating) the spool in `dir` and indexes what is there.
    pub fn open(dir: &Path, max_bytes: u64, max_age_ms: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("segment-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segments = Vec::new();
        for id in ids {
            let path = dir.join(segment_name(id));
            match scan(&path, id) {
                Ok(seg) if seg.entries.is_empty() => {
                    let _ = fs::remove_file(&path);
                }
                Ok(seg) => segments.push(seg),
                Err(e) => tracing::warn!("spool: cannot read {}: {e}; skipping it", path.display()),
            }
        }
        let last_seq = segments
            .iter()
            .flat_map(|s| s.entries.last())
            .map(|e| e.seq + 1)
            .max()
            .unwrap_or(0);
        let cursors = read_cursors(dir)
            .into_iter()
            .map(|c| c + 1)
            .max()
            .unwrap_or(0);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            max_age_ms,
            // Several segments fit under the cap, so dropping the oldest
            // frees space in small steps.
            segment_target: (max_bytes / 8).clamp(64 << 10, 8 << 20),
            segments,
            writer: None,
            next_seq: last_seq.max(cursors),
            queue: VecDeque::new(),
        })
    }

    /// Every record, oldest first (a recorder's window).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.segments.iter().flat_map(|s| s.entries.iter())
    }

    pub fn newest_ms(&self) -> Option<u64> {
        self.segments.last()?.entries.last().map(|e| e.unix_ms)
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn oldest_ms(&self) -> Option<u64> {
        self.segments.first()?.entries.first().map(|e| e.unix_ms)
    }

    /// The sequence number the next append gets (a new sink starts here).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes a record, fsyncs it and returns its sequence number.
    pub fn append(&mut self, unix_ms: u64, payload: &[u8]) -> io::Result<u64> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a record of {} bytes is over the {MAX_RECORD}-byte cap",
                    payload.len()
                ),
            ));
        }
        let needs_new = match (&self.writer, self.segments.last()) {
            (Some(_), Some(last)) => last.bytes >= self.segment_target,
            _ => true,
        };
        if needs_new {
            self.roll()?;
        }
        let seq = self.next_seq;
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        let mut crc = flate2::Crc::new();
        crc.update(&seq.to_le_bytes());
        crc.update(&unix_ms.to_le_bytes());
        crc.update(payload);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc.sum().to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&unix_ms.to_le_bytes());
        rec.extend_from_slice(payload);
        let seg = self.segments.last_mut().expect("rolled above");
        let w = self.writer.as_mut().expect("rolled above");
        if let Err(e) = w.write_all(&rec).and_then(|()| w.sync_data()) {
            // Part of the record may be in the file: appends after it would
            // sit at offsets the index does not know. Close the segment (a
            // scan stops at the torn record) and start a new one next time.
            self.writer = None;
            return Err(e);
        }
        seg.entries.push(Entry {
            seq,
            unix_ms,
            segment: seg.id,
            offset: seg.bytes,
            len: payload.len() as u32,
        });
        seg.bytes += rec.len() as u64;
        self.next_seq += 1;
        self.queue.push_back((seq, Arc::from(payload)));
        if self.queue.len() > QUEUE_RECORDS {
            self.queue.pop_front();
        }
        Ok(seq)
    }

    fn roll(&mut self) -> io::Result<()> {
        let id = self.segments.last().map_or(0, |s| s.id + 1);
        let path = self.dir.join(segment_name(id));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        // The new name must survive a crash too.
        File::open(&self.dir)?.sync_all()?;
        self.segments.push(Segment {
            id,
            path,
            entries: Vec::new(),
            bytes: 0,
        });
        self.writer = Some(file);
        Ok(())
    }

    /// The first record after `delivered` (a sink's cursor; `None` before
    /// anything was delivered).
    pub fn next_after(&self, delivered: Option<u64>) -> Option<Entry> {
        let want = delivered.map_or(0, |d| d + 1);
        self.segments
            .iter()
            .filter(|s| s.entries.last().is_some_and(|e| e.seq >= want))
            .flat_map(|s| s.entries.iter())
            .find(|e| e.seq >= want)
            .copied()
    }

    /// Records after `delivered`: a sink's backlog.
    pub fn pending(&self, delivered: Option<u64>) -> u64 {
        let want = delivered.map_or(0, |d| d + 1);
        self.segments
            .iter()
            .flat_map(|s| s.entries.iter())
            .filter(|e| e.seq >= want)
            .count() as u64
    }

    /// The payload of `e`: from memory when recent, else from disk, checked.
    pub fn read(&self, e: &Entry) -> io::Result<Arc<[u8]>> {
        if let Some((_, p)) = self.queue.iter().find(|(s, _)| *s == e.seq) {
            return Ok(Arc::clone(p));
        }
        let seg = self
            .segments
            .iter()
            .find(|s| s.id == e.segment)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "segment was dropped"))?;
        let file = File::open(&seg.path)?;
        let mut buf = vec![0u8; e.len as usize];
        file.read_exact_at(&mut buf, e.offset + HEADER as u64)?;
        let mut crc = flate2::Crc::new();
        crc.update(&e.seq.to_le_bytes());
        crc.update(&e.unix_ms.to_le_bytes());
        crc.update(&buf);
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, e.offset)?;
        if crc.sum() != u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "checksum mismatch",
            ));
        }
        Ok(Arc::from(buf))
    }

    /// Deletes segments every sink has delivered, then enforces `max_age`
    /// and `max_bytes` by dropping the oldest segments. Returns, per sink
    /// (in `cursors` order), the records dropped that it had not delivered.
    pub fn collect(&mut self, now_ms: u64, cursors: &[Option<u64>]) -> Vec<Dropped> {
        let mut dropped = vec![Dropped::default(); cursors.len()];
        let min = cursors.iter().map(|c| c.map_or(0, |c| c + 1)).min();
        while self.segments.len() > 1 || self.writer.is_none() {
            let Some(first) = self.segments.first() else {
                break;
            };
            let newest = first.entries.last().map_or(0, |e| e.unix_ms);
            let last_seq = first.entries.last().map_or(0, |e| e.seq);
            let delivered = min.is_some_and(|m| last_seq < m);
            let too_old = now_ms.saturating_sub(newest) > self.max_age_ms;
            let too_big = self.bytes() > self.max_bytes;
            if !(delivered || too_old || too_big) {
                break;
            }
            if !delivered {
                for (d, c) in dropped.iter_mut().zip(cursors) {
                    let want = c.map_or(0, |c| c + 1);
                    let n = first.entries.iter().filter(|e| e.seq >= want).count() as u64;
                    if too_old {
                        d.too_old += n;
                    } else {
                        d.spool_full += n;
                    }
                }
            }
            let seg = self.segments.remove(0);
            if let Err(e) = fs::remove_file(&seg.path) {
                tracing::warn!("spool: cannot delete {}: {e}", seg.path.display());
            }
            if self.segments.is_empty() {
                self.writer = None;
            }
        }
        dropped
    }

    pub fn cursor_path(&self, sink_id: &str) -> PathBuf {
        self.dir.join(format!("cursor-{sink_id}"))
    }
}

fn segment_name(id: u64) -> String {
    format!("segment-{id:020}.log")
}

/// Reads a segment's records up to the first bad one.
fn scan(path: &Path, id: u64) -> io::Result<Segment> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut entries = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let rest = &data[off..];
        let bad = |why: &str| {
            tracing::warn!(
                "spool: {} is corrupt or truncated at byte {off} ({why}); skipping the rest of it",
                path.display()
            );
        };
        if rest.len() < HEADER {
            bad("short header");
            break;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4")) as usize;
        let sum = u32::from_le_bytes(rest[4..8].try_into().expect("4"));
        if len > MAX_RECORD || rest.len() < HEADER + len {
            bad("short record");
            break;
        }
        let mut crc = flate2::Crc::new();
        crc.update(&rest[8..HEADER + len]);
        if crc.sum() != sum {
            bad("checksum mismatch");
            break;
        }
        entries.push(Entry {
            seq: u64::from_le_bytes(rest[8..16].try_into().expect("8")),
            unix_ms: u64::from_le_bytes(rest[16..24].try_into().expect("8")),
            segment: id,
            offset: off as u64,
            len: len as u32,
        });
        off += HEADER + len;
    }
    Ok(Segment {
        id,
        path: path.to_path_buf(),
        entries,
        bytes: off as u64,
    })
}

fn read_cursors(dir: &Path) -> Vec<u64> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("cursor-"))
        .filter_map(|e| fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect()
}

/// Replaces the cursor file atomically (write, fsync, rename).
pub fn store_cursor(path: &Path, seq: u64) -> io::Result<()> {
    write_atomically(path, seq.to_string().as_bytes())
}

/// Where a sink starts: `Some(seq)` after `seq`, `None` from the first
/// entry. Stored when a sink first starts, so a restart or reload before
/// its first delivery starts it at the same place.
pub fn store_start(path: &Path, start: Option<u64>) -> io::Result<()> {
    match start {
        Some(seq) => store_cursor(path, seq),
        None => write_atomically(path, NONE_DELIVERED),
    }
}

/// The stored start or cursor: `None` when the sink has no file (a new
/// sink), `Some(None)` when it delivered nothing since it was added.
pub fn load_start(path: &Path) -> Option<Option<u64>> {
    let text = fs::read_to_string(path).ok()?;
    if text.trim().as_bytes() == NONE_DELIVERED {
        return Some(None);
    }
    text.trim().parse().ok().map(Some)
}

/// A cursor file's content for "nothing delivered yet" (not a number, so
/// `read_cursors` skips it).
const NONE_DELIVERED: &[u8] = b"none";

fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_data()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
