//! Request keys: SHA-256 of a request serialised as compact, sorted-key JSON.
//!
//! The bytes match `orjson.dumps(request, option=OPT_SORT_KEYS)`, which is what DSPy hashes, so
//! turbodspy and DSPy agree on the key of every JSON-native request.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::RefCell;

/// A JSON value borrowed from the caller where it can be (strings stay in place).
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in insertion order; serialisation sorts them by key.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// The hex SHA-256 of the canonical JSON of `request`, leaving out the top-level keys in `ignored`.
pub fn request_key(request: &Json, ignored: &[&str]) -> String {
    let mut buf = Vec::with_capacity(1024);
    match request {
        Json::Object(members) => {
            let mut kept: Vec<(&str, &Json)> = members
                .iter()
                .filter(|(k, _)| !ignored.contains(&k.as_ref()))
                .map(|(k, v)| (k.as_ref(), v))
                .collect();
            write_sorted_object(&mut kept, &mut buf, |v, out| {
                write_json(v, out);
                Ok::<(), ()>(())
            })
            .expect("plain JSON always writes");
        }
        other => write_json(other, &mut buf),
    }
    key_of_canonical(&buf)
}

/// The key of canonical JSON bytes: their SHA-256 in hex (resuming from the previous request's prefix).
pub fn key_of_canonical(canonical: &[u8]) -> String {
    PREFIX_HASHER.with(|hasher| hasher.borrow_mut().sha256_hex(canonical))
}

thread_local! {
    static PREFIX_HASHER: RefCell<PrefixHasher> = RefCell::new(PrefixHasher::default());
}

/// SHA-256 that resumes from the state of the prefix it shared with the previous input.
///
/// Calls in a batch differ only after a long shared prefix (the sorted keys put `messages`, with the
/// system prompt, ahead of the varying user message), so most of each request's blocks were already
/// compressed for the one before. The digest is always exactly SHA-256 of the input.
#[derive(Default)]
pub struct PrefixHasher {
    previous: Vec<u8>,
    /// The hash state after `previous[..len]`, `len` a multiple of the 64-byte block size.
    resume: Option<(usize, Sha256)>,
}

/// Requests larger than this (images inlined as base64) are hashed plainly and not kept per thread.
const KEEP_AT_MOST: usize = 256 * 1024;

impl PrefixHasher {
    pub fn sha256_hex(&mut self, bytes: &[u8]) -> String {
        if bytes.len() > KEEP_AT_MOST {
            self.forget();
            return sha256_hex(bytes);
        }
        let digest = self.digest(bytes);
        self.previous.clear();
        self.previous.extend_from_slice(bytes);
        hex_string(&hex(&digest))
    }

    /// Like [`PrefixHasher::sha256_hex`], but `bytes` becomes the kept input by a swap of buffers; `bytes`
    /// is left empty, holding the previous input's allocation.
    pub fn sha256_hex_keeping(&mut self, bytes: &mut Vec<u8>) -> [u8; 64] {
        if bytes.len() > KEEP_AT_MOST {
            self.forget();
            let digest = hex(&Sha256::digest(&bytes[..]));
            bytes.clear();
            return digest;
        }
        let digest = hex(&self.digest(bytes));
        std::mem::swap(&mut self.previous, bytes);
        bytes.clear();
        digest
    }

    fn forget(&mut self) {
        self.previous = Vec::new();
        self.resume = None;
    }

    /// SHA-256 of `bytes`, resuming from the kept state where `bytes` starts like the previous input.
    fn digest(&mut self, bytes: &[u8]) -> [u8; 32] {
        let shared = common_prefix_len(&self.previous, bytes);
        let keep = shared / 64 * 64;
        let (mut hasher, done) = match &self.resume {
            Some((len, state)) if *len <= keep => (state.clone(), *len),
            _ => (Sha256::new(), 0),
        };
        if keep > done {
            hasher.update(&bytes[done..keep]);
            self.resume = Some((keep, hasher.clone()));
            hasher.update(&bytes[keep..]);
        } else {
            if done == 0 {
                self.resume = None;
            }
            hasher.update(&bytes[done..]);
        }
        hasher.finalize().into()
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let limit = a.len().min(b.len());
    let (a, b) = (&a[..limit], &b[..limit]);
    // Large blocks first (one memcmp each), then words, then the bytes of the word that differs.
    let mut i = 0;
    while i + 256 <= limit && a[i..i + 256] == b[i..i + 256] {
        i += 256;
    }
    while i + 8 <= limit {
        let word = |s: &[u8]| u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"));
        let diff = word(a) ^ word(b);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < limit && a[i] == b[i] {
        i += 1;
    }
    i
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_string(&hex(&Sha256::digest(bytes)))
}

/// The 64 lowercase hex digits of a SHA-256 digest.
fn hex(digest: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, &byte) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[(byte >> 4) as usize];
        pair[1] = HEX[(byte & 0xf) as usize];
    }
    out
}

