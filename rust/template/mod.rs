//! Prompt templates for DSPy's ChatAdapter and JSONAdapter.
//!
//! A signature is compiled once into a [`Template`]: the system message and the output reminder are
//! rendered at compile time, and every later call only lays out values. The text matches DSPy 3.4.1's
//! adapters byte for byte; [`completion`] splits a chat completion back into fields and [`json`]
//! reads the JSON adapter's (often slightly malformed) JSON.

pub mod completion;
pub mod json;
pub mod pystr;
pub mod value;

pub use value::{Layout, Value};

/// Which adapter's layout a template renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Chat,
    Json,
}

/// One signature field, as described to the LM. All strings are rendered by the Python layer
/// (annotation names and JSON schemas are Python's to compute).
#[derive(Debug, Clone, Default)]
pub struct FieldSpec {
    pub name: String,
    /// `get_annotation_name(annotation)`, e.g. `str` or `list[int]`.
    pub annotation: String,
    /// The field's description; empty when it is the `${name}` placeholder.
    pub desc: String,
    /// `json_schema_extra["constraints"]`, empty when there are none.
    pub constraints: String,
    /// The structure line: `{name}` plus the type note (`translate_field_type`).
    pub type_note: String,
    /// The output reminder's type hint (` (must be formatted as a valid Python int)`), or empty.
    pub requirement: String,
}

#[derive(Debug, Clone, Default)]
pub struct SignatureSpec {
    /// `textwrap.dedent(instructions).splitlines()`.
    pub instruction_lines: Vec<String>,
    pub inputs: Vec<FieldSpec>,
    pub outputs: Vec<FieldSpec>,
    /// Index in `inputs` of the conversation-history field, if any.
    pub history: Option<usize>,
}

/// A value for each signature field (inputs first, then outputs); `None` when the key is absent.
pub type Record = [Option<Value>];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

const STRUCTURE_INTRO: &str =
    "All interactions will be structured in the following way, with the appropriate values filled in.";
const INCOMPLETE_DEMO_PREFIX: &str =
    "This is an example of the task, though some input or output fields are not supplied.";
const INCOMPLETE_DEMO_MISSING: &str = "Not supplied for this particular example. ";
const COMPLETE_DEMO_MISSING: &str = "Not supplied for this conversation history message. ";

/// A compiled signature: the fixed texts rendered once, plus what is needed to lay out values.
#[derive(Debug, Clone)]
pub struct Template {
    pub style: Style,
    pub spec: SignatureSpec,
    field_description: String,
    field_structure: String,
    task_description: String,
    system: String,
    requirements: String,
}

impl Template {
    pub fn compile(style: Style, spec: SignatureSpec) -> Template {
        let field_description = format!(
            "Your input fields are:\n{}\nYour output fields are:\n{}",
            describe_fields(&spec.inputs),
            describe_fields(&spec.outputs)
        );
        let field_structure = match style {
            Style::Chat => join_strip(&[
                STRUCTURE_INTRO.to_owned(),
                structure_fields(&spec.inputs),
                structure_fields(&spec.outputs),
                "[[ ## completed ## ]]\n".to_owned(),
            ]),
            Style::Json => join_strip(&[
                STRUCTURE_INTRO.to_owned(),
                "Inputs will have the following structure:".to_owned(),
                structure_fields(&spec.inputs),
                "Outputs will be a JSON object with the following fields.".to_owned(),
                json_object(
                    spec.outputs
                        .iter()
                        .map(|f| (f.name.clone(), Value::Str(f.type_note.clone()))),
                ),
            ]),
        };
        let mut task_description =
            String::from("In adhering to this structure, your objective is: ");
        for line in &spec.instruction_lines {
            task_description.push_str("\n        ");
            task_description.push_str(line);
        }
        let system = format!("{field_description}\n{field_structure}\n{task_description}");
        let requirements = match style {
            Style::Chat => {
                let fields: Vec<String> = spec
                    .outputs
                    .iter()
                    .map(|f| format!("`[[ ## {} ## ]]`{}", f.name, f.requirement))
                    .collect();
                format!(
                    "Respond with the corresponding output fields, starting with the field {}, and then ending with the marker for `[[ ## completed ## ]]`.",
                    fields.join(", then ")
                )
            }
            Style::Json => {
                let fields: Vec<String> = spec
                    .outputs
                    .iter()
                    .map(|f| format!("`{}`{}", f.name, f.requirement))
                    .collect();
                format!(
                    "Respond with a JSON object in the following order of fields: {}.",
                    fields.join(", then ")
                )
            }
        };
        Template {
            style,
            spec,
            field_description,
            field_structure,
            task_description,
            system,
            requirements,
        }
    }

