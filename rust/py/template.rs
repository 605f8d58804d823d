//! `Template`: a signature compiled for ChatAdapter or JSONAdapter, with one call per format and per parse.
//!
//! Values are converted here to the core's `Value`: JSON-native Python values directly, anything else
//! through the adapter's `serialize_for_json` (so pydantic models, enums and dates print as in DSPy).

use crate::template::json::{field_value, find_container, find_object, Json};
use crate::template::{
    completion, FieldSpec, Message, Role, SignatureSpec, Style, Template as Core, Value,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

/// Values nest a few levels; a self-referencing container must not overflow the stack.
const MAX_DEPTH: usize = 200;

const CUSTOM_TYPE_MARKER: &str = "<<CUSTOM-TYPE-START-IDENTIFIER>>";

/// One field as the Python layer describes it (a dict with these keys).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct FieldArg {
    name: String,
    annotation: String,
    desc: String,
    constraints: String,
    type_note: String,
    requirement: String,
    /// The annotation is `str`, so a list value prints as DSPy's numbered blob list.
    is_str: bool,
    /// `format_field_value(field_info, value)` for values only Python can lay out.
    format_value: Py<PyAny>,
}

struct Field {
    name: Py<PyString>,
    blob_lists: bool,
    /// JSONAdapter writes outputs inside one JSON object, where pydantic turns NaN and infinity into null.
    in_json_object: bool,
    format_value: Py<PyAny>,
}

#[pyclass(frozen, module = "turbodspy._core")]
pub struct Template {
    core: Core,
    fields: Vec<Field>,
    n_inputs: usize,
    system: Py<PyString>,
    serialize: Py<PyAny>,
    expand_markers: Py<PyAny>,
}

#[pymethods]
impl Template {
    #[new]
    #[pyo3(signature = (style, instruction_lines, inputs, outputs, history, serialize, expand_markers))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        style: &str,
        instruction_lines: Vec<String>,
        inputs: Vec<FieldArg>,
        outputs: Vec<FieldArg>,
        history: Option<usize>,
        serialize: Py<PyAny>,
        expand_markers: Py<PyAny>,
    ) -> PyResult<Self> {
        let style = match style {
            "chat" => Style::Chat,
            "json" => Style::Json,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown template style {other:?}: use 'chat' or 'json'"
                )))
            }
        };
        if history.is_some_and(|i| i >= inputs.len()) {
            return Err(PyValueError::new_err("history index is not an input field"));
        }
        let n_inputs = inputs.len();
        let mut fields = Vec::with_capacity(inputs.len() + outputs.len());
        let mut specs = |args: Vec<FieldArg>, is_output: bool| -> Vec<FieldSpec> {
            args.into_iter()
                .map(|a| {
                    fields.push(Field {
                        name: PyString::new(py, &a.name).unbind(),
                        // JSONAdapter writes outputs as one JSON object, where a list stays a list.
                        blob_lists: a.is_str && !(is_output && style == Style::Json),
                        in_json_object: is_output && style == Style::Json,
                        format_value: a.format_value,
                    });
                    FieldSpec {
                        name: a.name,
                        annotation: a.annotation,
                        desc: a.desc,
                        constraints: a.constraints,
                        type_note: a.type_note,
                        requirement: a.requirement,
                    }
                })
                .collect()
        };
        let inputs = specs(inputs, false);
        let outputs = specs(outputs, true);
        let core = Core::compile(
            style,
            SignatureSpec {
                instruction_lines,
                inputs,
                outputs,
                history,
            },
        );
        let system = PyString::new(py, core.system_message()).unbind();
        Ok(Template {
            core,
            fields,
            n_inputs,
            system,
            serialize,
            expand_markers,
        })
    }

    fn system_message(&self, py: Python<'_>) -> Py<PyString> {
        self.system.clone_ref(py)
    }

    fn field_description(&self) -> &str {
        self.core.field_description()
    }

    fn field_structure(&self) -> &str {
        self.core.field_structure()
    }

    fn task_description(&self) -> &str {
        self.core.task_description()
    }

    fn output_requirements(&self) -> &str {
        self.core.output_requirements()
    }

    /// All messages for one call: system, demos, conversation history, current request.
    fn format<'py>(
        &self,
        py: Python<'py>,
        demos: &Bound<'py, PyAny>,
        inputs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let demos = self.records(demos)?;
        let current = self.record(inputs)?;
        let history = match self.core.spec.history {
            Some(i) => self.history_records(py, inputs, i)?,
            None => None,
        };
        let messages = self.core.format(&demos, &current, history.as_deref());
        self.to_py_messages(py, messages, Some(self.system.bind(py)))
    }

    /// `requirements` replaces the compiled output reminder (for subclasses that rewrite it).
    #[pyo3(signature = (inputs, prefix="", suffix="", main_request=false, requirements=None))]
    fn user_content(
        &self,
        inputs: &Bound<'_, PyAny>,
        prefix: &str,
        suffix: &str,
        main_request: bool,
        requirements: Option<&str>,
    ) -> PyResult<String> {
        let record = self.record(inputs)?;
        let requirements =
            main_request.then(|| requirements.unwrap_or(self.core.output_requirements()));
        Ok(self
            .core
            .user_content(&record, prefix, suffix, requirements, false))
    }

    #[pyo3(signature = (outputs, missing=None))]
    fn assistant_content(
        &self,
        outputs: &Bound<'_, PyAny>,
        missing: Option<&str>,
    ) -> PyResult<String> {
        let record = self.record(outputs)?;
        Ok(self.core.assistant_content(&record, missing))
    }

    fn demo_messages<'py>(
        &self,
        py: Python<'py>,
        demos: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let demos = self.records(demos)?;
        self.to_py_messages(py, self.core.demo_messages(&demos), None)
    }

    /// The turns of a conversation history (a list of message dicts), for a signature without the history field.
    fn history_messages<'py>(
        &self,
        py: Python<'py>,
        turns: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let turns = self.records(turns)?;
        self.to_py_messages(py, self.core.history_messages(&turns), None)
    }

    /// The raw text of each output field found in a chat completion, in signature order.
    fn split_chat<'py>(&self, py: Python<'py>, completion: &str) -> PyResult<Bound<'py, PyDict>> {
        let outputs = &self.fields[self.n_inputs..];
        let names: Vec<&str> = self
            .core
            .spec
            .outputs
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        let found = completion::split_fields(completion, &names);
        let dict = PyDict::new(py);
        for (field, text) in outputs.iter().zip(found) {
            if let Some(text) = text {
                dict.set_item(field.name.bind(py), text)?;
            }
        }
        Ok(dict)
    }
}

