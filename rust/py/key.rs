//! `request_key(request, ignored)`: Python request dict -> canonical JSON -> SHA-256 hex.

use crate::key::{request_key as key_of, Json};
use pyo3::create_exception;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

create_exception!(
    _core,
    UnsupportedValueError,
    PyTypeError,
    "A request holds a value that is not JSON-native; the caller transforms it and retries."
);

/// Requests nest a few levels (messages -> content parts); anything deeper is not a request.
const MAX_DEPTH: usize = 128;

/// Large requests are hashed without the GIL so other threads keep running.
const DETACH_ABOVE_BYTES: usize = 64 * 1024;

/// `fn_identifier`, when given, is hashed as the request's `_fn_identifier` member (as DSPy adds it),
/// which spares the caller a copy of the request dict.
#[pyfunction]
#[pyo3(signature = (request, ignored=Vec::new(), fn_identifier=None))]
pub fn request_key(
    py: Python<'_>,
    request: &Bound<'_, PyAny>,
    ignored: Vec<String>,
    fn_identifier: Option<String>,
) -> PyResult<String> {
    let mut text_bytes = 0;
    let mut json = to_json(request, 0, &mut text_bytes)?;
    if let (Some(identifier), Json::Object(members)) = (fn_identifier, &mut json) {
        members.retain(|(k, _)| k != "_fn_identifier");
        members.push(("_fn_identifier".into(), Json::Str(identifier.into())));
    }
    let ignored: Vec<&str> = ignored.iter().map(String::as_str).collect();
    if text_bytes > DETACH_ABOVE_BYTES {
        Ok(py.detach(|| key_of(&json, &ignored)))
    } else {
        Ok(key_of(&json, &ignored))
    }
}

/// Converts with owned strings, so the result outlives the GIL; `text_bytes` counts their size.
fn to_json(
    value: &Bound<'_, PyAny>,
    depth: usize,
    text_bytes: &mut usize,
) -> PyResult<Json<'static>> {
    if depth > MAX_DEPTH {
        return Err(UnsupportedValueError::new_err(
            "request nests deeper than 128 levels",
        ));
    }
    if value.is_none() {
        return Ok(Json::Null);
    }
    if let Ok(s) = value.cast::<PyString>() {
        let text = s.to_str()?;
        *text_bytes += text.len();
        return Ok(Json::Str(text.to_owned().into()));
    }
    // bool before int: Python's bool is an int subclass.
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Json::Bool(b.is_true()));
    }
    if let Ok(i) = value.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Json::Int(v));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(Json::UInt(v));
        }
        return Err(UnsupportedValueError::new_err(
            "Integer exceeds 64-bit range",
        ));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return Ok(Json::Float(f.value()));
    }
    if let Ok(d) = value.cast::<PyDict>() {
        let mut members = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| UnsupportedValueError::new_err("Dict key must be str"))?;
            members.push((
                key.to_str()?.to_owned().into(),
                to_json(&v, depth + 1, text_bytes)?,
            ));
        }
        return Ok(Json::Object(members));
    }
    if let Ok(l) = value.cast::<PyList>() {
        return l
            .iter()
            .map(|item| to_json(&item, depth + 1, text_bytes))
            .collect::<PyResult<_>>()
            .map(Json::Array);
    }
    if let Ok(t) = value.cast::<PyTuple>() {
        return t
            .iter()
            .map(|item| to_json(&item, depth + 1, text_bytes))
            .collect::<PyResult<_>>()
            .map(Json::Array);
    }
    Err(UnsupportedValueError::new_err(format!(
        "Type is not JSON serializable: {}",
        value.get_type().name()?
    )))
}
