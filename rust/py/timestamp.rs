//! `timestamp()`: the local time as `datetime.now().isoformat()` writes it, for history entries.

use pyo3::prelude::*;
use pyo3::types::PyString;
use std::cell::RefCell;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The second this thread last formatted, and its local date and time ("YYYY-MM-DDTHH:MM:SS").
    static FORMATTED_SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// The local date and time to the microsecond, as `datetime.now().isoformat()` writes it (no fraction when
/// it is zero). The date and time of day come from Python's `time.localtime`, once a second per thread, so
/// the time zone is Python's; every call in between only adds the microseconds.
#[pyfunction]
pub fn timestamp(py: Python<'_>) -> PyResult<Bound<'_, PyString>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (second, micros) = (now.as_secs(), now.subsec_micros());
    let cached = FORMATTED_SECOND.with(|cell| {
        let cell = cell.borrow();
        (cell.0 == second).then(|| format_with_micros(&cell.1, micros))
    });
    if let Some(text) = cached {
        return Ok(PyString::new(py, &text));
    }
    // Outside any borrow: this calls into Python.
    let time = py.import("time")?;
    let local = time.call_method1("localtime", (second,))?;
    let date_time: String = time
        .call_method1("strftime", ("%Y-%m-%dT%H:%M:%S", local))?
        .extract()?;
    let text = format_with_micros(&date_time, micros);
    FORMATTED_SECOND.with(|cell| *cell.borrow_mut() = (second, date_time));
    Ok(PyString::new(py, &text))
}

fn format_with_micros(date_time: &str, micros: u32) -> String {
    let mut text = String::with_capacity(date_time.len() + 7);
    text.push_str(date_time);
    if micros != 0 {
        let _ = write!(text, ".{micros:06}");
    }
    text
}
