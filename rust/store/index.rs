//! The on-disk hash index: a header page of counters, then an open-addressing table of 32-byte slots
//! that map a key's first 8 bytes to where its record lies.
//!
//! The index is a hint, not the truth: a reader always checks the full key and the record's checksum.
//! Every word is an atomic, because other processes read and update the same mapped pages. A writer
//! (holding the file lock) fills a slot's location words first and publishes the tag word last with
//! `Release`; a reader loads the tag with `Acquire`, so it never sees a half-filled slot of a live
//! writer. A writer killed mid-slot leaves a slot whose own CRC fails, which lookups skip.

use super::record::KEY_LEN;
use std::sync::atomic::{AtomicU64, Ordering};

pub const HEADER_BYTES: usize = 4096;
pub const HEADER_WORDS: usize = HEADER_BYTES / 8;
/// The header words written once at creation, which its checksum covers (magic, version and checksum,
/// capacity, generation, creation time).
pub const HEADER_CHECKED_WORDS: usize = 5;
pub const SLOT_WORDS: usize = 4;
pub const SLOT_BYTES: usize = SLOT_WORDS * 8;
/// Per shard: 16 empty shards take 576 KB.
pub const MIN_CAPACITY: u64 = 1 << 10;
pub const MAX_CAPACITY: u64 = 1 << 34;
pub const INDEX_MAGIC: u64 = u64::from_le_bytes(*b"TDSINDEX");
pub const INDEX_VERSION: u32 = 1;

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;

/// Mutable header fields: word positions in the header page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Set (to 1) once a newer index file replaces this one; readers then reopen the index path.
    Retired = 8,
    NextSegment = 9,
    ActiveSegment = 10,
    LiveEntries = 11,
    /// Live slots plus tombstones: what decides when the table is rebuilt.
    OccupiedSlots = 12,
    DataBytes = 13,
    Hits = 14,
    Misses = 15,
    TokensSaved = 16,
    CostSavedNanos = 17,
    BadRecords = 18,
}

/// Where a record lies: segment id, byte offset in that segment, padded record length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: u32,
    pub len: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexError {
    TooShort,
    BadMagic,
    BadVersion(u32),
    BadHeaderChecksum,
    BadCapacity(u64),
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::TooShort => write!(f, "index file is shorter than its header says"),
            IndexError::BadMagic => write!(f, "index file does not start with the turbodspy magic"),
            IndexError::BadVersion(v) => write!(
                f,
                "index format version {v} is not supported (expected {INDEX_VERSION})"
            ),
            IndexError::BadHeaderChecksum => write!(f, "index header checksum mismatch"),
            IndexError::BadCapacity(c) => {
                write!(f, "index capacity {c} is not a power of two in range")
            }
        }
    }
}

/// The table is full (the caller rebuilds it larger and retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A view of an index file's words (a mapped file, or a vector in tests).
#[derive(Clone, Copy)]
pub struct Index<'a> {
    words: &'a [AtomicU64],
    mask: u64,
}

/// File size of an index with `capacity` slots.
pub fn file_len(capacity: u64) -> u64 {
    HEADER_BYTES as u64 + capacity * SLOT_BYTES as u64
}

/// The slot tag of a key: its first 8 bytes, kept clear of the two reserved values.
pub fn tag_of(key: &[u8; KEY_LEN]) -> u64 {
    match u64::from_le_bytes(key[..8].try_into().expect("8 bytes")) {
        EMPTY => 1,
        TOMBSTONE => TOMBSTONE - 1,
        tag => tag,
    }
}

