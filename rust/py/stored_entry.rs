//! `StoredEntry`: an LM cache entry read from the disk store, checked whole but decoded only as far as a hit
//! needs (its outputs, cost and response model). The rest stays encoded in a `StoredRecord` until someone
//! looks at it.

use super::store::decode_objects;
use crate::store::held::HeldValue;
use crate::store::value;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};
use std::sync::OnceLock;

/// An LM record's `outputs` when they are the text of each choice's message, which the response holds.
pub const OUTPUTS_ARE_MESSAGE_CONTENTS: &str = "message contents";

/// The marker as stored: the string tag, its length (one LEB128 byte), its bytes.
const OUTPUTS_MARKER_ENCODED: [u8; 18] = {
    let text = OUTPUTS_ARE_MESSAGE_CONTENTS.as_bytes();
    let mut encoded = [0u8; 18];
    encoded[0] = value::STR;
    encoded[1] = text.len() as u8;
    let mut i = 0;
    while i < text.len() {
        encoded[2 + i] = text[i];
        i += 1;
    }
    encoded
};

/// The members a hit reads (the first three are its `leading` values), and the response, where an
/// `outputs` marker points.
const HIT_MEMBERS: [&[u8]; 4] = [b"outputs", b"cost", b"response_model", b"response"];

/// A record read from the store, checked (checksum and structure) but decoded only on request. Its bytes
/// stay where the store mapped them (see `crate::store::held`). It holds no Python objects, so whatever
/// holds it (a history entry's response) makes no reference cycle.
#[pyclass(frozen, module = "turbodspy._core")]
pub struct StoredRecord {
    value: HeldValue,
}

#[pymethods]
impl StoredRecord {
    /// The whole record as Python objects.
    fn decode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        decode_objects(py, &self.value.bytes())
    }

    /// The encoded size in bytes.
    fn __len__(&self) -> usize {
        self.value.bytes().len()
    }
}

/// A cache entry read from disk, as the memory tier keeps it (it reads like `turbodspy.clients.cache.CacheEntry`).
#[pyclass(frozen, module = "turbodspy._core")]
pub struct StoredEntry {
    /// The record, encoded.
    #[pyo3(get)]
    stored: Py<StoredRecord>,
    /// `(outputs, cost, response_model)`, None for any member the record lacks; `outputs` stored as the
    /// message-contents marker comes back as a tuple of that text (None if the response is not shaped so),
    /// which hits can share as it is.
    #[pyo3(get)]
    leading: Py<PyTuple>,
    /// What hits on this entry hand out, worked out by its first hit (the LM layer's business).
    derived: OnceLock<Py<PyAny>>,
    /// The whole record, decoded on first request.
    record: OnceLock<Py<PyAny>>,
}

#[pymethods]
impl StoredEntry {
    /// The encoded size in bytes (what the memory tier counts).
    #[getter]
    fn size(&self) -> usize {
        self.stored.get().__len__()
    }

    #[getter]
    fn derived(&self, py: Python<'_>) -> Py<PyAny> {
        self.derived
            .get()
            .map_or_else(|| py.None(), |derived| derived.clone_ref(py))
    }

    /// Set once (None sets nothing): a second thread's equal result for the same entry is dropped.
    #[setter]
    fn set_derived(&self, py: Python<'_>, derived: Py<PyAny>) {
        if !derived.is_none(py) {
            let _ = self.derived.set(derived);
        }
    }

    /// The objects it holds, for the garbage collector.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.stored)?;
        visit.call(&self.leading)?;
        if let Some(derived) = self.derived.get() {
            visit.call(derived)?;
        }
        if let Some(record) = self.record.get() {
            visit.call(record)?;
        }
        Ok(())
    }

    /// The whole record as Python objects, decoded once and kept.
    #[getter]
    fn record(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(record) = self.record.get() {
            return Ok(record.clone_ref(py));
        }
        // Racing threads each decode; the first result is kept and handed to all.
        let _ = self.record.set(self.stored.get().decode(py)?.unbind());
        Ok(self.record.get().expect("set above").clone_ref(py))
    }
}

impl StoredEntry {
    /// The entry for an encoded record that passed its checksum, or None if it is not a valid record.
    pub(super) fn read(py: Python<'_>, value: HeldValue) -> PyResult<Option<StoredEntry>> {
        // One walk checks the whole record and finds the members a hit needs. A value that is not a record
        // (a dict) is one only a writer other than turbodspy's leaves: a miss too.
        let bytes = value.bytes();
        let mut spans = [None; HIT_MEMBERS.len()];
        if value::validate_record(&bytes, &HIT_MEMBERS, &mut spans).is_err() {
            return Ok(None);
        }
        let [outputs, cost, response_model, response] = spans;
        let outputs = match outputs {
            Some(marker) if marker == OUTPUTS_MARKER_ENCODED => match response {
                Some(response) => message_contents(py, response)?.map(Bound::into_any),
                None => None,
            },
            Some(outputs) => Some(decode_objects(py, outputs)?),
            None => None,
        };
        let decoded = |span: Option<&[u8]>| span.map(|bytes| decode_objects(py, bytes)).transpose();
        let leading = PyTuple::new(py, [outputs, decoded(cost)?, decoded(response_model)?])?;
        Ok(Some(StoredEntry {
            stored: Py::new(py, StoredRecord { value })?,
            leading: leading.unbind(),
            derived: OnceLock::new(),
            record: OnceLock::new(),
        }))
    }
}

/// The `content` of each choice's `message` in an encoded `response` (checked), or None when it is not
/// shaped so.
fn message_contents<'py>(
    py: Python<'py>,
    response: &[u8],
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let choices = value::member(response, b"choices")?.map(value::items);
    let Some(choices) = choices.transpose()?.flatten() else {
        return Ok(None);
    };
    let mut contents = Vec::with_capacity(1);
    for choice in choices {
        let Some(message) = value::member(choice?, b"message")? else {
            return Ok(None);
        };
        let Some(content) = value::member(message, b"content")? else {
            return Ok(None);
        };
        contents.push(decode_objects(py, value::first(content)?)?);
    }
    PyTuple::new(py, contents).map(Some)
}