    pub fn field_description(&self) -> &str {
        &self.field_description
    }
    pub fn field_structure(&self) -> &str {
        &self.field_structure
    }
    pub fn task_description(&self) -> &str {
        &self.task_description
    }
    pub fn system_message(&self) -> &str {
        &self.system
    }
    /// The output reminder closing the main user message.
    pub fn output_requirements(&self) -> &str {
        &self.requirements
    }

    fn n_inputs(&self) -> usize {
        self.spec.inputs.len()
    }

    /// `format_user_message_content`, closed by `requirements` on a main request (normally
    /// [`Template::output_requirements`]); `skip_history` drops the history field (DSPy formats the
    /// current request and the history turns with the signature minus that field).
    pub fn user_content(
        &self,
        record: &Record,
        prefix: &str,
        suffix: &str,
        requirements: Option<&str>,
        skip_history: bool,
    ) -> String {
        let mut parts: Vec<String> = vec![prefix.to_owned()];
        for (i, field) in self.spec.inputs.iter().enumerate() {
            if skip_history && self.spec.history == Some(i) {
                continue;
            }
            if let Some(value) = &record[i] {
                parts.push(field_section(&field.name, value));
            }
        }
        if let Some(requirements) = requirements {
            parts.push(requirements.to_owned());
        }
        parts.push(suffix.to_owned());
        join_strip(&parts)
    }

    /// `format_assistant_message_content`: absent outputs take `missing` (Python's `None` if unset).
    pub fn assistant_content(&self, record: &Record, missing: Option<&str>) -> String {
        let missing_value = || match missing {
            Some(text) => Value::Str(text.to_owned()),
            None => Value::Null,
        };
        let outputs = self.spec.outputs.iter().enumerate().map(|(j, f)| {
            (
                f,
                record[self.n_inputs() + j]
                    .clone()
                    .unwrap_or_else(missing_value),
            )
        });
        match self.style {
            Style::Chat => {
                let parts: Vec<String> = outputs.map(|(f, v)| field_section(&f.name, &v)).collect();
                let mut content = pystr::strip(&parts.join("\n\n")).to_owned();
                content.push_str("\n\n[[ ## completed ## ]]\n");
                content
            }
            Style::Json => json_object(outputs.map(|(f, v)| (f.name.clone(), v))),
        }
    }

    /// `format_demos`: incomplete demos (with at least one input and one output) first, then complete ones.
    pub fn demo_messages<R: AsRef<Record>>(&self, demos: &[R]) -> Vec<Message> {
        let n_in = self.n_inputs();
        let mut complete = Vec::new();
        let mut incomplete = Vec::new();
        for demo in demos {
            let demo = demo.as_ref();
            if demo
                .iter()
                .all(|v| matches!(v, Some(v) if *v != Value::Null))
            {
                complete.push(demo);
            } else if demo[..n_in].iter().any(Option::is_some)
                && demo[n_in..].iter().any(Option::is_some)
            {
                incomplete.push(demo);
            }
        }
        let mut messages = Vec::with_capacity(2 * (complete.len() + incomplete.len()));
        for demo in incomplete {
            messages.push(Message {
                role: Role::User,
                content: self.user_content(demo, INCOMPLETE_DEMO_PREFIX, "", None, false),
            });
            messages.push(Message {
                role: Role::Assistant,
                content: self.assistant_content(demo, Some(INCOMPLETE_DEMO_MISSING)),
            });
        }
        for demo in complete {
            messages.push(Message {
                role: Role::User,
                content: self.user_content(demo, "", "", None, false),
            });
            messages.push(Message {
                role: Role::Assistant,
                content: self.assistant_content(demo, Some(COMPLETE_DEMO_MISSING)),
            });
        }
        messages
    }