impl<'a> Index<'a> {
    /// Writes a fresh header (zeroed counters) into `words`; the slots must already be zero.
    pub fn init(
        words: &'a [AtomicU64],
        capacity: u64,
        generation: u64,
        created_ms: u64,
    ) -> Index<'a> {
        assert!(capacity.is_power_of_two() && words.len() as u64 >= file_len(capacity) / 8);
        words[0].store(INDEX_MAGIC, Ordering::Relaxed);
        words[2].store(capacity, Ordering::Relaxed);
        words[3].store(generation, Ordering::Relaxed);
        words[4].store(created_ms, Ordering::Relaxed);
        words[1].store(u64::from(INDEX_VERSION), Ordering::Relaxed);
        let crc = header_crc(words);
        words[1].store(
            u64::from(INDEX_VERSION) | (u64::from(crc) << 32),
            Ordering::Release,
        );
        Index {
            words,
            mask: capacity - 1,
        }
    }

    /// Checks the header of an existing index.
    pub fn open(words: &'a [AtomicU64]) -> Result<Index<'a>, IndexError> {
        if words.len() < HEADER_WORDS {
            return Err(IndexError::TooShort);
        }
        if words[0].load(Ordering::Acquire) != INDEX_MAGIC {
            return Err(IndexError::BadMagic);
        }
        let w1 = words[1].load(Ordering::Acquire);
        let version = w1 as u32;
        if version != INDEX_VERSION {
            return Err(IndexError::BadVersion(version));
        }
        if (w1 >> 32) as u32 != header_crc(words) {
            return Err(IndexError::BadHeaderChecksum);
        }
        let capacity = words[2].load(Ordering::Relaxed);
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(IndexError::BadCapacity(capacity));
        }
        if (words.len() as u64) < file_len(capacity) / 8 {
            return Err(IndexError::TooShort);
        }
        Ok(Index {
            words,
            mask: capacity - 1,
        })
    }

    /// An index whose header [`Index::open`] accepted earlier, with the mask it had then.
    pub fn checked(words: &'a [AtomicU64], mask: u64) -> Index<'a> {
        Index { words, mask }
    }

    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    pub fn generation(&self) -> u64 {
        self.words[3].load(Ordering::Relaxed)
    }

    pub fn counter(&self, counter: Counter) -> &'a AtomicU64 {
        &self.words[counter as usize]
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counter(counter).load(Ordering::Acquire)
    }

    pub fn set(&self, counter: Counter, value: u64) {
        self.counter(counter).store(value, Ordering::Release)
    }

    pub fn add(&self, counter: Counter, delta: u64) {
        self.counter(counter).fetch_add(delta, Ordering::AcqRel);
    }

    pub fn sub(&self, counter: Counter, delta: u64) {
        let c = self.counter(counter);
        // Saturating: a counter flipped on disk must not wrap around and poison the size limit.
        let _ = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(delta))
        });
    }

    pub fn is_retired(&self) -> bool {
        self.get(Counter::Retired) != 0
    }

    fn slot(&self, i: u64) -> &'a [AtomicU64] {
        let start = HEADER_WORDS + (i as usize) * SLOT_WORDS;
        &self.words[start..start + SLOT_WORDS]
    }

    /// Reads slot `i`: `None` when empty, a tombstone, or damaged (its CRC fails).
    fn read_slot(&self, i: u64) -> SlotState {
        let slot = self.slot(i);
        let tag = slot[0].load(Ordering::Acquire);
        if tag == EMPTY {
            return SlotState::Empty;
        }
        if tag == TOMBSTONE {
            return SlotState::Skip;
        }
        let w1 = slot[1].load(Ordering::Relaxed);
        let offset = slot[2].load(Ordering::Relaxed);
        let crc = slot[3].load(Ordering::Relaxed);
        if crc != u64::from(slot_crc(tag, w1, offset)) {
            return SlotState::Skip;
        }
        SlotState::Live(
            tag,
            Location {
                segment: w1 as u32,
                len: (w1 >> 32) as u32,
                offset,
            },
        )
    }

    /// Candidate locations for `key` in probe order, until `accept` says one holds it. Returns the
    /// slot number and location accepted. Probing stops at the first empty slot.
    pub fn find(
        &self,
        key: &[u8; KEY_LEN],
        mut accept: impl FnMut(Location) -> bool,
    ) -> Option<(u64, Location)> {
        let tag = tag_of(key);
        let mut i = tag & self.mask;
        for _ in 0..self.capacity() {
            match self.read_slot(i) {
                SlotState::Empty => return None,
                SlotState::Live(t, loc) if t == tag && accept(loc) => return Some((i, loc)),
                _ => {}
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Puts `loc` for `key` into the first empty slot of its probe chain. The caller holds the write lock
    /// and has checked the table has room (see `needs_rebuild`).
    pub fn insert(&self, key: &[u8; KEY_LEN], loc: Location) -> Result<u64, Full> {
        self.insert_tag(tag_of(key), loc)
    }

    fn insert_tag(&self, tag: u64, loc: Location) -> Result<u64, Full> {
        let mut i = tag & self.mask;
        for _ in 0..self.capacity() {
            let slot = self.slot(i);
            if slot[0].load(Ordering::Acquire) == EMPTY {
                let w1 = u64::from(loc.segment) | (u64::from(loc.len) << 32);
                slot[1].store(w1, Ordering::Relaxed);
                slot[2].store(loc.offset, Ordering::Relaxed);
                slot[3].store(u64::from(slot_crc(tag, w1, loc.offset)), Ordering::Relaxed);
                slot[0].store(tag, Ordering::Release);
                self.add(Counter::OccupiedSlots, 1);
                self.add(Counter::LiveEntries, 1);
                return Ok(i);
            }
            i = (i + 1) & self.mask;
        }
        Err(Full)
    }

    /// Marks slot `i` dead (one atomic store, so readers see either the old entry or none).
    pub fn remove(&self, i: u64) {
        self.slot(i)[0].store(TOMBSTONE, Ordering::Release);
        self.sub(Counter::LiveEntries, 1);
    }

    /// True when one more insert would take the table past half full.
    pub fn needs_rebuild(&self) -> bool {
        self.get(Counter::OccupiedSlots)
            .saturating_add(1)
            .saturating_mul(2)
            > self.capacity()
    }

    /// Every live, undamaged slot: (slot number, tag, location).
    pub fn live(&self) -> impl Iterator<Item = (u64, u64, Location)> + 'a {
        let this = *self;
        (0..this.capacity()).filter_map(move |i| match this.read_slot(i) {
            SlotState::Live(tag, loc) => Some((i, tag, loc)),
            _ => None,
        })
    }

    /// Number of slots that are neither empty, dead, nor valid: damage that `verify` repairs.
    pub fn damaged_slots(&self) -> u64 {
        (0..self.capacity())
            .filter(|&i| {
                let tag = self.slot(i)[0].load(Ordering::Acquire);
                tag != EMPTY && tag != TOMBSTONE && matches!(self.read_slot(i), SlotState::Skip)
            })
            .count() as u64
    }

    /// Copies the live slots `keep` accepts into `other` (a freshly initialised, larger or equal table).
    pub fn copy_into(
        &self,
        other: &Index<'_>,
        mut keep: impl FnMut(Location) -> bool,
    ) -> Result<(), Full> {
        for (_, tag, loc) in self.live() {
            if keep(loc) {
                other.insert_tag(tag, loc)?;
            }
        }
        Ok(())
    }
}

enum SlotState {
    Empty,
    Skip,
    Live(u64, Location),
}

fn slot_crc(tag: u64, w1: u64, offset: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&tag.to_le_bytes());
    h.update(&w1.to_le_bytes());
    h.update(&offset.to_le_bytes());
    h.finalize()
}

