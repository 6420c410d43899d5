//! The revocations' journal, `<session.state_dir>/revocations`: what [`super::Revocations`]
//! must not forget across a restart.
//!
//! One line per entry, `kind<TAB>id<TAB>until` (a subject adds `<TAB>logout time`), where
//! `kind` is `id` (a gateway session id that was logged out, or a used login state),
//! `psid` (a provider session ended by a back-channel logout), `sub` (a subject logged
//! out that way) or `jti` (a logout token already used). Only identifiers and times are
//! written, never a session's contents or a token; `%`, tabs, line breaks and other
//! control characters in an id are percent-encoded.
//!
//! Each entry is appended and `fsync`ed (`File::sync_data`) before the call returns, so a
//! logout is on disk before its response is sent. Loading skips expired entries and
//! malformed lines (with a warning, never a panic) and rewrites the file with only the
//! live entries (a temporary file renamed over the old one), so it stays bounded; the file
//! is compacted the same way when the appends since the last rewrite outnumber twice the
//! live entries. One gateway process per state directory: a second one would compact the
//! first one's entries away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// The file name under the state directory.
pub const FILE: &str = "revocations";
/// Appends before a compaction is considered at all.
const COMPACT_MIN: usize = 1024;
/// Encoded in ids: the separators, and `%` itself.
const ESCAPE: &AsciiSet = &CONTROLS.add(b'%');

/// One record, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A gateway session id (or a used login state) and until when it is refused.
    Id(String, u64),
    /// A provider session id and until when sessions made with it are refused.
    ProviderSid(String, u64),
    /// A subject, until when the record is kept, and the time of its logout.
    Subject(String, u64, u64),
    /// A logout token's `jti` and until when it counts as used.
    Jti(String, u64),
}

impl Entry {
    /// Until when the entry matters.
    pub fn until(&self) -> u64 {
        match self {
            Entry::Id(_, u)
            | Entry::ProviderSid(_, u)
            | Entry::Subject(_, u, _)
            | Entry::Jti(_, u) => *u,
        }
    }

    /// The line, with its final `\n`.
    pub fn line(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, ESCAPE).to_string();
        match self {
            Entry::Id(id, u) => format!("id\t{}\t{u}\n", enc(id)),
            Entry::ProviderSid(id, u) => format!("psid\t{}\t{u}\n", enc(id)),
            Entry::Subject(id, u, at) => format!("sub\t{}\t{u}\t{at}\n", enc(id)),
            Entry::Jti(id, u) => format!("jti\t{}\t{u}\n", enc(id)),
        }
    }

    /// Reads one line (without its `\n`); `None` when it is not one of ours.
    pub fn parse(line: &str) -> Option<Entry> {
        let mut f = line.split('\t');
        let kind = f.next()?;
        let id = percent_decode_str(f.next()?)
            .decode_utf8()
            .ok()?
            .into_owned();
        let until: u64 = f.next()?.parse().ok()?;
        let at = match kind {
            "sub" => Some(f.next()?.parse::<u64>().ok()?),
            _ => None,
        };
        if f.next().is_some() || id.is_empty() {
            return None;
        }
        Some(match (kind, at) {
            ("id", None) => Entry::Id(id, until),
            ("psid", None) => Entry::ProviderSid(id, until),
            ("sub", Some(at)) => Entry::Subject(id, until, at),
            ("jti", None) => Entry::Jti(id, until),
            _ => return None,
        })
    }
}

/// What reading the file found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The entries still in force.
    pub live: Vec<Entry>,
    pub expired: usize,
    pub malformed: usize,
}

/// Reads the journal at `path` (absent = empty), keeping the entries still in force at
/// `now`.
pub fn read(path: &Path, now: u64) -> io::Result<Loaded> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(e),
    };
    let mut out = Loaded::default();
    for raw in bytes.split(|b| *b == b'\n') {
        if raw.is_empty() {
            continue;
        }
        match std::str::from_utf8(raw).ok().and_then(Entry::parse) {
            Some(e) if e.until() > now => out.live.push(e),
            Some(_) => out.expired += 1,
            None => out.malformed += 1,
        }
    }
    Ok(out)
}

/// The open journal.
pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Opened for appending; shared so that `sync_data` runs without the lock.
    file: Arc<File>,
    /// Lines appended since the last rewrite.
    appended: usize,
    /// Entries written by the last rewrite.
    live: usize,
}

impl Journal {
    /// Creates the directory (mode 0700) if needed and writes `entries` as the whole new
    /// journal.
    pub fn create(dir: &Path, entries: impl Iterator<Item = Entry>) -> io::Result<Journal> {
        create_dir(dir)?;
        let (file, live) = rewrite(dir, entries)?;
        Ok(Journal {
            dir: dir.to_owned(),
            inner: Mutex::new(Inner {
                file: Arc::new(file),
                appended: 0,
                live,
            }),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Appends one entry and waits until it is on disk. Returns whether the file has grown
    /// enough to be compacted.
    pub fn append(&self, e: &Entry) -> io::Result<bool> {
        let line = e.line();
        let (file, compact) = {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            // One `write` of one short line to a file opened with O_APPEND.
            (&*g.file).write_all(line.as_bytes())?;
            g.appended += 1;
            let compact = g.appended > COMPACT_MIN.max(g.live.saturating_mul(2));
            (g.file.clone(), compact)
        };
        // Without the lock: a compaction meanwhile already holds this entry (it is in
        // memory before it is appended), and syncing the replaced file is harmless.
        file.sync_data()?;
        Ok(compact)
    }

    /// Replaces the file by `entries` (the live ones, read from memory).
    pub fn compact(&self, entries: impl Iterator<Item = Entry>) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (file, live) = rewrite(&self.dir, entries)?;
        g.file = Arc::new(file);
        g.appended = 0;
        g.live = live;
        Ok(())
    }
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Writes `entries` to a temporary file, syncs it, renames it over the journal and opens
/// the result for appending. Returns the file and how many entries it holds.
fn rewrite(dir: &Path, entries: impl Iterator<Item = Entry>) -> io::Result<(File, usize)> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let path = dir.join(FILE);
    let mut count = 0;
    // Created afresh, so it gets mode 0600 whatever a leftover had.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    {
        let f = open_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut w = io::BufWriter::new(f);
        for e in entries {
            w.write_all(e.line().as_bytes())?;
            count += 1;
        }
        let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    // The rename itself is durable once the directory is synced.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    let file = open_options().append(true).create(true).open(&path)?;
    Ok((file, count))
}

#[cfg(all(test, target_os = "linux"))]
impl Journal {
    /// A journal whose every write fails (`/dev/full`: "no space left on device").
    pub fn failing() -> io::Result<Journal> {
        Ok(Journal {
            dir: PathBuf::from("/dev"),
            inner: Mutex::new(Inner {
                file: Arc::new(OpenOptions::new().append(true).open("/dev/full")?),
                appended: 0,
                live: 0,
            }),
        })
    }
}