fn hex_string(digits: &[u8; 64]) -> String {
    digits.iter().map(|&d| d as char).collect()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the canonical (compact, sorted-key) JSON of `value` to `out`.
pub fn write_json(value: &Json, out: &mut Vec<u8>) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Json::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        Json::Float(f) => write_float(*f, out),
        Json::Str(s) => write_str(s, out),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out);
            }
            out.push(b']');
        }
        Json::Object(members) => {
            let mut members: Vec<(&str, &Json)> =
                members.iter().map(|(k, v)| (k.as_ref(), v)).collect();
            write_sorted_object(&mut members, out, |v, out| {
                write_json(v, out);
                Ok::<(), ()>(())
            })
            .expect("plain JSON always writes");
        }
    }
}

/// Writes `{"k":v,...}` with members sorted by key; `write_value` writes each value. Callers with
/// values of their own kind (the pyo3 layer writes Python objects directly) share the ordering rule.
pub fn write_sorted_object<V, E>(
    members: &mut [(&str, V)],
    out: &mut Vec<u8>,
    mut write_value: impl FnMut(&V, &mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    // Byte order of UTF-8 equals code point order, which is how orjson sorts keys.
    if !members.is_sorted_by(|a, b| key_order(a.0, b.0).is_le()) {
        members.sort_unstable_by(|a, b| key_order(a.0, b.0));
    }
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        write_value(value, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// Byte order of keys, compared inline: keys are short and usually differ in their first bytes, where a
/// `memcmp` call would cost more than the comparison.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// JSON string escaping as orjson does it: only `"`, `\` and control characters are escaped;
/// everything else, non-ASCII included, is written as UTF-8.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    // Keys and short values ("role", "user", a model name) are clean: one check, one copy.
    if bytes.len() < 32 && !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip clean bytes 32 and then 8 at a time: most prompt text needs no escaping at all.
        if i + 32 <= bytes.len() && !block_needs_escape(&bytes[i..i + 32]) {
            i += 32;
            continue;
        }
        if i + 8 <= bytes.len() {
            let word = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("eight bytes"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of 32 bytes needs escaping.
fn block_needs_escape(block: &[u8]) -> bool {
    let block: &[u8; 32] = block.try_into().expect("32 bytes");
    // A byte needs escaping when one of these is zero: its excess over 0x1f, its xor with `"`, its xor
    // with `\`. The minimum over the block (no early exit) compiles to saturating subtracts and minimums
    // on whole vector registers.
    block.iter().fold(u8::MAX, |least, &b| {
        least
            .min(b.saturating_sub(0x1f))
            .min(b ^ b'"')
            .min(b ^ b'\\')
    }) == 0
}

/// Whether any of the eight bytes of `word` is a control character, `"` or `\` (SWAR byte tests).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit of bytes that had it clear.
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space | has_zero(word ^ (ONES * b'"' as u64)) | has_zero(word ^ (ONES * b'\\' as u64))
        != 0
}

/// Floats as orjson writes them: the shortest round-trip digits, positional for decimal
/// exponents -5..16 (with `.0` on integral values), otherwise `d.ddde+NN` / `d.ddde-N`;
/// NaN and infinities become `null`.
pub fn write_float(f: f64, out: &mut Vec<u8>) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if write_tenths(f, out) {
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    // ryu is positional for exactly the exponents orjson writes positionally (-5..16), and then both
    // write the same text; only the scientific forms differ.
    if !text.as_bytes().contains(&b'e') {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let (negative, digits, exp) = shortest_digits(text);
    if negative {
        out.push(b'-');
    }
    // The value is 0.d1d2...dk x 10^(exp+1), i.e. d1.d2...dk x 10^exp.
    if (-5..16).contains(&exp) {
        let k = digits.len() as i32;
        if exp < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(&digits);
        } else if exp + 1 >= k {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', (exp + 1 - k) as usize));
            out.extend_from_slice(b".0");
        } else {
            let point = (exp + 1) as usize;
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        if exp > 0 {
            out.push(b'+');
        }
        out.extend_from_slice(itoa::Buffer::new().format(exp).as_bytes());
    }
}

/// Writes `f` as `d.d` when it is a whole number of tenths (a temperature, a top_p), without the general
/// shortest-digits search; returns false, having written nothing, for any other value.
///
/// `t / 10.0` is the double nearest to t/10, so the text `t/10` reads back as `f`; below 1e9 doubles are
/// far closer together than 0.1, so no other text of as few digits does, and this is the shortest form.
fn write_tenths(f: f64, out: &mut Vec<u8>) -> bool {
    if f.is_nan() || f.abs() >= 1e9 {
        return false;
    }
    let tenths = (f * 10.0).round();
    if tenths / 10.0 != f || tenths % 10.0 == 0.0 {
        return false;
    }
    let tenths = tenths as i64;
    if tenths < 0 {
        out.push(b'-');
    }
    let magnitude = tenths.unsigned_abs();
    out.extend_from_slice(itoa::Buffer::new().format(magnitude / 10).as_bytes());
    out.push(b'.');
    out.push(b'0' + (magnitude % 10) as u8);
    true
}

/// Splits ryu's output into sign, significant digits (no leading or trailing zeros, at least
/// one digit) and the decimal exponent of the first digit.
fn shortest_digits(text: &str) -> (bool, Vec<u8>, i32) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, mut exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
    exp += int_part.len() as i32 - 1;
    let leading = digits.iter().take_while(|&&d| d == b'0').count();
    if leading == digits.len() {
        return (negative, vec![b'0'], 0);
    }
    digits.drain(..leading);
    exp -= leading as i32;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    (negative, digits, exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float_text(f: f64) -> String {
        let mut out = Vec::new();
        write_float(f, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_match_orjson() {
        // Expected strings were produced by orjson 3.13.
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1e-7, "1e-7"),
            (1e-6, "1e-6"),
            (1e-5, "0.00001"),
            (0.0001, "0.0001"),
            (0.000123, "0.000123"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (100.0, "100.0"),
            (123456789.123, "123456789.123"),
            (9999000000000000.0, "9999000000000000.0"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_text(value), expected, "{value:e}");
        }
    }

    #[test]
    fn tenths_are_written_as_ryu_writes_them() {
        // ryu's positional text is orjson's (the hypothesis test in tests/ checks that against orjson).
        let values = (-200_000..200_000)
            .map(|t| t as f64 / 10.0)
            .chain((0..2000).map(|k| 999_999_900.0 + k as f64 / 10.0))
            .chain([0.1 + 0.2, 0.7 * 3.0, 1.0 / 3.0, 1e-7, 123456.78, -0.0]);
        let mut taken = 0;
        for f in values {
            let mut fast = Vec::new();
            if write_tenths(f, &mut fast) {
                taken += 1;
                assert_eq!(
                    fast,
                    ryu::Buffer::new().format_finite(f).as_bytes(),
                    "{f:e}"
                );
            } else {
                assert!(fast.is_empty());
            }
        }
        assert!(taken > 300_000, "only {taken} values took the short path");
    }

    #[test]
    fn strings_escape_like_orjson() {
        let mut out = Vec::new();
        write_str("é\u{2028}\u{7f}\u{1f}\"\\ \n\t/", &mut out);
        assert_eq!(out, "\"é\u{2028}\u{7f}\\u001f\\\"\\\\ \\n\\t/\"".as_bytes());
    }

    #[test]
    fn objects_sort_by_code_point_and_drop_ignored_keys() {
        let request = Json::Object(vec![
            ("z".into(), Json::Int(2)),
            ("é".into(), Json::Int(1)),
            ("Z".into(), Json::UInt(3)),
            ("api_key".into(), Json::Str("secret".into())),
        ]);
        let mut out = Vec::new();
        write_json(&request, &mut out);
        assert_eq!(
            out,
            "{\"Z\":3,\"api_key\":\"secret\",\"z\":2,\"é\":1}".as_bytes()
        );
        let expected = sha256_hex("{\"Z\":3,\"z\":2,\"é\":1}".as_bytes());
        assert_eq!(request_key(&request, &["api_key"]), expected);
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    proptest::proptest! {
        // Batches share long prefixes; whatever the sequence, each digest is plain SHA-256.
        #[test]
        fn prefix_reuse_never_changes_a_digest(
            common in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            tails in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 1..12),
            cut in 0usize..400,
        ) {
            let mut hasher = PrefixHasher::default();
            for (i, tail) in tails.iter().enumerate() {
                let head = if i % 3 == 2 { &common[..cut.min(common.len())] } else { &common[..] };
                let input: Vec<u8> = head.iter().chain(tail).copied().collect();
                proptest::prop_assert_eq!(hasher.sha256_hex(&input), sha256_hex(&input));
            }
        }

        // serde_json's shortest float form parses back to the same value; ours must too.
        #[test]
        fn floats_round_trip(f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let text = float_text(f);
            let parsed: f64 = text.parse().unwrap();
            proptest::prop_assert_eq!(parsed.to_bits(), f.to_bits());
        }

        #[test]
        fn strings_round_trip_through_a_json_parser(s in ".*") {
            let mut out = Vec::new();
            write_str(&s, &mut out);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(parsed, s);
        }
    }
}
