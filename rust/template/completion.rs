//! Splitting a chat completion into fields at `[[ ## name ## ]]` header lines, as DSPy's ChatAdapter does.
//!
//! A header is a line that, once stripped, starts with `[[ ## name ## ]]`; text after the marker on that
//! line starts the section. Sections are stripped; the first section of a name wins; text before the
//! first header and sections for unknown names are dropped. Any text splits without error.

use super::pystr;

const OPEN: &str = "[[ ## ";
const CLOSE: &str = " ## ]]";

/// Matches the header marker at the start of `line`: the name and the marker's length in characters.
pub fn match_header(line: &str) -> Option<(&str, usize)> {
    let rest = line.strip_prefix(OPEN)?;
    let name_len = rest
        .find(|c: char| !pystr::is_word(c))
        .unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    after.strip_prefix(CLOSE)?;
    Some((name, OPEN.len() + name.chars().count() + CLOSE.len()))
}

/// The first section of each of `names`, in the order of `names`; `None` where a name has no section.
pub fn split_fields(completion: &str, names: &[&str]) -> Vec<Option<String>> {
    let mut found: Vec<Option<String>> = vec![None; names.len()];
    // The section being collected: which requested name it fills (None: text nobody asked for).
    let mut current: Option<usize> = None;
    let mut lines: Vec<&str> = Vec::new();
    let flush = |current: Option<usize>, lines: &mut Vec<&str>, found: &mut Vec<Option<String>>| {
        if let Some(i) = current {
            found[i] = Some(pystr::strip(&lines.join("\n")).to_owned());
        }
        lines.clear();
    };
    for line in pystr::splitlines(completion) {
        if let Some((name, marker_chars)) = match_header(pystr::strip(line)) {
            flush(current, &mut lines, &mut found);
            current = names
                .iter()
                .position(|n| *n == name)
                .filter(|&i| found[i].is_none());
            // DSPy cuts the unstripped line at the marker's length in the stripped one.
            let rest = match line.char_indices().nth(marker_chars) {
                Some((at, _)) => pystr::strip(&line[at..]),
                None => "",
            };
            if !rest.is_empty() {
                lines.push(rest);
            }
        } else if current.is_some() {
            lines.push(line);
        }
    }
    flush(current, &mut lines, &mut found);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_at_headers_and_keeps_first_section() {
        let text = "preamble\n[[ ## answer ## ]]\n 42 \n\n[[ ## other ## ]]\nx\n[[ ## answer ## ]]\n7\n[[ ## completed ## ]]";
        assert_eq!(
            split_fields(text, &["answer", "missing"]),
            vec![Some("42".into()), None]
        );
    }

    #[test]
    fn text_on_the_header_line_starts_the_section() {
        let text = "[[ ## answer ## ]] yes\nmore";
        assert_eq!(
            split_fields(text, &["answer"]),
            vec![Some("yes\nmore".into())]
        );
    }

    #[test]
    fn indented_header_cuts_the_raw_line_at_the_stripped_marker_length() {
        // DSPy slices the unstripped line at the stripped marker length, so indentation shifts the cut.
        let text = "  [[ ## answer ## ]]abcd";
        assert_eq!(split_fields(text, &["answer"]), vec![Some("]]abcd".into())]);
    }

    #[test]
    fn malformed_markers_are_plain_text() {
        let text = "[[ ## answer ## ]]\na\n[[ ##  b ## ]]\n[[## c ## ]]";
        assert_eq!(
            split_fields(text, &["answer"]),
            vec![Some("a\n[[ ##  b ## ]]\n[[## c ## ]]".into())]
        );
    }

    proptest! {
        #[test]
        fn any_text_splits_without_panic(text in ".*", name in "[a-z_]{1,8}") {
            let with_header = format!("{text}\n[[ ## {name} ## ]]{text}");
            let found = split_fields(&with_header, &[name.as_str()]);
            prop_assert!(found[0].is_some());
            let _ = split_fields(&text, &[name.as_str()]);
        }
    }
}
