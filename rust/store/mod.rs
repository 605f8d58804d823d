//! The disk tier of the LM cache: a directory of append-only segment files plus a mapped hash index,
//! shared by any number of processes.
//!
//! Reads map the files and take no lock. Writes append under an exclusive `flock` on `<dir>/lock`
//! (released by the kernel when a writer dies, so a killed process never wedges the store). Files
//! that other processes may have mapped are never truncated or rewritten: the index is replaced by
//! writing a new file and renaming it over `index.tdi` after marking the old one retired, and
//! eviction and `clear` delete whole segments. The format is documented in `docs/cache-format.md`.

pub mod index;
pub mod record;
pub mod segment;
pub mod value;

use fs4::FileExt;
use index::{Counter, Index, Location};
use memmap2::{Mmap, MmapOptions, MmapRaw};
use record::{RecordMeta, KEY_LEN};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub const INDEX_FILE: &str = "index.tdi";
pub const LOCK_FILE: &str = "lock";
pub const QUARANTINE_DIR: &str = "quarantine";

/// Segments roll over at a sixteenth of the size limit (within these bounds), so eviction can free
/// space a segment at a time without emptying the store.
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} ({path}): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a value of {0} bytes is larger than the store accepts ({max} bytes)", max = record::MAX_VALUE_LEN)]
    ValueTooLarge(usize),
    #[error("the cache index {0} is read-only; this process cannot write to the cache")]
    ReadOnly(PathBuf),
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Counters and sizes for `cache stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub segments: u64,
    pub hits: u64,
    pub misses: u64,
    pub tokens_saved: u64,
    pub cost_saved_nanos: u64,
    pub bad_records: u64,
    pub index_generation: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that decoded with a good checksum.
    pub ok: u64,
    /// Damaged byte ranges (each counts once), copied to `quarantine/` and dropped from the index.
    pub bad: u64,
    /// Records cut short by a writer that died mid-append (harmless: never indexed; reported for completeness).
    pub interrupted_writes: u64,
    pub damaged_slots: u64,
    pub index_was_unreadable: bool,
    pub index_rebuilt: bool,
    pub entries: u64,
}

struct MappedIndex {
    map: MmapRaw,
    writable: bool,
}

impl MappedIndex {
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-aligned) and lives as long as `self`; AtomicU64 has
        // the size and alignment of u64; every process touches these words only through atomics; and
        // the file is never truncated (replacements are new files), so the pages stay backed.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.map.len() / 8)
        }
    }

    fn view(&self) -> Option<Index<'_>> {
        Index::open(self.words()).ok()
    }
}

/// Read-only mappings of segments, remapped when a record lies past the end mapped so far.
#[derive(Default)]
struct Segments {
    maps: HashMap<u32, Mmap>,
}

impl Segments {
    fn bytes(&mut self, dir: &Path, id: u32, end: u64) -> Option<&[u8]> {
        let long_enough = self.maps.get(&id).is_some_and(|m| m.len() as u64 >= end);
        if !long_enough {
            let file = File::open(segment::path(dir, id)).ok()?;
            // SAFETY: segment files are append-only and never truncated by turbodspy (see the module
            // docs); bytes already in the file do not change, so the mapping stays valid while held.
            let map = unsafe { MmapOptions::new().map(&file) }.ok()?;
            self.maps.insert(id, map);
        }
        let map = self.maps.get(&id)?;
        (map.len() as u64 >= end).then(|| &map[..])
    }
}

#[derive(Default)]
struct State {
    index: Option<MappedIndex>,
    segments: Segments,
    /// The segment this process appends to, with its file open for appending.
    active: Option<(u32, File)>,
    /// The process that opened `active` (a forked child reopens it).
    writer_pid: u32,
    /// Counted here when the index cannot be written (a read-only cache).
    local_hits: u64,
    local_misses: u64,
}

/// A cache directory. Cheap to create: nothing touches the disk until the first call.
pub struct Store {
    dir: PathBuf,
    size_limit: u64,
    state: Mutex<State>,
    /// The lock file, with the id of the process that opened it.
    write_gate: Mutex<Option<(u32, File)>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A hit's value with the metadata stored beside it.
pub struct Found {
    pub value: Vec<u8>,
    pub meta: RecordMeta,
    pub flags: u32,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>, size_limit: u64) -> Store {
        Store {
            dir: dir.into(),
            size_limit,
            state: Mutex::new(State::default()),
            write_gate: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn size_limit(&self) -> u64 {
        self.size_limit
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only caches behind; they are rebuilt on demand.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    /// Maps `index.tdi` if the state has none or the one it has was retired. Read-write if allowed.
    fn refresh_index(&self, st: &mut State) -> Result<()> {
        if let Some(mapped) = &st.index {
            if mapped.view().is_some_and(|v| !v.is_retired()) {
                return Ok(());
            }
            // A new index may have dropped whole segments (eviction, clear): unmap ours so deleted files
            // do not keep their disk space; the ones still in use are mapped again on demand.
            st.segments.maps.clear();
        }
        st.index = None;
        let path = self.index_path();
        let (file, writable) = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => match File::open(&path) {
                Ok(f) => (f, false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("cannot open the cache index", &path)(e)),
            },
        };
        let len = file
            .metadata()
            .map_err(io_err("cannot stat the cache index", &path))?
            .len();
        if len < index::HEADER_BYTES as u64 || len % 8 != 0 {
            return Ok(());
        }
        let map = if writable {
            MmapOptions::new().map_raw(&file)
        } else {
            MmapOptions::new().map_raw_read_only(&file)
        }
        .map_err(io_err("cannot map the cache index", &path))?;
        st.index = Some(MappedIndex { map, writable });
        Ok(())
    }

    /// The value stored under `key`, or None. A record that fails its checksum is skipped and counted.
    /// `count` records the lookup in the hit/miss statistics.
    pub fn get(&self, key: &[u8; KEY_LEN], count: bool) -> Result<Option<Found>> {
        self.get_in(&mut self.state(), key, count)
    }

    /// Like `get`, or None at once if another thread of this process is using the store (a caller holding
    /// Python's GIL then waits with the GIL released).
    pub fn try_get(&self, key: &[u8; KEY_LEN], count: bool) -> Option<Result<Option<Found>>> {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(self.get_in(&mut st, key, count))
    }

    fn get_in(&self, st: &mut State, key: &[u8; KEY_LEN], count: bool) -> Result<Option<Found>> {
        self.refresh_index(st)?;
        let Some(mapped) = &st.index else {
            if count {
                st.local_misses += 1;
            }
            return Ok(None);
        };
        let Some(view) = mapped.view() else {
            return Ok(None);
        };
        let mut found = None;
        let mut bad = 0;
        let dir = &self.dir;
        let segments = &mut st.segments;
        view.find(key, |loc| match read_record(segments, dir, loc) {
            Some(Ok((k, value, meta, flags))) if k == key => {
                found = Some(Found {
                    value: value.to_vec(),
                    meta,
                    flags,
                });
                true
            }
            Some(Err(())) => {
                bad += 1;
                false
            }
            _ => false,
        });
        if mapped.writable {
            if bad > 0 {
                view.add(Counter::BadRecords, bad);
            }
            if count {
                match &found {
                    Some(f) => {
                        view.add(Counter::Hits, 1);
                        view.add(Counter::TokensSaved, f.meta.tokens);
                        view.add(Counter::CostSavedNanos, f.meta.cost_nanos);
                    }
                    None => view.add(Counter::Misses, 1),
                }
            }
        } else if count {
            match &found {
                Some(_) => st.local_hits += 1,
                None => st.local_misses += 1,
            }
        }
        Ok(found)
    }

    /// Stores `value` under `key` (replacing an older, different value). Returns once the record and its
    /// index slot are in the files: from then on every process, and every later process, finds it.
    pub fn put(&self, key: &[u8; KEY_LEN], value: &[u8], meta: RecordMeta) -> Result<()> {
        if value.len() > record::MAX_VALUE_LEN {
            return Err(StoreError::ValueTooLarge(value.len()));
        }
        let mut buf = Vec::with_capacity(record::encoded_len(value.len()));
        record::encode(key, value, meta, record::ENCODING_TAGGED, &mut buf);
        self.locked(|st| {
            self.index_for_write(st)?;
            let existing = {
                let view = st.index.as_ref().and_then(MappedIndex::view).expect("index_for_write opened it");
                let segments = &mut st.segments;
                let mut same = false;
                let slot = view.find(key, |loc| match read_record(segments, &self.dir, loc) {
                    Some(Ok((k, v, _, _))) if k == key => {
                        same = v == value;
                        true
                    }
                    _ => false,
                });
                if same {
                    return Ok(());
                }
                if view.needs_rebuild() {
                    None
                } else {
                    Some(slot.map(|s| s.0))
                }
            };
            let old_slot = match existing {
                Some(slot) => slot,
                None => {
                    let live = st.index.as_ref().and_then(MappedIndex::view).map_or(0, |v| v.get(Counter::LiveEntries));
                    self.rebuild(st, index::capacity_for(live + 1), &|_| true)?;
                    let view = st.index.as_ref().and_then(MappedIndex::view).expect("rebuilt");
                    let segments = &mut st.segments;
                    view.find(key, |loc| {
                        matches!(read_record(segments, &self.dir, loc), Some(Ok((k, _, _, _))) if k == key)
                    })
                    .map(|s| s.0)
                }
            };
            let loc = self.append(st, &buf)?;
            let view = st.index.as_ref().and_then(MappedIndex::view).expect("index open");
            view.insert(key, loc).expect("table has room: rebuilt above half full");
            if let Some(slot) = old_slot {
                view.remove(slot);
            }
            self.enforce_limit(st)
        })
    }

    /// Runs `f` holding the exclusive file lock (and this process's state lock, held by the caller).
    /// Runs `f` holding the exclusive file lock, then this process's state lock. The state lock is taken
    /// last so readers in this process never wait while a writer waits for another process.
    fn locked<R>(&self, f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
        // One writer per process at a time: threads share the lock file's open description, and with it
        // the flock, so the flock alone cannot keep them apart.
        let mut gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        if gate
            .as_ref()
            .is_some_and(|(pid, _)| *pid != std::process::id())
        {
            // A forked child inherited the parent's open description; it needs its own.
            *gate = None;
        }
        if gate.is_none() {
            fs::create_dir_all(&self.dir)
                .map_err(io_err("cannot create the cache directory", &self.dir))?;
            let path = self.dir.join(LOCK_FILE);
            let lock = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err("cannot open the cache lock file", &path))?;
            *gate = Some((std::process::id(), lock));
        }
        let (_, lock) = gate.as_ref().expect("set above");
        // Fully qualified: std's File::lock (Rust 1.89) would shadow fs4's method and raise the MSRV.
        FileExt::lock(lock).map_err(io_err("cannot lock the cache", &self.dir.join(LOCK_FILE)))?;
        let result = {
            let mut st = self.state();
            if st.writer_pid != std::process::id() {
                st.active = None;
                st.writer_pid = std::process::id();
            }
            f(&mut st)
        };
        let _ = FileExt::unlock(lock);
        result
    }

    /// Under the lock: makes sure a valid, current, writable index is mapped, rebuilding it if needed.
    fn index_for_write(&self, st: &mut State) -> Result<()> {
        self.refresh_index(st)?;
        match &st.index {
            Some(m) if !m.writable => Err(StoreError::ReadOnly(self.index_path())),
            Some(m) => match m.view() {
                Some(v) if !v.is_retired() => Ok(()),
                // Retired but still at the path: a writer died between retiring it and the rename.
                Some(v) => {
                    let live = v.get(Counter::LiveEntries);
                    self.rebuild(st, index::capacity_for(live), &|_| true)
                }
                None => self.rebuild_from_segments(st).map(|_| ()),
            },
            None => self.rebuild_from_segments(st).map(|_| ()),
        }
    }

    fn segment_target(&self) -> u64 {
        (self.size_limit / 16).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
    }

    /// Appends an encoded record to the active segment (rolling to a new one when it is full).
    fn append(&self, st: &mut State, buf: &[u8]) -> Result<Location> {
        let State {
            index,
            active: writer_active,
            ..
        } = st;
        let view = index
            .as_ref()
            .and_then(MappedIndex::view)
            .expect("index open");
        let mut active = view.get(Counter::ActiveSegment) as u32;
        if writer_active.as_ref().map(|a| a.0) != Some(active) {
            *writer_active = None;
            if active != 0 {
                *writer_active = open_segment(&self.dir, active, false)?.map(|f| (active, f));
            }
        }
        let mut len = match writer_active {
            Some((_, f)) => f
                .metadata()
                .map_err(io_err("cannot stat a cache segment", &self.dir))?
                .len(),
            None => 0,
        };
        let full = len + buf.len() as u64 > self.segment_target()
            && len > segment::SEGMENT_HEADER_LEN as u64;
        if writer_active.is_none() || full {
            active = (view.get(Counter::NextSegment) as u32)
                .max(active + 1)
                .max(1);
            view.set(Counter::NextSegment, u64::from(active) + 1);
            let file = open_segment(&self.dir, active, true)?.expect("created");
            len = file
                .metadata()
                .map_err(io_err("cannot stat a cache segment", &self.dir))?
                .len();
            view.add(Counter::DataBytes, len);
            view.set(Counter::ActiveSegment, u64::from(active));
            *writer_active = Some((active, file));
        }
        let (_, file) = writer_active.as_mut().expect("set above");
        let path = segment::path(&self.dir, active);
        // A writer killed mid-append leaves a torn tail; pad past it so records stay aligned for scans.
        let pad = (record::ALIGN as u64 - len % record::ALIGN as u64) % record::ALIGN as u64;
        if pad > 0 {
            file.write_all(&[0u8; record::ALIGN][..pad as usize])
                .map_err(io_err("cannot write to the cache", &path))?;
        }
        let offset = len + pad;
        file.write_all(buf)
            .map_err(io_err("cannot write to the cache", &path))?;
        view.add(Counter::DataBytes, pad + buf.len() as u64);
        Ok(Location {
            segment: active,
            len: buf.len() as u32,
            offset,
        })
    }

    /// Writes a new index with `capacity` slots holding the current live entries `keep` accepts, then
    /// swaps it in.
    fn rebuild(
        &self,
        st: &mut State,
        capacity: u64,
        keep: &dyn Fn(Location) -> bool,
    ) -> Result<()> {
        let old = st.index.take();
        let old_view = old.as_ref().and_then(MappedIndex::view);
        let new = self.write_index(capacity, |new| {
            if let Some(old) = &old_view {
                for c in [
                    Counter::NextSegment,
                    Counter::ActiveSegment,
                    Counter::DataBytes,
                    Counter::Hits,
                    Counter::Misses,
                    Counter::TokensSaved,
                    Counter::CostSavedNanos,
                    Counter::BadRecords,
                ] {
                    new.set(c, old.get(c));
                }
                old.copy_into(new, keep).expect("capacity_for leaves room");
            }
        })?;
        self.publish(st, old_view.as_ref(), new)
    }

    /// Creates `index.tdi.tmp-<pid>` with `capacity` slots, lets `fill` write it, returns the mapping.
    fn write_index(
        &self,
        capacity: u64,
        fill: impl FnOnce(&Index<'_>),
    ) -> Result<(PathBuf, MappedIndex)> {
        let tmp = self
            .dir
            .join(format!("{INDEX_FILE}.tmp-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("cannot create a cache index", &tmp))?;
        file.set_len(index::file_len(capacity))
            .map_err(io_err("cannot size a cache index", &tmp))?;
        let map = MmapOptions::new()
            .map_raw(&file)
            .map_err(io_err("cannot map a cache index", &tmp))?;
        let mapped = MappedIndex {
            map,
            writable: true,
        };
        let generation = now_ms();
        let view = Index::init(mapped.words(), capacity, generation, now_ms());
        fill(&view);
        Ok((tmp, mapped))
    }

    /// Retires the old index, then renames the new one over `index.tdi`. Readers that see the retired
    /// flag reopen the path; a crash between the two steps is repaired by the next writer.
    fn publish(
        &self,
        st: &mut State,
        old: Option<&Index<'_>>,
        (tmp, new): (PathBuf, MappedIndex),
    ) -> Result<()> {
        if let Some(old) = old {
            old.set(Counter::Retired, 1);
        }
        let path = self.index_path();
        fs::rename(&tmp, &path).map_err(io_err("cannot replace the cache index", &path))?;
        st.index = Some(new);
        Ok(())
    }

    fn segment_ids(&self) -> Result<Vec<u32>> {
        let mut ids = vec![];
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io_err("cannot list the cache directory", &self.dir)(e)),
        };
        for entry in entries.flatten() {
            if let Some(id) = entry.file_name().to_str().and_then(segment::id_of) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Under the lock: reads every segment and writes an index of the good records (the newest record
    /// of a key wins). Bad ranges are copied to `quarantine/` when `quarantine` is set.
    fn rebuild_from_segments(&self, st: &mut State) -> Result<VerifyReport> {
        self.rebuild_with(st, false)
    }

    fn rebuild_with(&self, st: &mut State, quarantine: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut latest: HashMap<[u8; KEY_LEN], Location> = HashMap::new();
        let mut data_bytes = 0;
        let ids = self.segment_ids()?;
        for &id in &ids {
            let path = segment::path(&self.dir, id);
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // SAFETY: as in `Segments::bytes`: segments are append-only, never truncated.
            let Ok(map) = (unsafe { MmapOptions::new().map(&file) }) else {
                continue;
            };
            data_bytes += map.len() as u64;
            for found in segment::scan(&map) {
                match found {
                    segment::Scanned::Good {
                        offset,
                        len,
                        record,
                    } => {
                        report.ok += 1;
                        latest.insert(
                            *record.key,
                            Location {
                                segment: id,
                                len: len as u32,
                                offset: offset as u64,
                            },
                        );
                    }
                    segment::Scanned::Bad { offset, len } => {
                        report.bad += 1;
                        if quarantine {
                            self.quarantine(id, offset, &map[offset..offset + len])?;
                        }
                    }
                    segment::Scanned::Interrupted { .. } => report.interrupted_writes += 1,
                }
            }
        }
        let old = st.index.take();
        let old_view = old.as_ref().and_then(MappedIndex::view);
        let next_segment = ids.last().map_or(1, |&id| id + 1);
        let new = self.write_index(index::capacity_for(latest.len() as u64 + 1), |new| {
            if let Some(old) = &old_view {
                for c in [
                    Counter::Hits,
                    Counter::Misses,
                    Counter::TokensSaved,
                    Counter::CostSavedNanos,
                    Counter::BadRecords,
                ] {
                    new.set(c, old.get(c));
                }
                new.set(
                    Counter::NextSegment,
                    old.get(Counter::NextSegment).max(u64::from(next_segment)),
                );
            } else {
                new.set(Counter::NextSegment, u64::from(next_segment));
            }
            new.set(
                Counter::ActiveSegment,
                ids.last().map_or(0, |&id| u64::from(id)),
            );
            new.set(Counter::DataBytes, data_bytes);
            let mut sorted: Vec<_> = latest.iter().collect();
            sorted.sort_unstable_by_key(|(_, loc)| (loc.segment, loc.offset));
            for (key, loc) in sorted {
                new.insert(key, *loc).expect("capacity_for leaves room");
            }
        })?;
        report.entries = latest.len() as u64;
        report.index_rebuilt = true;
        self.publish(st, old_view.as_ref(), new)?;
        Ok(report)
    }

    fn quarantine(&self, id: u32, offset: usize, bytes: &[u8]) -> Result<()> {
        let dir = self.dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&dir).map_err(io_err("cannot create the quarantine directory", &dir))?;
        let path = dir.join(format!("seg-{id:010}-at-{offset}.bad"));
        fs::write(&path, bytes).map_err(io_err("cannot write a quarantined record", &path))
    }

    /// Evicts the oldest segments until the store is a tenth under its limit.
    fn enforce_limit(&self, st: &mut State) -> Result<()> {
        let view = st
            .index
            .as_ref()
            .and_then(MappedIndex::view)
            .expect("index open");
        let index_bytes = index::file_len(view.capacity());
        let total = view.get(Counter::DataBytes) + index_bytes;
        if total <= self.size_limit {
            return Ok(());
        }
        let target = self.size_limit / 10 * 9;
        let mut remaining = total;
        let mut dropped = vec![];
        for id in self.segment_ids()? {
            if remaining <= target {
                break;
            }
            let size = fs::metadata(segment::path(&self.dir, id))
                .map(|m| m.len())
                .unwrap_or(0);
            dropped.push((id, size));
            remaining = remaining.saturating_sub(size);
        }
        if dropped.is_empty() {
            return Ok(());
        }
        let active = view.get(Counter::ActiveSegment) as u32;
        let gone: Vec<u32> = dropped.iter().map(|d| d.0).collect();
        let live = view.get(Counter::LiveEntries);
        self.rebuild(st, index::capacity_for(live), &|loc| {
            !gone.contains(&loc.segment)
        })?;
        let view = st
            .index
            .as_ref()
            .and_then(MappedIndex::view)
            .expect("rebuilt");
        for (id, size) in dropped {
            // Unlinking leaves other processes' mappings valid; the space returns when they unmap.
            let _ = fs::remove_file(segment::path(&self.dir, id));
            view.sub(Counter::DataBytes, size);
            st.segments.maps.remove(&id);
            if id == active {
                view.set(Counter::ActiveSegment, 0);
                st.active = None;
            }
        }
        Ok(())
    }

    /// Empties the store. Concurrent readers see either old entries or none, never a fault.
    pub fn clear(&self) -> Result<()> {
        self.locked(|st| {
            self.refresh_index(st)?;
            let old = st.index.take();
            let old_view = old.as_ref().and_then(MappedIndex::view);
            let ids = self.segment_ids()?;
            let next = ids.last().map_or(1, |&id| u64::from(id) + 1);
            let next = old_view
                .as_ref()
                .map_or(next, |o| o.get(Counter::NextSegment).max(next));
            let new = self.write_index(index::MIN_CAPACITY, |new| {
                new.set(Counter::NextSegment, next)
            })?;
            self.publish(st, old_view.as_ref(), new)?;
            for id in ids {
                let _ = fs::remove_file(segment::path(&self.dir, id));
            }
            let _ = fs::remove_dir_all(self.dir.join(QUARANTINE_DIR));
            st.segments.maps.clear();
            st.active = None;
            st.local_hits = 0;
            st.local_misses = 0;
            Ok(())
        })
    }

    /// Checks every record of every segment, copies damaged bytes to `quarantine/`, and rebuilds the index
    /// from the good records when anything was wrong with it.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.locked(|st| {
            self.refresh_index(st)?;
            if st.index.as_ref().is_some_and(|m| !m.writable) {
                return Err(StoreError::ReadOnly(self.index_path()));
            }
            let before = st
                .index
                .as_ref()
                .and_then(MappedIndex::view)
                .map(|v| (v.get(Counter::LiveEntries), v.damaged_slots()));
            let mut report = self.rebuild_with(st, true)?;
            match before {
                Some((_, damaged)) => report.damaged_slots = damaged,
                None => report.index_was_unreadable = self.index_path().exists(),
            }
            Ok(report)
        })
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut st = self.state();
        self.refresh_index(&mut st)?;
        let mut stats = Stats::default();
        if let Some(view) = st.index.as_ref().and_then(MappedIndex::view) {
            stats.entries = view.get(Counter::LiveEntries);
            stats.hits = view.get(Counter::Hits);
            stats.misses = view.get(Counter::Misses);
            stats.tokens_saved = view.get(Counter::TokensSaved);
            stats.cost_saved_nanos = view.get(Counter::CostSavedNanos);
            stats.bad_records = view.get(Counter::BadRecords);
            stats.index_generation = view.generation();
        }
        stats.hits += st.local_hits;
        stats.misses += st.local_misses;
        let ids = self.segment_ids()?;
        stats.segments = ids.len() as u64;
        for path in ids
            .iter()
            .map(|&id| segment::path(&self.dir, id))
            .chain([self.index_path()])
        {
            stats.bytes += fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        }
        Ok(stats)
    }

    /// Every key with a readable record (for export).
    pub fn keys(&self) -> Result<Vec<[u8; KEY_LEN]>> {
        let mut st = self.state();
        self.refresh_index(&mut st)?;
        let st = &mut *st;
        let Some(view) = st.index.as_ref().and_then(MappedIndex::view) else {
            return Ok(vec![]);
        };
        let mut keys = vec![];
        for (_, _, loc) in view.live() {
            if let Some(Ok((key, _, _, _))) = read_record(&mut st.segments, &self.dir, loc) {
                keys.push(*key);
            }
        }
        Ok(keys)
    }
}

type Decoded<'a> = (&'a [u8; KEY_LEN], &'a [u8], RecordMeta, u32);

/// The record at `loc`: None if its segment is gone or shorter than the slot says (a stale index),
/// Err if the bytes are there but damaged.
fn read_record<'s>(
    segments: &'s mut Segments,
    dir: &Path,
    loc: Location,
) -> Option<std::result::Result<Decoded<'s>, ()>> {
    let end = loc.offset.checked_add(u64::from(loc.len))?;
    let bytes = segments.bytes(dir, loc.segment, end)?;
    let bytes = &bytes[loc.offset as usize..end as usize];
    Some(match record::decode(bytes) {
        Ok((r, len)) if len == bytes.len() => Ok((r.key, r.value, r.meta, r.flags)),
        _ => Err(()),
    })
}

/// Opens segment `id` for appending; with `create`, creates it (with its header) if missing.
fn open_segment(dir: &Path, id: u32, create: bool) -> Result<Option<File>> {
    let path = segment::path(dir, id);
    match OpenOptions::new().append(true).open(&path) {
        Ok(f) => return Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot open a cache segment", &path)(e)),
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("cannot create a cache segment", &path))?;
    file.write_all(&segment::header(id, now_ms()))
        .map_err(io_err("cannot write to the cache", &path))?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests;
