//! `timestamp()`: the local time as `datetime.now().isoformat()` writes it, for history entries.

use crate::timestamp::with_micros;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyString};
use std::cell::RefCell;

static TIME: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The second this thread last formatted, the time zone it was formatted in (`time.tzname`, which
/// `time.tzset()` replaces), and its local date and time ("YYYY-MM-DDTHH:MM:SS").
struct FormattedSecond {
    second: i64,
    zone: Py<PyAny>,
    date_time: String,
}

thread_local! {
    static FORMATTED: RefCell<Option<FormattedSecond>> = const { RefCell::new(None) };
}

/// The local date and time to the microsecond, as `datetime.now().isoformat()` writes it. The clock is
/// Python's `time.time_ns` and the date and time of day come from `time.localtime`, looked up on each use,
/// so time zones and tools that patch the clock (freezegun, time-machine) apply; only the formatting of each
/// second is kept, per thread, for the calls within it.
#[pyfunction]
pub fn timestamp(py: Python<'_>) -> PyResult<Bound<'_, PyString>> {
    let time = TIME
        .get_or_try_init(py, || py.import("time").map(Bound::unbind))?
        .bind(py);
    let now: i64 = time.getattr(intern!(py, "time_ns"))?.call0()?.extract()?;
    let zone = time.getattr(intern!(py, "tzname"))?;
    let second = now.div_euclid(1_000_000_000);
    let micros = (now.rem_euclid(1_000_000_000) / 1000) as u32;
    let cached = FORMATTED.with(|cell| {
        let cell = cell.borrow();
        cell.as_ref()
            .filter(|f| f.second == second && f.zone.is(&zone))
            .map(|f| with_micros(&f.date_time, micros))
    });
    if let Some(text) = cached {
        return Ok(PyString::new(py, &text));
    }
    // Outside any borrow: this calls into Python.
    let local = time.call_method1(intern!(py, "localtime"), (second,))?;
    let date_time: String = time
        .call_method1(intern!(py, "strftime"), ("%Y-%m-%dT%H:%M:%S", local))?
        .extract()?;
    let text = with_micros(&date_time, micros);
    let formatted = FormattedSecond {
        second,
        zone: zone.unbind(),
        date_time,
    };
    FORMATTED.with(|cell| *cell.borrow_mut() = Some(formatted));
    Ok(PyString::new(py, &text))
}