/// The JSON object in a completion (repaired if needed), or None when there is none.
#[pyfunction]
pub fn parse_json_object<'py>(
    py: Python<'py>,
    completion: &str,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    match find_object(completion) {
        Some(members) => object_to_py(py, members).map(Some),
        None => Ok(None),
    }
}

/// The first JSON array or object in a field's text (repaired if needed), or None when there is none.
#[pyfunction]
pub fn parse_json_container<'py>(
    py: Python<'py>,
    text: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    find_container(text).map(|v| json_to_py(py, v)).transpose()
}

/// `(True, value)` when a field's text is JSON or holds a JSON container, else `(False, None)`.
#[pyfunction]
pub fn parse_json_value<'py>(py: Python<'py>, text: &str) -> PyResult<(bool, Bound<'py, PyAny>)> {
    match field_value(text) {
        Some(v) => Ok((true, json_to_py(py, v)?)),
        None => Ok((false, py.None().into_bound(py))),
    }
}

fn object_to_py(py: Python<'_>, members: Vec<(String, Json)>) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in members {
        dict.set_item(k, json_to_py(py, v)?)?;
    }
    Ok(dict)
}

fn json_to_py(py: Python<'_>, value: Json) -> PyResult<Bound<'_, PyAny>> {
    Ok(match value {
        Json::Null => py.None().into_bound(py),
        Json::Bool(b) => b.into_bound_py_any(py)?,
        Json::Int(digits) => match digits.parse::<i64>() {
            Ok(i) => i.into_bound_py_any(py)?,
            Err(_) => py.get_type::<PyInt>().call1((digits,))?,
        },
        Json::Float(f) => PyFloat::new(py, f).into_any(),
        Json::Str(s) => PyString::new(py, &s).into_any(),
        Json::Array(items) => {
            let items: PyResult<Vec<_>> = items.into_iter().map(|v| json_to_py(py, v)).collect();
            PyList::new(py, items?)?.into_any()
        }
        Json::Object(members) => object_to_py(py, members)?.into_any(),
    })
}

impl Template {
    fn records(&self, seq: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<Option<Value>>>> {
        if let Ok(list) = seq.cast::<PyList>() {
            return list.iter().map(|item| self.record(&item)).collect();
        }
        seq.try_iter()?.map(|item| self.record(&item?)).collect()
    }

    /// One value per field; None where the mapping lacks the key.
    fn record(&self, mapping: &Bound<'_, PyAny>) -> PyResult<Vec<Option<Value>>> {
        let py = mapping.py();
        let dict = mapping.cast::<PyDict>().ok();
        self.fields
            .iter()
            .map(|field| {
                let name = field.name.bind(py);
                let value = match dict {
                    Some(d) => d.get_item(name)?,
                    None if mapping.contains(name)? => Some(mapping.get_item(name)?),
                    None => None,
                };
                value.map(|v| self.field_value(field, &v)).transpose()
            })
            .collect()
    }

    fn history_records(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        index: usize,
    ) -> PyResult<Option<Vec<Vec<Option<Value>>>>> {
        let name = self.fields[index].name.bind(py);
        let history = match inputs.cast::<PyDict>() {
            Ok(d) => d.get_item(name)?,
            Err(_) if inputs.contains(name)? => Some(inputs.get_item(name)?),
            Err(_) => None,
        };
        let Some(history) = history else {
            return Ok(None);
        };
        let turns = history.getattr(intern!(py, "messages"))?;
        if turns.is_none() {
            return Ok(None);
        }
        self.records(&turns).map(Some)
    }

    fn field_value(&self, field: &Field, value: &Bound<'_, PyAny>) -> PyResult<Value> {
        if field.blob_lists && value.is_instance_of::<PyList>() {
            let list = value.cast::<PyList>()?;
            let mut items = Vec::with_capacity(list.len());
            for item in list.iter() {
                match item.cast_exact::<PyString>() {
                    Ok(s) => items.push(s.to_str()?.to_owned()),
                    // Lists of other things take DSPy's own path (and its errors).
                    Err(_) => {
                        let text = field.format_value.bind(value.py()).call1((value,))?;
                        return Ok(Value::Text(text.extract()?));
                    }
                }
            }
            return Ok(Value::StrList(items));
        }
        self.to_value(value, usize::from(field.in_json_object), false)
    }

    /// `serialize_for_json(value)` as a `Value`; `serialized` marks output of Python's serializer.
    fn to_value(
        &self,
        value: &Bound<'_, PyAny>,
        depth: usize,
        serialized: bool,
    ) -> PyResult<Value> {
        if depth > MAX_DEPTH {
            return Err(PyValueError::new_err("value nests deeper than 200 levels"));
        }
        if value.is_none() {
            return Ok(Value::Null);
        }
        if let Ok(s) = value.cast_exact::<PyString>() {
            return Ok(Value::Str(s.to_str()?.to_owned()));
        }
        if let Ok(b) = value.cast_exact::<PyBool>() {
            return Ok(Value::Bool(b.is_true()));
        }
        if let Ok(i) = value.cast_exact::<PyInt>() {
            return Ok(Value::Number(match i.extract::<i64>() {
                Ok(v) => itoa::Buffer::new().format(v).to_owned(),
                Err(_) => i.str()?.to_str()?.to_owned(),
            }));
        }
        if let Ok(f) = value.cast_exact::<PyFloat>() {
            // pydantic writes a nested NaN or infinity as null; a top-level one keeps its text.
            if depth > 0 && !f.value().is_finite() {
                return Ok(Value::Null);
            }
            return Ok(Value::Number(f.repr()?.to_str()?.to_owned()));
        }
        if let Ok(list) = value.cast_exact::<PyList>() {
            let items: PyResult<Vec<Value>> = list
                .iter()
                .map(|v| self.to_value(&v, depth + 1, serialized))
                .collect();
            return Ok(Value::List(items?));
        }
        if let Ok(tuple) = value.cast_exact::<PyTuple>() {
            let items: PyResult<Vec<Value>> = tuple
                .iter()
                .map(|v| self.to_value(&v, depth + 1, serialized))
                .collect();
            return Ok(Value::List(items?));
        }
        if let Ok(dict) = value.cast_exact::<PyDict>() {
            let mut members = Vec::with_capacity(dict.len());
            let mut all_str_keys = true;
            for (k, v) in dict.iter() {
                match k.cast_exact::<PyString>() {
                    Ok(k) => members.push((
                        k.to_str()?.to_owned(),
                        self.to_value(&v, depth + 1, serialized)?,
                    )),
                    Err(_) => {
                        all_str_keys = false;
                        break;
                    }
                }
            }
            if all_str_keys {
                return Ok(Value::Dict(members));
            }
        }
        if serialized {
            // Python's serializer already had its turn: whatever is left prints as str().
            return Ok(Value::Str(value.str()?.to_str()?.to_owned()));
        }
        let plain = self.serialize.bind(value.py()).call1((value,))?;
        self.to_value(&plain, depth, true)
    }

    fn to_py_messages<'py>(
        &self,
        py: Python<'py>,
        messages: Vec<Message>,
        system: Option<&Bound<'py, PyString>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for message in messages {
            let dict = PyDict::new(py);
            let role = match message.role {
                Role::System => intern!(py, "system"),
                Role::User => intern!(py, "user"),
                Role::Assistant => intern!(py, "assistant"),
            };
            dict.set_item(intern!(py, "role"), role)?;
            match (message.role, system) {
                (Role::System, Some(s)) => dict.set_item(intern!(py, "content"), s)?,
                _ => dict.set_item(intern!(py, "content"), &message.content)?,
            }
            if message.role == Role::User && message.content.contains(CUSTOM_TYPE_MARKER) {
                out.append(self.expand_markers.bind(py).call1((dict,))?)?;
            } else {
                out.append(dict)?;
            }
        }
        Ok(out)
    }
}
