//! Store-level tests on a real directory (one process; the multi-process tests are in Python).

use super::*;
use proptest::prelude::*;

fn key(n: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    k[8..16].copy_from_slice(&n.to_le_bytes());
    k
}

fn meta(tokens: u64) -> RecordMeta {
    RecordMeta {
        created_ms: 1,
        tokens,
        cost_nanos: tokens * 10,
    }
}

fn value(n: u64, len: usize) -> Vec<u8> {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(len)).into_bytes()
}

#[test]
fn put_then_get_in_this_and_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    assert!(store.get(&key(1), true).unwrap().is_none());
    for n in 0..100 {
        store.put(&key(n), &value(n, 100), meta(n)).unwrap();
    }
    let fresh = Store::new(dir.path(), 1 << 30);
    for n in 0..100 {
        assert_eq!(
            fresh
                .get(&key(n), true)
                .unwrap()
                .unwrap()
                .value
                .bytes()
                .to_vec(),
            value(n, 100)
        );
        assert_eq!(store.get(&key(n), false).unwrap().unwrap().meta, meta(n));
    }
    assert!(fresh.get(&key(1000), true).unwrap().is_none());
    let stats = fresh.stats().unwrap();
    assert_eq!(stats.entries, 100);
    assert_eq!(stats.hits, 100);
    assert_eq!(
        stats.misses, 1,
        "the miss before the store existed is counted only by its process"
    );
    assert_eq!(stats.tokens_saved, (0..100).sum::<u64>());
}

#[test]
fn a_new_value_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    store.put(&key(1), b"{\"a\":1}", meta(1)).unwrap();
    store.put(&key(1), b"{\"a\":2}", meta(1)).unwrap();
    store.put(&key(1), b"{\"a\":2}", meta(1)).unwrap();
    assert_eq!(
        store
            .get(&key(1), false)
            .unwrap()
            .unwrap()
            .value
            .bytes()
            .to_vec(),
        b"{\"a\":2}"
    );
    assert_eq!(store.stats().unwrap().entries, 1);
    let report = store.verify(&|_| true).unwrap();
    assert_eq!((report.entries, report.bad), (1, 0));
    assert_eq!(
        Store::new(dir.path(), 1 << 30)
            .get(&key(1), false)
            .unwrap()
            .unwrap()
            .value
            .bytes()
            .to_vec(),
        b"{\"a\":2}"
    );
}

#[test]
fn the_index_grows_past_its_first_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    // Enough for every shard to grow past its first capacity twice.
    let n = 30_000;
    for i in 0..n {
        store.put(&key(i), &value(i, 8), meta(1)).unwrap();
    }
    let fresh = Store::new(dir.path(), 1 << 30);
    for i in 0..n {
        assert_eq!(
            fresh
                .get(&key(i), false)
                .unwrap()
                .unwrap()
                .value
                .bytes()
                .to_vec(),
            value(i, 8),
            "key {i}"
        );
    }
    assert_eq!(fresh.stats().unwrap().entries, n);
}

#[test]
fn eviction_keeps_the_store_under_its_limit_and_the_newest_entries() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 4 << 20;
    let store = Store::new(dir.path(), limit);
    for i in 0..2000 {
        store.put(&key(i), &value(i, 5000), meta(1)).unwrap();
        let stats = store.stats().unwrap();
        assert!(stats.bytes <= limit, "{} bytes after put {i}", stats.bytes);
    }
    assert_eq!(
        store
            .get(&key(1999), false)
            .unwrap()
            .unwrap()
            .value
            .bytes()
            .to_vec(),
        value(1999, 5000)
    );
    assert!(store.get(&key(0), false).unwrap().is_none());
    let stats = store.stats().unwrap();
    assert!(stats.entries > 300, "only {} entries kept", stats.entries);
}

#[test]
fn clear_empties_and_the_store_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    let other = Store::new(dir.path(), 1 << 30);
    for i in 0..50 {
        store.put(&key(i), &value(i, 10), meta(1)).unwrap();
    }
    assert!(other.get(&key(3), false).unwrap().is_some());
    store.clear().unwrap();
    assert!(other.get(&key(3), false).unwrap().is_none());
    assert_eq!(other.stats().unwrap().entries, 0);
    other.put(&key(3), b"{}", meta(1)).unwrap();
    assert_eq!(
        store
            .get(&key(3), false)
            .unwrap()
            .unwrap()
            .value
            .bytes()
            .to_vec(),
        b"{}"
    );
}

