//! `DiskStore`: the disk tier's Rust store as a Python class. Disk I/O runs with the GIL released.

use crate::store::record::{RecordMeta, KEY_LEN};
use crate::store::{now_ms, Stats, Store, StoreError, VerifyReport};
use pyo3::exceptions::{PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;

/// The one place store errors become Python exceptions. I/O problems are `OSError` (with the errno), so
/// the Python layer can catch them as one family and fall back to memory-only.
fn to_py(err: StoreError) -> PyErr {
    match err {
        StoreError::Io { ref source, .. } => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, err.to_string())),
            None => PyOSError::new_err(err.to_string()),
        },
        StoreError::ReadOnly(_) => PyPermissionError::new_err(err.to_string()),
        StoreError::ValueTooLarge(_) => PyValueError::new_err(err.to_string()),
    }
}

fn parse_key(key: &str) -> PyResult<[u8; KEY_LEN]> {
    let bytes = key.as_bytes();
    let bad = || {
        PyValueError::new_err(format!(
            "cache key must be 64 hex characters (a SHA-256 request key), got {key:?}"
        ))
    };
    if bytes.len() != KEY_LEN * 2 {
        return Err(bad());
    }
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

fn hex(key: &[u8; KEY_LEN]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    key.iter()
        .flat_map(|b| {
            [
                HEX[(b >> 4) as usize] as char,
                HEX[(b & 15) as usize] as char,
            ]
        })
        .collect()
}

/// A cache directory shared by processes: append-only segments and a mapped index.
#[pyclass(frozen, module = "turbodspy._core")]
pub struct DiskStore {
    store: Store,
}

#[pymethods]
impl DiskStore {
    #[new]
    fn new(directory: PathBuf, size_limit_bytes: u64) -> Self {
        DiskStore {
            store: Store::new(directory, size_limit_bytes),
        }
    }

    #[getter]
    fn directory(&self) -> PathBuf {
        self.store.dir().to_owned()
    }

    #[getter]
    fn size_limit_bytes(&self) -> u64 {
        self.store.size_limit()
    }

    /// The value bytes under `key`, or None; counted in the hit/miss statistics.
    fn get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.lookup(py, key, true)
    }

    /// Like `get` but not counted in the statistics (for export and inspection).
    fn peek<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.lookup(py, key, false)
    }

    fn contains(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let key = parse_key(key)?;
        let found = py.detach(|| self.store.get(&key, false)).map_err(to_py)?;
        Ok(found.is_some())
    }

    /// Stores `value` under `key`; `tokens` and `cost` (dollars) are what a later hit saves.
    #[pyo3(signature = (key, value, tokens=0, cost=0.0))]
    fn put(&self, py: Python<'_>, key: &str, value: &[u8], tokens: u64, cost: f64) -> PyResult<()> {
        let key = parse_key(key)?;
        let cost_nanos = if cost.is_finite() && cost > 0.0 {
            (cost * 1e9).round() as u64
        } else {
            0
        };
        let meta = RecordMeta {
            created_ms: now_ms(),
            tokens,
            cost_nanos,
        };
        py.detach(|| self.store.put(&key, value, meta))
            .map_err(to_py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let Stats {
            entries,
            bytes,
            segments,
            hits,
            misses,
            tokens_saved,
            cost_saved_nanos,
            bad_records,
            index_generation,
        } = py.detach(|| self.store.stats()).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("entries", entries)?;
        d.set_item("bytes", bytes)?;
        d.set_item("segments", segments)?;
        d.set_item("hits", hits)?;
        d.set_item("misses", misses)?;
        d.set_item("tokens_saved", tokens_saved)?;
        d.set_item("cost_saved", cost_saved_nanos as f64 / 1e9)?;
        d.set_item("bad_records", bad_records)?;
        d.set_item("index_generation", index_generation)?;
        d.set_item("size_limit_bytes", self.store.size_limit())?;
        d.set_item("directory", self.store.dir())?;
        Ok(d)
    }

    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let VerifyReport {
            ok,
            bad,
            torn_tails,
            damaged_slots,
            index_was_unreadable,
            index_rebuilt,
            entries,
        } = py.detach(|| self.store.verify()).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("checked", ok + bad)?;
        d.set_item("ok", ok)?;
        d.set_item("bad", bad)?;
        d.set_item("torn_tails", torn_tails)?;
        d.set_item("damaged_index_slots", damaged_slots)?;
        d.set_item("index_was_unreadable", index_was_unreadable)?;
        d.set_item("index_rebuilt", index_rebuilt)?;
        d.set_item("entries", entries)?;
        Ok(d)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.store.clear()).map_err(to_py)
    }

    /// Every key with a readable record, as hex strings.
    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let keys = py.detach(|| self.store.keys()).map_err(to_py)?;
        Ok(keys.iter().map(hex).collect())
    }
}

impl DiskStore {
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        count: bool,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let key = parse_key(key)?;
        let found = py.detach(|| self.store.get(&key, count)).map_err(to_py)?;
        Ok(found.map(|f| PyBytes::new(py, &f.value)))
    }
}
