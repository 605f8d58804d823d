//! Fuzz the completion parsers: any bytes (as text) split into chat fields and read as JSON without
//! panicking, and what the chat splitter returns is always a stripped section of the input.
//! Run: `cargo +nightly fuzz run completion` from the repository root.
#![no_main]

use _core::template::{completion::split_fields, json, pystr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names = ["answer", "reasoning", "completed"];
    for section in split_fields(text, &names).into_iter().flatten() {
        assert_eq!(pystr::strip(&section), section);
    }
    let _ = json::find_object(text);
    let _ = json::field_value(text);
});