#[test]
fn a_lost_or_damaged_index_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    for i in 0..200 {
        store.put(&key(i), &value(i, 30), meta(1)).unwrap();
    }
    drop(store);
    let path = dir.path().join(shard_file(shard_of(&key(5))));
    let mut bytes = fs::read(&path).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    assert!(
        store.get(&key(5), false).unwrap().is_none(),
        "a damaged index is a miss, not an error"
    );
    let report = store.verify(&|_| true).unwrap();
    assert!(report.index_was_unreadable);
    assert_eq!(report.entries, 200);
    assert_eq!(
        store
            .get(&key(5), false)
            .unwrap()
            .unwrap()
            .value
            .bytes()
            .to_vec(),
        value(5, 30)
    );
    for i in 0..SHARDS {
        fs::remove_file(dir.path().join(shard_file(i))).unwrap();
    }
    let store = Store::new(dir.path(), 1 << 30);
    store.put(&key(999), b"{}", meta(1)).unwrap();
    assert_eq!(store.stats().unwrap().entries, 201);
}

#[test]
fn damaged_counters_in_the_index_header_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    for i in 0..3000 {
        store.put(&key(i), &value(i, 8), meta(1)).unwrap();
    }
    drop(store);
    for i in 0..SHARDS {
        let path = dir.path().join(shard_file(i));
        let mut bytes = fs::read(&path).unwrap();
        for (word, v) in [
            (Counter::LiveEntries, 0u64),
            (Counter::OccupiedSlots, 0),
            (Counter::DataBytes, 7),
        ] {
            let at = word as usize * 8;
            bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        fs::write(&path, bytes).unwrap();
    }
    let store = Store::new(dir.path(), 1 << 30);
    for i in 3000..20000 {
        store.put(&key(i), &value(i, 8), meta(1)).unwrap();
    }
    for i in 0..20000 {
        assert_eq!(
            store
                .get(&key(i), false)
                .unwrap()
                .unwrap()
                .value
                .bytes()
                .to_vec(),
            value(i, 8),
            "key {i}"
        );
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tds"))
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn flipped_bytes_give_misses_or_right_values_never_wrong_ones(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 1 << 30);
        for i in 0..60 {
            store.put(&key(i), &value(i, 40), meta(1)).unwrap();
        }
        let seg = &segment_files(dir.path())[0];
        let mut bytes = fs::read(seg).unwrap();
        for (at, x) in &flips {
            let at = at.index(bytes.len());
            bytes[at] ^= x;
        }
        // Rewriting in place is what damage looks like; turbodspy itself never does this.
        fs::write(seg, &bytes).unwrap();
        let fresh = Store::new(dir.path(), 1 << 30);
        let mut missing = 0;
        for i in 0..60 {
            match fresh.get(&key(i), false).unwrap() {
                Some(found) => prop_assert_eq!(found.value.bytes().to_vec(), value(i, 40)),
                None => missing += 1,
            }
        }
        let report = fresh.verify(&|_| true).unwrap();
        // A flip in a length field looks like an interrupted write; either way it is found.
        prop_assert!(report.bad + report.interrupted_writes >= 1 || missing == 0);
        prop_assert_eq!(report.entries + missing, 60);
        for i in 0..60 {
            if let Some(found) = fresh.get(&key(i), false).unwrap() {
                prop_assert_eq!(found.value.bytes().to_vec(), value(i, 40));
            }
        }
    }
}