    /// `format_conversation_history`: each past turn as a user message (when it has inputs) and an
    /// assistant message.
    pub fn history_messages<R: AsRef<Record>>(&self, turns: &[R]) -> Vec<Message> {
        let mut messages = Vec::with_capacity(2 * turns.len());
        for turn in turns {
            let turn = turn.as_ref();
            let has_input = self
                .spec
                .inputs
                .iter()
                .enumerate()
                .any(|(i, _)| self.spec.history != Some(i) && turn[i].is_some());
            let user = self.user_content(
                turn,
                "",
                "",
                has_input.then_some(self.requirements.as_str()),
                true,
            );
            if !user.is_empty() {
                messages.push(Message {
                    role: Role::User,
                    content: user,
                });
            }
            let assistant = self.assistant_content(turn, None);
            if !assistant.is_empty() {
                messages.push(Message {
                    role: Role::Assistant,
                    content: assistant,
                });
            }
        }
        messages
    }

    /// `Adapter.format`: system message, demos, conversation history, then the current request.
    pub fn format<R: AsRef<Record>>(
        &self,
        demos: &[R],
        inputs: &Record,
        history: Option<&[R]>,
    ) -> Vec<Message> {
        let mut messages = vec![Message {
            role: Role::System,
            content: self.system.clone(),
        }];
        messages.extend(self.demo_messages(demos));
        if let Some(turns) = history {
            messages.extend(self.history_messages(turns));
        }
        let content = self.user_content(
            inputs,
            "",
            "",
            Some(&self.requirements),
            self.spec.history.is_some(),
        );
        if !content.is_empty() {
            messages.push(Message {
                role: Role::User,
                content,
            });
        }
        messages
    }
}

fn field_section(name: &str, value: &Value) -> String {
    let mut out = String::with_capacity(name.len() + 16);
    out.push_str("[[ ## ");
    out.push_str(name);
    out.push_str(" ## ]]\n");
    value.write_text(&mut out);
    out
}

/// `"\n\n".join(parts).strip()`, the way DSPy assembles every section.
fn join_strip(parts: &[String]) -> String {
    pystr::strip(&parts.join("\n\n")).to_owned()
}

fn json_object(members: impl Iterator<Item = (String, Value)>) -> String {
    let mut out = String::new();
    Value::Dict(members.collect()).write_json(Layout::Indent2, 0, &mut out);
    out
}

fn describe_fields(fields: &[FieldSpec]) -> String {
    let lines: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut line = format!("{}. `{}` ({}): {}", i + 1, f.name, f.annotation, f.desc);
            if !f.constraints.is_empty() {
                line.push_str("\nConstraints: ");
                line.push_str(&f.constraints);
            }
            line
        })
        .collect();
    pystr::strip(&lines.join("\n")).to_owned()
}

fn structure_fields(fields: &[FieldSpec]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| field_section(&f.name, &Value::Str(f.type_note.clone())))
        .collect();
    join_strip(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            annotation: "str".into(),
            type_note: format!("{{{name}}}"),
            ..Default::default()
        }
    }

    fn qa(style: Style) -> Template {
        Template::compile(
            style,
            SignatureSpec {
                instruction_lines: vec!["Answer it.".into()],
                inputs: vec![field("question")],
                outputs: vec![field("answer")],
                history: None,
            },
        )
    }

    #[test]
    fn demos_put_incomplete_first_and_drop_those_without_outputs() {
        let t = qa(Style::Chat);
        let s = |x: &str| Some(Value::Str(x.into()));
        let demos: Vec<Vec<Option<Value>>> = vec![
            vec![s("q1"), s("a1")],
            vec![s("q2"), None],
            vec![s("q3"), Some(Value::Null)],
        ];
        let msgs = t.demo_messages(&demos);
        assert_eq!(msgs.len(), 4);
        assert!(msgs[0].content.starts_with(INCOMPLETE_DEMO_PREFIX));
        assert_eq!(
            msgs[1].content,
            "[[ ## answer ## ]]\nNone\n\n[[ ## completed ## ]]\n"
        );
        assert_eq!(msgs[2].content, "[[ ## question ## ]]\nq1");
    }

    #[test]
    fn json_assistant_content_is_indented_json() {
        let t = qa(Style::Json);
        let record = vec![None, Some(Value::Str("hi".into()))];
        assert_eq!(
            t.assistant_content(&record, None),
            "{\n  \"answer\": \"hi\"\n}"
        );
    }
}
