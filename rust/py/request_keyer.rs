//! `RequestKeyer`: the key of an LM call made without call kwargs, from its prompt or messages alone.
//!
//! Such a call's request is the LM's model and kwargs around the call's messages, the same from call to
//! call. The keyer writes the canonical JSON around the messages once, so each call writes and hashes only
//! its messages. It keeps the objects it was built from and answers only while the LM holds those same
//! objects: they are all immutable (str, int, float, bool, None), so the same objects mean the same request.

use super::key::{for_each_member, key_of_written, write_json, write_value};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

/// Request members a plain call's kwargs must not hold: the first three would replace what the keyer
/// writes itself, and a rollout id asks for a warning the general path gives.
const NOT_PLAIN_KEYS: [&str; 4] = ["model", "messages", "_fn_identifier", "rollout_id"];

/// A request's canonical JSON before and after its messages.
struct Around {
    before: Vec<u8>,
    after: Vec<u8>,
}

#[pyclass(frozen, module = "turbodspy._core")]
pub struct RequestKeyer {
    model: Py<PyAny>,
    model_type: Py<PyAny>,
    /// The kwargs' members in their order, as the objects they were.
    kwargs: Vec<(Py<PyAny>, Py<PyAny>)>,
    /// For `forward` and `aforward`, whose identifiers differ; None when the kwargs hold something that
    /// is not plain (only the general path keys such an LM).
    around: Option<[Around; 2]>,
}

#[pymethods]
impl RequestKeyer {
    /// A keyer for an LM's `model`, `model_type` and `kwargs`, keying as `request_key(request, ignored,
    /// identifier)` does, with `identifiers` for `forward` and `aforward`.
    #[new]
    fn new(
        model: &Bound<'_, PyAny>,
        model_type: &Bound<'_, PyAny>,
        kwargs: &Bound<'_, PyDict>,
        ignored: Vec<String>,
        identifiers: (String, String),
    ) -> PyResult<Self> {
        let mut members = Vec::with_capacity(kwargs.len());
        for_each_member(kwargs, |key, value| {
            members.push((key.to_owned().unbind(), value.to_owned().unbind()));
            Ok(())
        })?;
        // A value the writer refuses (an int beyond 64 bits, a lone surrogate) leaves the LM to the general
        // path, which reports it.
        let around = plain_members(model, kwargs, &ignored)?.and_then(|plain| {
            Some([
                written_around(model, &plain, &identifiers.0).ok()?,
                written_around(model, &plain, &identifiers.1).ok()?,
            ])
        });
        Ok(RequestKeyer {
            model: model.clone().unbind(),
            model_type: model_type.clone().unbind(),
            kwargs: members,
            around,
        })
    }

    /// The key of a call with this `prompt` or (when truthy) these `messages`; "" when only the general path
    /// can key the LM's requests; None when the LM no longer holds the objects this keyer was built from.
    /// Messages that are not JSON-native raise `UnsupportedValueError`, as `request_key` does.
    fn key<'py>(
        &self,
        py: Python<'py>,
        model: &Bound<'py, PyAny>,
        model_type: &Bound<'py, PyAny>,
        kwargs: &Bound<'py, PyAny>,
        prompt: &Bound<'py, PyAny>,
        messages: &Bound<'py, PyAny>,
        asynchronous: bool,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        if !self.holds(model, model_type, kwargs)? {
            return Ok(None);
        }
        let Some(around) = &self.around else {
            return Ok(Some(PyString::intern(py, "")));
        };
        let Around { before, after } = &around[usize::from(asynchronous)];
        // As the general path renders it: `messages or [{"role": "user", "content": prompt}]`.
        let given = messages.is_truthy()?;
        key_of_written(py, |_, w| {
            w.out.extend_from_slice(before);
            // Depths as in the whole request: its messages sit one level down, a prompt three.
            if given {
                write_value(messages, w, 1)?;
            } else {
                w.out.extend_from_slice(br#"[{"content":"#);
                write_value(prompt, w, 3)?;
                w.out.extend_from_slice(br#","role":"user"}]"#);
            }
            w.out.extend_from_slice(after);
            Ok(())
        })
        .map(Some)
    }
}

impl RequestKeyer {
    /// Whether the LM holds the very objects this keyer was built from.
    fn holds(
        &self,
        model: &Bound<'_, PyAny>,
        model_type: &Bound<'_, PyAny>,
        kwargs: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if !model.is(&self.model) || !model_type.is(&self.model_type) {
            return Ok(false);
        }
        let Ok(kwargs) = kwargs.cast::<PyDict>() else {
            return Ok(false);
        };
        if kwargs.len() != self.kwargs.len() {
            return Ok(false);
        }
        let mut same = true;
        let mut kept = self.kwargs.iter();
        for_each_member(kwargs, |key, value| {
            same &= kept
                .next()
                .is_some_and(|(k, v)| key.is(k) && value.is(v));
            Ok(())
        })?;
        Ok(same)
    }
}

/// The kwargs members that go into the request (not ignored), when all are plain: `str` keys not in
/// `NOT_PLAIN_KEYS`, immutable JSON scalar values. None otherwise, or when `model` is not a `str`.
fn plain_members<'py>(
    model: &Bound<'py, PyAny>,
    kwargs: &Bound<'py, PyDict>,
    ignored: &[String],
) -> PyResult<Option<Vec<(String, Bound<'py, PyAny>)>>> {
    if !model.is_exact_instance_of::<PyString>() || !kwargs.is_exact_instance_of::<PyDict>() {
        return Ok(None);
    }
    let mut plain = Vec::with_capacity(kwargs.len());
    for (key, value) in kwargs.iter() {
        let Ok(key) = key.cast_exact::<PyString>() else {
            return Ok(None);
        };
        let Ok(key) = key.to_str() else {
            return Ok(None);
        };
        if NOT_PLAIN_KEYS.contains(&key) {
            return Ok(None);
        }
        if ignored.iter().any(|name| name == key) {
            continue; // not in the request (connection settings), so its value does not matter
        }
        if !is_immutable_scalar(&value) {
            return Ok(None);
        }
        plain.push((key.to_owned(), value));
    }
    Ok(Some(plain))
}

fn is_immutable_scalar(value: &Bound<'_, PyAny>) -> bool {
    value.is_none()
        || value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
}

/// A member of the request as the keyer writes it.
enum Member<'a, 'py> {
    Value(&'a Bound<'py, PyAny>),
    Text(&'a str),
    Messages,
}

/// The request's canonical JSON (as `request_key` writes it) split where its messages go.
fn written_around(
    model: &Bound<'_, PyAny>,
    kwargs: &[(String, Bound<'_, PyAny>)],
    identifier: &str,
) -> PyResult<Around> {
    let mut members: Vec<(&str, Member<'_, '_>)> = kwargs
        .iter()
        .map(|(key, value)| (key.as_str(), Member::Value(value)))
        .collect();
    members.push(("model", Member::Value(model)));
    members.push(("messages", Member::Messages));
    members.push(("_fn_identifier", Member::Text(identifier)));
    let mut out = Vec::new();
    let mut split = 0;
    crate::key::write_sorted_object(&mut members, &mut out, |member, out| {
        match member {
            Member::Value(value) => write_json(value, out)?,
            Member::Text(text) => crate::key::write_str(text, out),
            Member::Messages => split = out.len(),
        }
        Ok::<(), PyErr>(())
    })?;
    let after = out.split_off(split);
    Ok(Around { before: out, after })
}