fn header_crc(words: &[AtomicU64]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&words[0].load(Ordering::Relaxed).to_le_bytes());
    h.update(&(words[1].load(Ordering::Relaxed) as u32).to_le_bytes());
    for w in &words[2..HEADER_CHECKED_WORDS] {
        h.update(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    h.finalize()
}

/// The capacity a rebuilt table gets for `live` entries: at most a quarter full, so it grows rarely.
pub fn capacity_for(live: u64) -> u64 {
    (live.saturating_mul(4))
        .next_power_of_two()
        .clamp(MIN_CAPACITY, MAX_CAPACITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const CAP: u64 = 1 << 14;

    fn table(capacity: u64) -> Vec<AtomicU64> {
        (0..file_len(capacity) / 8)
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    fn loc(n: u64) -> Location {
        Location {
            segment: (n % 7) as u32 + 1,
            len: 80,
            offset: n * 80,
        }
    }

    proptest! {
        #[test]
        fn finds_every_inserted_key_and_no_other(keys in proptest::collection::hash_set(any::<[u8; 32]>(), 0..2000),
                                                 absent in proptest::collection::vec(any::<[u8; 32]>(), 0..50)) {
            let words = table(CAP);
            let index = Index::init(&words, CAP, 1, 0);
            // The store confirms a candidate by reading its record; here the map plays the records.
            let mut where_is: HashMap<Location, [u8; 32]> = HashMap::new();
            for (n, key) in keys.iter().enumerate() {
                let l = loc(n as u64);
                index.insert(key, l).unwrap();
                where_is.insert(l, *key);
            }
            prop_assert_eq!(index.get(Counter::LiveEntries), keys.len() as u64);
            for (n, key) in keys.iter().enumerate() {
                let found = index.find(key, |l| where_is[&l] == *key);
                prop_assert_eq!(found.map(|f| f.1), Some(loc(n as u64)));
            }
            for key in absent.iter().filter(|k| !keys.contains(*k)) {
                prop_assert!(index.find(key, |l| where_is[&l] == *key).is_none());
            }
        }

        #[test]
        fn removed_keys_are_gone_and_others_stay(keys in proptest::collection::hash_set(any::<[u8; 32]>(), 1..500),
                                                 remove_every in 1usize..5) {
            let words = table(CAP);
            let index = Index::init(&words, CAP, 1, 0);
            let keys: Vec<_> = keys.into_iter().collect();
            let mut where_is = HashMap::new();
            for (n, key) in keys.iter().enumerate() {
                index.insert(key, loc(n as u64)).unwrap();
                where_is.insert(loc(n as u64), *key);
            }
            for key in keys.iter().step_by(remove_every) {
                let (slot, _) = index.find(key, |l| where_is[&l] == *key).unwrap();
                index.remove(slot);
            }
            for (n, key) in keys.iter().enumerate() {
                let found = index.find(key, |l| where_is[&l] == *key).is_some();
                prop_assert_eq!(found, n % remove_every != 0);
            }
            // A rebuilt copy holds exactly the survivors.
            let bigger = table(CAP * 2);
            let copy = Index::init(&bigger, CAP * 2, 2, 0);
            index.copy_into(&copy, |_| true).unwrap();
            prop_assert_eq!(copy.live().count(), keys.len() - keys.len().div_ceil(remove_every));
            for (n, key) in keys.iter().enumerate() {
                prop_assert_eq!(copy.find(key, |l| where_is[&l] == *key).is_some(), n % remove_every != 0);
            }
        }

        #[test]
        fn a_damaged_slot_is_skipped_never_misread(keys in proptest::collection::hash_set(any::<[u8; 32]>(), 1..200),
                                                   word in 1usize..4, bit in 0u32..64) {
            let words = table(CAP);
            let index = Index::init(&words, CAP, 1, 0);
            let keys: Vec<_> = keys.into_iter().collect();
            let mut slots = vec![];
            for (n, key) in keys.iter().enumerate() {
                slots.push(index.insert(key, loc(n as u64)).unwrap());
            }
            let victim = slots[0];
            words[HEADER_WORDS + victim as usize * SLOT_WORDS + word].fetch_xor(1 << bit, Ordering::Relaxed);
            // The damaged slot never yields a location that was not inserted for that key.
            let mut seen = vec![];
            index.find(&keys[0], |l| { seen.push(l); false });
            prop_assert!(seen.iter().all(|l| keys.iter().enumerate().any(|(n, _)| loc(n as u64) == *l)));
            prop_assert!(!seen.contains(&loc(0)));
            prop_assert_eq!(index.damaged_slots(), 1);
        }
    }

    #[test]
    fn a_damaged_header_is_refused() {
        let words = table(CAP);
        Index::init(&words, CAP, 1, 0);
        assert!(Index::open(&words).is_ok());
        words[3].fetch_xor(4, Ordering::Relaxed);
        assert_eq!(
            Index::open(&words).err(),
            Some(IndexError::BadHeaderChecksum)
        );
        words[3].fetch_xor(4, Ordering::Relaxed);
        words[0].store(7, Ordering::Relaxed);
        assert_eq!(Index::open(&words).err(), Some(IndexError::BadMagic));
    }

    #[test]
    fn rebuild_is_due_at_half_full() {
        let words = table(CAP);
        let index = Index::init(&words, CAP, 1, 0);
        let mut n = 0u64;
        while !index.needs_rebuild() {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            index.insert(&key, loc(n)).unwrap();
            n += 1;
        }
        assert_eq!(n, CAP / 2);
    }
}
