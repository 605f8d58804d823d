//! One cached value as it lies in a segment file: a fixed header, the raw request key, the value bytes.
//!
//! The CRC covers every header field after it, the key and the value, so a record whose bytes were
//! flipped, truncated, or that belongs to another key is never mistaken for a good one.

/// "TDR1", little-endian.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"TDR1");
pub const KEY_LEN: usize = 32;
pub const HEADER_LEN: usize = 40;
/// Where a record's value starts: after the header and the key.
pub const VALUE_OFFSET: usize = HEADER_LEN + KEY_LEN;
/// Records start at multiples of this, so a scan after damage resynchronises quickly.
pub const ALIGN: usize = 8;
/// Values are provider responses (1–100 KB); anything this large is a caller bug, not a response.
pub const MAX_VALUE_LEN: usize = 256 * 1024 * 1024;

/// Encoding of the value bytes (the low byte of `flags`): the tagged binary form of `value.rs`.
pub const ENCODING_TAGGED: u32 = 1;

/// What the store keeps beside the value, so statistics can tell what a hit saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordMeta {
    pub created_ms: u64,
    pub tokens: u64,
    /// Cost of the original call in billionths of a dollar.
    pub cost_nanos: u64,
}

/// A record decoded in place from a mapped segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: &'a [u8; KEY_LEN],
    pub value: &'a [u8],
    pub meta: RecordMeta,
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared length.
    Truncated,
    BadMagic,
    TooLarge,
    BadChecksum,
}

/// Bytes a record of `value_len` takes on disk, padding included.
pub fn encoded_len(value_len: usize) -> usize {
    (HEADER_LEN + KEY_LEN + value_len).div_ceil(ALIGN) * ALIGN
}

/// Appends the encoded record to `out` (padded to `ALIGN`).
///
/// Layout (little-endian): magic u32 | flags u32 | value_len u32 | crc32 u32 | created_ms u64 |
/// tokens u64 | cost_nanos u64 | key [32] | value | zero padding.
pub fn encode(key: &[u8; KEY_LEN], value: &[u8], meta: RecordMeta, flags: u32, out: &mut Vec<u8>) {
    assert!(
        value.len() <= MAX_VALUE_LEN,
        "value larger than MAX_VALUE_LEN"
    );
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&meta.created_ms.to_le_bytes());
    out.extend_from_slice(&meta.tokens.to_le_bytes());
    out.extend_from_slice(&meta.cost_nanos.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = checksum(&out[start..]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + encoded_len(value.len()), 0);
}

/// Decodes the record at the start of `bytes`; returns it and the padded length it occupies.
pub fn decode(bytes: &[u8]) -> Result<(Record<'_>, usize), DecodeError> {
    if bytes.len() < HEADER_LEN + KEY_LEN {
        return Err(DecodeError::Truncated);
    }
    if u32_at(bytes, 0) != RECORD_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let value_len = u32_at(bytes, 8) as usize;
    if value_len > MAX_VALUE_LEN {
        return Err(DecodeError::TooLarge);
    }
    let end = VALUE_OFFSET + value_len;
    if bytes.len() < end {
        return Err(DecodeError::Truncated);
    }
    if checksum(&bytes[..end]) != u32_at(bytes, 12) {
        return Err(DecodeError::BadChecksum);
    }
    let key: &[u8; KEY_LEN] = bytes[HEADER_LEN..VALUE_OFFSET]
        .try_into()
        .expect("slice has KEY_LEN bytes");
    let record = Record {
        key,
        value: &bytes[VALUE_OFFSET..end],
        meta: RecordMeta {
            created_ms: u64_at(bytes, 16),
            tokens: u64_at(bytes, 24),
            cost_nanos: u64_at(bytes, 32),
        },
        flags: u32_at(bytes, 4),
    };
    Ok((record, encoded_len(value_len)))
}

/// The declared padded length of the record at the start of `bytes`, read without checking it.
pub fn declared_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < HEADER_LEN || u32_at(bytes, 0) != RECORD_MAGIC {
        return None;
    }
    let value_len = u32_at(bytes, 8) as usize;
    (value_len <= MAX_VALUE_LEN).then(|| encoded_len(value_len))
}

/// CRC-32 of the record with its own CRC field read as zero.
fn checksum(record: &[u8]) -> u32 {
    // Header and key go in as one 72-byte block with the field zeroed: pieces under 64 bytes take crc32fast's
    // slow path.
    let header_len = record.len().min(HEADER_LEN + KEY_LEN);
    let mut header = [0u8; HEADER_LEN + KEY_LEN];
    header[..header_len].copy_from_slice(&record[..header_len]);
    header[12..16].fill(0);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..header_len]);
    hasher.update(&record[header_len..]);
    hasher.finalize()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> impl Strategy<Value = RecordMeta> {
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(created_ms, tokens, cost_nanos)| {
            RecordMeta {
                created_ms,
                tokens,
                cost_nanos,
            }
        })
    }

    proptest! {
        #[test]
        fn round_trips(key in any::<[u8; 32]>(), value in proptest::collection::vec(any::<u8>(), 0..4096),
                       meta in meta(), flags in any::<u32>()) {
            let mut out = vec![];
            encode(&key, &value, meta, flags, &mut out);
            prop_assert_eq!(out.len() % ALIGN, 0);
            prop_assert_eq!(out.len(), encoded_len(value.len()));
            let (record, len) = decode(&out).unwrap();
            prop_assert_eq!(len, out.len());
            prop_assert_eq!(record.key, &key);
            prop_assert_eq!(record.value, &value[..]);
            prop_assert_eq!(record.meta, meta);
            prop_assert_eq!(record.flags, flags);
        }

        #[test]
        fn any_flipped_bit_is_detected(key in any::<[u8; 32]>(), value in proptest::collection::vec(any::<u8>(), 0..512),
                                       bit in any::<prop::sample::Index>()) {
            let mut out = vec![];
            encode(&key, &value, RecordMeta::default(), 0, &mut out);
            let used = HEADER_LEN + KEY_LEN + value.len();
            let bit = bit.index(used * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            // A flip may turn the record into one that claims more bytes (Truncated) or other magic,
            // but never into a record that decodes.
            prop_assert!(decode(&out).is_err());
        }

        #[test]
        fn truncation_is_detected(value in proptest::collection::vec(any::<u8>(), 0..512), cut in any::<prop::sample::Index>()) {
            let mut out = vec![];
            encode(&[7; 32], &value, RecordMeta::default(), 0, &mut out);
            let used = HEADER_LEN + KEY_LEN + value.len();
            let keep = cut.index(used);
            prop_assert!(decode(&out[..keep]).is_err());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = declared_len(&bytes);
        }
    }

    #[test]
    fn the_checksum_covers_the_key() {
        let mut out = vec![];
        encode(&[1; 32], b"{}", RecordMeta::default(), 0, &mut out);
        out[HEADER_LEN] = 2;
        assert_eq!(decode(&out), Err(DecodeError::BadChecksum));
    }
}