#[test]
fn a_store_that_checked_a_header_notices_it_damaged_and_follows_the_rebuilt_index() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let a = Store::new(dir.path(), 1 << 30);
    for n in 0..50 {
        a.put(&key(n), &value(n, 8), meta(1)).unwrap();
    }
    // Every shard of A has been viewed, its header checked. Damage one header's magic in place.
    let shard = shard_of(&key(1000));
    let mut file = OpenOptions::new()
        .write(true)
        .open(dir.path().join(shard_file(shard)))
        .unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(&7u64.to_le_bytes()).unwrap();
    drop(file);
    // Another process finds the shard unreadable and rebuilds it from the segments, then writes.
    let b = Store::new(dir.path(), 1 << 30);
    b.put(&key(1000), &value(1000, 8), meta(1)).unwrap();
    assert_eq!(
        a.get(&key(1000), false)
            .unwrap()
            .map(|f| f.value.bytes().to_vec()),
        Some(value(1000, 8))
    );
    for n in 0..50 {
        assert!(a.get(&key(n), false).unwrap().is_some());
    }
}

/// Segment files of `dir` this process still maps though they were deleted (their disk space held).
fn deleted_segments_mapped(dir: &Path) -> usize {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let dir = dir.to_str().unwrap();
    maps.lines()
        .filter(|line| line.contains(dir) && line.contains(".tds") && line.ends_with("(deleted)"))
        .count()
}

#[test]
fn values_handed_out_outlive_a_clear_without_holding_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    let other = Store::new(dir.path(), 1 << 30); // another process, as far as the files know
    for i in 0..50 {
        store.put(&key(i), &value(i, 100), meta(1)).unwrap();
    }
    let mine = store.get(&key(1), false).unwrap().unwrap().value;
    let theirs = other.get(&key(2), false).unwrap().unwrap().value;
    assert_eq!(deleted_segments_mapped(dir.path()), 0);
    store.clear().unwrap();
    assert_eq!(
        deleted_segments_mapped(dir.path()),
        1,
        "only the other store still maps the segment"
    );
    assert_eq!(mine.bytes().to_vec(), value(1, 100));
    // The other store lets go when it next looks at the store and sees the index changed.
    assert!(other.get(&key(2), false).unwrap().is_none());
    assert_eq!(
        deleted_segments_mapped(dir.path()),
        0,
        "the other store let go too"
    );
    assert_eq!(theirs.bytes().to_vec(), value(2, 100));
}

#[test]
fn values_handed_out_outlive_eviction_without_holding_evicted_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 20);
    let reader = Store::new(dir.path(), 1 << 20);
    store.put(&key(0), &value(0, 5000), meta(1)).unwrap();
    let mine = store.get(&key(0), false).unwrap().unwrap().value;
    let theirs = reader.get(&key(0), false).unwrap().unwrap().value;
    for i in 1..2000 {
        store.put(&key(i), &value(i, 5000), meta(1)).unwrap();
    }
    assert!(
        store.get(&key(0), false).unwrap().is_none(),
        "the oldest entry was evicted"
    );
    assert_eq!(
        deleted_segments_mapped(dir.path()),
        1,
        "only the reader still maps the first segment"
    );
    assert!(reader.get(&key(1999), false).unwrap().is_some());
    assert_eq!(deleted_segments_mapped(dir.path()), 0);
    assert_eq!(mine.bytes().to_vec(), value(0, 5000));
    assert_eq!(theirs.bytes().to_vec(), value(0, 5000));
}

#[test]
fn values_of_segments_still_on_disk_stay_in_place_when_the_index_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    let reader = Store::new(dir.path(), 1 << 30);
    store.put(&key(0), &value(0, 100), meta(1)).unwrap();
    let held = reader.get(&key(0), false).unwrap().unwrap().value;
    // Growing the index retires shards; the reader remaps, and its value still views the (live) file.
    for i in 1..3000 {
        store.put(&key(i), &value(i, 10), meta(1)).unwrap();
    }
    assert!(reader.get(&key(2999), false).unwrap().is_some());
    assert!(
        matches!(held.bytes(), held::Bytes::Mapped(..)),
        "copied though its file is still there"
    );
    assert_eq!(held.bytes().to_vec(), value(0, 100));
}

/// How many separate mappings of `path` this process holds.
fn mappings_of(path: &Path) -> usize {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let path = path.to_str().unwrap();
    maps.lines().filter(|line| line.ends_with(path)).count()
}

