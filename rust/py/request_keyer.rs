//! `RequestKeyer`: the key of an LM call made without call kwargs, from its prompt or messages alone.
//!
//! Such a call's request is the LM's model and kwargs around the call's messages, the same from call to
//! call. The keyer writes the canonical JSON around the messages once, so each call writes and hashes only
//! its messages. It keeps the objects it was built from and answers only while the LM holds those same
//! objects. It writes only for kwargs whose values are all immutable (str, int, float, bool, None), so the
//! same objects mean the same request; for any other it answers "" (the general path keys the call).

use super::key::{for_each_member, key_of_written, write_json, write_value};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString, PyType};
use pyo3::{PyTraverseError, PyVisit};

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
    /// What the keyer was built from, None for a keyer built from no LM (it holds nothing).
    state: Option<Built>,
}

/// The LM state a keyer was built from, and the JSON it wrote from it.
struct Built {
    model: Py<PyAny>,
    model_type: Py<PyAny>,
    kwargs: Py<PyAny>,
    /// The members of `kwargs` (when a dict) in their order, as the objects they were.
    members: Vec<(Py<PyAny>, Py<PyAny>)>,
    /// For `forward` and `aforward`, whose identifiers differ; None when only the general path keys this
    /// LM (kwargs that are not all plain, no identifiers given).
    around: Option<[Around; 2]>,
}

#[pymethods]
impl RequestKeyer {
    /// A keyer for an LM's `model`, `model_type` and `kwargs`, keying as `request_key(request, ignored,
    /// identifier)` does with `identifiers` for `forward` and `aforward`; with no identifiers it answers ""
    /// for this state. Without arguments: a keyer that holds nothing, so the LM's first call builds its own.
    #[new]
    #[pyo3(signature = (model=None, model_type=None, kwargs=None, ignored=Vec::new(), identifiers=None))]
    fn new(
        model: Option<&Bound<'_, PyAny>>,
        model_type: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyAny>>,
        ignored: Vec<String>,
        identifiers: Option<(String, String)>,
    ) -> PyResult<Self> {
        let (Some(model), Some(model_type), Some(kwargs)) = (model, model_type, kwargs) else {
            return Ok(RequestKeyer { state: None });
        };
        let dict = kwargs.cast_exact::<PyDict>().ok();
        let mut members = Vec::with_capacity(dict.map_or(0, |d| d.len()));
        if let Some(dict) = dict {
            for_each_member(dict, |key, value| {
                members.push((key.to_owned().unbind(), value.to_owned().unbind()));
                Ok(())
            })?;
        }
        // A value the writer refuses (an int beyond 64 bits, a lone surrogate) leaves the LM to the general
        // path, which reports it.
        let around = match (dict, identifiers) {
            (Some(dict), Some((sync, asynchronous))) => plain_members(model, dict, &ignored)?
                .and_then(|plain| {
                    Some([
                        written_around(model, &plain, &sync).ok()?,
                        written_around(model, &plain, &asynchronous).ok()?,
                    ])
                }),
            _ => None,
        };
        Ok(RequestKeyer {
            state: Some(Built {
                model: model.clone().unbind(),
                model_type: model_type.clone().unbind(),
                kwargs: kwargs.clone().unbind(),
                members,
                around,
            }),
        })
    }

    /// The objects it holds, for the garbage collector (an LM's kwargs may refer back to the LM).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(built) = &self.state {
            visit.call(&built.model)?;
            visit.call(&built.model_type)?;
            visit.call(&built.kwargs)?;
            for (key, value) in &built.members {
                visit.call(key)?;
                visit.call(value)?;
            }
        }
        Ok(())
    }

    /// Copies share it (it never changes); a pickle holds none, so an unpickled LM builds its own.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> (Bound<'py, PyType>, ()) {
        (py.get_type::<RequestKeyer>(), ())
    }

    /// The key of a call with this `prompt` or (when truthy) these `messages`; "" when only the general path
    /// can key the LM's requests; None when the LM no longer holds the objects this keyer was built from.
    /// Messages that are not JSON-native raise `UnsupportedValueError`, as `request_key` does.
    #[allow(clippy::too_many_arguments)] // the call's arguments, as Python passes them: no struct to group
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
        let Some(around) = self.state.as_ref().and_then(|built| built.around.as_ref()) else {
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
        let Some(built) = &self.state else {
            return Ok(false);
        };
        if !model.is(&built.model) || !model_type.is(&built.model_type) || !kwargs.is(&built.kwargs)
        {
            return Ok(false);
        }
        // The same dict, possibly edited in place since: its members must be the same objects too.
        let Ok(dict) = kwargs.cast_exact::<PyDict>() else {
            return Ok(true); // another mapping: keyed by the general path whatever it holds
        };
        if dict.len() != built.members.len() {
            return Ok(false);
        }
        let mut same = true;
        let mut kept = built.members.iter();
        for_each_member(dict, |key, value| {
            same &= kept.next().is_some_and(|(k, v)| key.is(k) && value.is(v));
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
) -> PyResult<Option<PlainMembers<'py>>> {
    if !model.is_exact_instance_of::<PyString>() {
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

/// Request members by name, as `plain_members` finds them.
type PlainMembers<'py> = Vec<(String, Bound<'py, PyAny>)>;

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
