//! Field values as the adapters see them after `serialize_for_json`, and the two ways DSPy writes
//! them: as prompt text (`format_field_value`) and as `json.dumps(..., ensure_ascii=False)`.

/// A JSON-native value. Numbers keep Python's own text (`repr`), so they print as Python prints them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An `int` or `float` as Python's `repr` writes it.
    Number(String),
    Str(String),
    List(Vec<Value>),
    Dict(Vec<(String, Value)>),
    /// A list of strings given to a `str` field: written as DSPy's numbered blob list.
    StrList(Vec<String>),
    /// Text already formatted by Python (values only Python knows how to write).
    Text(String),
}

/// How `json.dumps` lays out containers: DSPy uses the default (`, ` and `: `) or `indent=2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Compact,
    Indent2,
}

impl Value {
    /// `format_field_value`: strings and scalars as `str()` writes them, containers as JSON.
    pub fn write_text(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Number(n) => out.push_str(n),
            Value::Str(s) | Value::Text(s) => out.push_str(s),
            Value::List(_) | Value::Dict(_) => self.write_json(Layout::Compact, 0, out),
            Value::StrList(items) => write_numbered_list(items, out),
        }
    }

    /// `json.dumps(value, ensure_ascii=False)` with the given layout; `depth` is the current indent level.
    pub fn write_json(&self, layout: Layout, depth: usize, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(n) => out.push_str(n),
            Value::Str(s) | Value::Text(s) => write_json_str(s, out),
            Value::List(items) => write_seq(
                items.iter(),
                items.len(),
                ('[', ']'),
                layout,
                depth,
                out,
                |v, d, o| v.write_json(layout, d, o),
            ),
            Value::StrList(items) => write_seq(
                items.iter(),
                items.len(),
                ('[', ']'),
                layout,
                depth,
                out,
                |s, _, o| write_json_str(s, o),
            ),
            Value::Dict(members) => write_seq(
                members.iter(),
                members.len(),
                ('{', '}'),
                layout,
                depth,
                out,
                |(k, v), d, o| {
                    write_json_str(k, o);
                    o.push_str(": ");
                    v.write_json(layout, d, o);
                },
            ),
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }
}

fn write_seq<T>(
    items: impl Iterator<Item = T>,
    len: usize,
    (open, close): (char, char),
    layout: Layout,
    depth: usize,
    out: &mut String,
    mut write_item: impl FnMut(T, usize, &mut String),
) {
    out.push(open);
    if len == 0 {
        out.push(close);
        return;
    }
    for (i, item) in items.enumerate() {
        match layout {
            Layout::Compact => {
                if i > 0 {
                    out.push_str(", ");
                }
            }
            Layout::Indent2 => {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                push_indent(depth + 1, out);
            }
        }
        write_item(item, depth + 1, out);
    }
    if layout == Layout::Indent2 {
        out.push('\n');
        push_indent(depth, out);
    }
    out.push(close);
}

fn push_indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// A JSON string literal as Python's encoder writes it with `ensure_ascii=False`.
pub fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// DSPy's list-of-text layout: `N/A` when empty, one blob alone, else `[1] «...»` lines.
fn write_numbered_list(items: &[String], out: &mut String) {
    match items.len() {
        0 => out.push_str("N/A"),
        1 => write_blob(&items[0], out),
        _ => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push('[');
                out.push_str(itoa::Buffer::new().format(i + 1));
                out.push_str("] ");
                write_blob(item, out);
            }
        }
    }
}

fn write_blob(blob: &str, out: &mut String) {
    if !blob.contains(['\n', '«', '»']) {
        out.push('«');
        out.push_str(blob);
        out.push('»');
    } else {
        out.push_str("«««\n    ");
        out.push_str(&blob.replace('\n', "\n    "));
        out.push_str("\n»»»");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &Value, layout: Layout) -> String {
        let mut out = String::new();
        v.write_json(layout, 0, &mut out);
        out
    }

    #[test]
    fn compact_and_indented_json_match_python_layout() {
        let v = Value::Dict(vec![
            (
                "a".into(),
                Value::List(vec![Value::Number("1".into()), Value::Null]),
            ),
            ("b".into(), Value::Dict(vec![])),
            ("c".into(), Value::Str("x\"\u{1}é".into())),
        ]);
        assert_eq!(
            json(&v, Layout::Compact),
            r#"{"a": [1, null], "b": {}, "c": "x\"\u0001é"}"#
        );
        assert_eq!(
            json(&v, Layout::Indent2),
            "{\n  \"a\": [\n    1,\n    null\n  ],\n  \"b\": {},\n  \"c\": \"x\\\"\\u0001é\"\n}"
        );
    }

    #[test]
    fn text_of_scalars_is_python_str() {
        assert_eq!(Value::Bool(true).to_text(), "True");
        assert_eq!(Value::Null.to_text(), "None");
        assert_eq!(Value::StrList(vec![]).to_text(), "N/A");
        assert_eq!(
            Value::StrList(vec!["a".into(), "b\nc".into()]).to_text(),
            "[1] «a»\n[2] «««\n    b\n    c\n»»»"
        );
    }
}