#[test]
fn a_reader_following_a_writer_maps_the_growing_segment_a_few_times_not_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::new(dir.path(), 1 << 30);
    let reader = Store::new(dir.path(), 1 << 30);
    let mut held = vec![];
    for i in 0..3000 {
        writer.put(&key(i), &value(i, 1000), meta(1)).unwrap();
        held.push(reader.get(&key(i), false).unwrap().unwrap().value);
    }
    let segments = segment_files(dir.path());
    assert_eq!(segments.len(), 1, "one segment holds them all");
    let mappings = mappings_of(&segments[0]);
    // The segment grew to ~3 MB one record at a time: its mapping doubled from 1 MiB a few times.
    assert!(
        (1..=6).contains(&mappings),
        "{mappings} mappings of one segment"
    );
    for (i, value) in held.iter().enumerate() {
        assert_eq!(value.bytes().to_vec(), self::value(i as u64, 1000));
    }
}

#[test]
fn a_reader_busy_during_another_stores_clear_lets_every_deleted_segment_go() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let writer = Store::new(dir.path(), 1 << 30);
        let reader = Store::new(dir.path(), 1 << 30);
        for i in 0..200 {
            writer.put(&key(i), &value(i, 200), meta(1)).unwrap();
        }
        let cleared = std::sync::atomic::AtomicBool::new(false);
        let reads = std::sync::atomic::AtomicU64::new(0);
        let held = std::thread::scope(|s| {
            let reading = s.spawn(|| {
                let mut held = vec![];
                let mut i = 0;
                while !cleared.load(Ordering::Acquire) {
                    if let Some(found) = reader.get(&key(i % 200), false).unwrap() {
                        held.push((i % 200, found.value));
                    }
                    i += 1;
                    reads.store(i, Ordering::Release);
                }
                held
            });
            // The clear starts at a different point of the reader's walk each round.
            while reads.load(Ordering::Acquire) < 10 + 37 * round {
                std::thread::yield_now();
            }
            writer.clear().unwrap();
            cleared.store(true, Ordering::Release);
            reading.join().unwrap()
        });
        assert!(!held.is_empty());
        // Looking at the store once more, the reader sees the clear, whenever its reads fell.
        assert!(reader.get(&key(0), false).unwrap().is_none());
        assert_eq!(
            deleted_segments_mapped(dir.path()),
            0,
            "round {round}: a deleted segment stays mapped"
        );
        for (i, value) in &held {
            assert_eq!(value.bytes().to_vec(), self::value(*i, 200));
        }
    }
}

#[test]
fn values_outlive_their_store_without_holding_files_deleted_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::new(dir.path(), 1 << 30);
    for i in 0..50 {
        writer.put(&key(i), &value(i, 100), meta(1)).unwrap();
    }
    let replaced = Store::new(dir.path(), 1 << 30);
    let held = replaced.get(&key(7), false).unwrap().unwrap().value;
    drop(replaced);
    writer.clear().unwrap();
    assert_eq!(deleted_segments_mapped(dir.path()), 0);
    assert_eq!(held.bytes().to_vec(), value(7, 100));
}

#[test]
fn a_writer_whose_segment_a_dying_clear_deleted_starts_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::new(dir.path(), 1 << 30);
    writer.put(&key(1), &value(1, 100), meta(1)).unwrap(); // the writer has the segment open
                                                           // What a `clear` killed after deleting the segments, before publishing the index, leaves behind.
    for segment in segment_files(dir.path()) {
        fs::remove_file(segment).unwrap();
    }
    writer.put(&key(2), &value(2, 100), meta(1)).unwrap();
    let fresh = Store::new(dir.path(), 1 << 30);
    assert_eq!(
        fresh
            .get(&key(2), false)
            .unwrap()
            .unwrap()
            .value
            .bytes()
            .to_vec(),
        value(2, 100)
    );
    assert!(fresh.get(&key(1), false).unwrap().is_none());
}

#[test]
fn index_changes_keep_segments_still_on_disk_mapped_once() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::new(dir.path(), 1 << 30);
    let reader = Store::new(dir.path(), 1 << 30);
    for i in 0..10 {
        writer.put(&key(i), &value(i, 100), meta(1)).unwrap();
    }
    let mut held = vec![];
    for _ in 0..200 {
        held.push(reader.get(&key(0), true).unwrap().unwrap().value);
        writer.verify(&|_| true).unwrap(); // publishes a new index each time
    }
    let mappings = mappings_of(&segment_files(dir.path())[0]);
    assert_eq!(mappings, 1, "{mappings} mappings of one unchanged segment");
    assert!(held.iter().all(|v| v.bytes().to_vec() == value(0, 100)));
}

#[test]
fn a_reader_keeps_no_segment_file_open() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 1 << 20; // 64 KiB segments
    let writer = Store::new(dir.path(), limit);
    for i in 0..60 {
        writer.put(&key(i), &value(i, 10_000), meta(1)).unwrap();
    }
    let open_segments = || {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|fd| {
                fs::read_link(fd.path()).is_ok_and(|p| {
                    p.starts_with(dir.path()) && p.extension().is_some_and(|x| x == "tds")
                })
            })
            .count()
    };
    let before = open_segments();
    let reader = Store::new(dir.path(), limit);
    let mut held = vec![];
    for round in 0..2 {
        for i in 0..60 {
            if let Some(found) = reader.get(&key(i), true).unwrap() {
                held.push(found.value);
            }
        }
        if round == 0 {
            writer.verify(&|_| true).unwrap();
        }
    }
    assert!(held.len() > 20, "{} hits", held.len());
    assert_eq!(open_segments(), before);
}

#[test]
fn lookups_before_anything_is_written_need_not_release_the_gil() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 1 << 30);
    for _ in 0..3 {
        assert!(store.get(&key(1), true).unwrap().is_none());
        assert!(matches!(store.try_get(&key(1), true), Some(Ok(None))));
    }
}

#[test]
fn an_unchanged_put_after_a_dying_clear_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::new(dir.path(), 1 << 30);
    writer.put(&key(1), &value(1, 100), meta(1)).unwrap();
    // The writer maps the segment.
    assert!(writer.get(&key(1), true).unwrap().is_some());
    // What a `clear` killed after deleting the segments, before publishing the index, leaves behind.
    for segment in segment_files(dir.path()) {
        fs::remove_file(segment).unwrap();
    }
    writer.put(&key(1), &value(1, 100), meta(1)).unwrap();
    let fresh = Store::new(dir.path(), 1 << 30);
    assert_eq!(
        fresh
            .get(&key(1), false)
            .unwrap()
            .map(|f| f.value.bytes().to_vec()),
        Some(value(1, 100))
    );
}

#[test]
fn a_writer_lets_go_of_segments_a_dying_clear_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::new(dir.path(), 1 << 20);
    writer.put(&key(1), &value(1, 100), meta(1)).unwrap();
    let held = writer.get(&key(1), true).unwrap().unwrap().value;
    for segment in segment_files(dir.path()) {
        fs::remove_file(segment).unwrap();
    }
    writer.put(&key(2), &value(2, 100), meta(1)).unwrap();
    assert_eq!(deleted_segments_mapped(dir.path()), 0);
    assert_eq!(held.bytes().to_vec(), value(1, 100));
    assert!(writer.get(&key(1), true).unwrap().is_none());
    assert!(writer.get(&key(2), true).unwrap().is_some());
}

#[test]
fn a_reader_that_counts_nothing_lets_go_after_a_clear() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::new(dir.path(), 1 << 30);
    let reader = Store::new(dir.path(), 1 << 30);
    let in_shard = |n: u64| {
        let mut k = key(n);
        k[KEY_LEN - 1] = n as u8;
        k
    };
    for i in 0..2 {
        writer.put(&in_shard(i), &value(i, 100), meta(1)).unwrap();
    }
    assert_ne!(shard_of(&in_shard(0)), shard_of(&in_shard(1)));
    let held = reader.get(&in_shard(0), false).unwrap().unwrap().value;
    writer.clear().unwrap();
    // Another shard, looked at for the first time, without counting (so shard 0 is not looked at either).
    assert!(reader.get(&in_shard(1), false).unwrap().is_none());
    assert_eq!(deleted_segments_mapped(dir.path()), 0);
    assert_eq!(held.bytes().to_vec(), value(0, 100));
}
