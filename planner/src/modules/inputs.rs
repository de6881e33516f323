//! A module's inputs: their declaration in `module.yaml`, and the check of the values a Use
//! gives them (type, allowed values, range), each problem at the value with the declaration
//! as its second place.

use std::collections::BTreeMap;

use nimbus_schemas::{Bytes, Cpu, InputSpec, InputType, ModuleSpec};

use super::subst::{Sourced, json_of_node, node_of_json};
use crate::diagnostics::{FileId, Label, Problem, did_you_mean};
use crate::tree::{ByteSpan, Node, Value, kebab_to_camel};

/// One declared input and where it is declared.
#[derive(Clone, Debug)]
pub struct Input {
    pub spec: InputSpec,
    /// The input's name in module.yaml.
    pub at: Label,
}

/// A module: its folder and declared inputs.
#[derive(Clone, Debug)]
pub struct ModuleDecl {
    pub dir: String,
    pub file: FileId,
    /// Where its inputs are declared (the `inputs` field, else the Module).
    pub declared_at: ByteSpan,
    pub description: Option<String>,
    pub inputs: BTreeMap<String, Input>,
}

impl ModuleDecl {
    pub fn new(
        dir: String,
        file: FileId,
        spec: ModuleSpec,
        inputs_node: Option<&Node>,
        declared_at: ByteSpan,
    ) -> Self {
        let description = spec.description.clone();
        let inputs = spec
            .inputs
            .into_iter()
            .map(|(name, spec)| {
                let span = inputs_node
                    .and_then(|n| n.entry(&name))
                    .map_or(ByteSpan::default(), |(k, _)| k.span);
                let at = Label::new(file, span, format!("input `{name}` is declared here"));
                (name, Input { spec, at })
            })
            .collect();
        ModuleDecl {
            dir,
            file,
            declared_at,
            description,
            inputs,
        }
    }

    /// Checks a declaration's defaults against its own types.
    pub fn check_defaults(&self, problems: &mut Vec<Problem>) {
        for (name, input) in &self.inputs {
            if let Some(default) = &input.spec.default {
                let node = node_of_json(default, input.at.span);
                if let Some(why) = mismatch(&input.spec, &node) {
                    problems.push(
                        Problem::error(
                            "nimbus::module::input_default",
                            format!("the default of input `{name}` {why}"),
                            Label::new(self.file, input.at.span, "declared here"),
                        )
                        .with_help("make the default a value the input allows"),
                    );
                }
            }
        }
    }

    /// The values of one use: what it gives (checked), then defaults. `values` is the Use's
    /// `values` map, already substituted; `use_label` is the Use's name, for inputs not given.
    pub fn bind(
        &self,
        values: Vec<(String, ByteSpan, Sourced)>,
        use_file: FileId,
        use_label: &Label,
        problems: &mut Vec<Problem>,
    ) -> Option<BTreeMap<String, Sourced>> {
        let before = problems.len();
        let mut bound = BTreeMap::new();
        for (written, key_span, value) in values {
            let name = kebab_to_camel(&written);
            let mut value = value;
            // A single value is a list of one (KDL's `ports 8000`).
            if let Some(input) = self.inputs.get(&name)
                && input.spec.input_type == InputType::List
                && !matches!(
                    value.node.value,
                    Value::Seq(_) | Value::Map(_) | Value::Null
                )
            {
                let span = value.node.span;
                value.node = Node::new(Value::Seq(vec![value.node.clone()]), span);
            }
            let Some(input) = self.inputs.get(&name) else {
                let names: Vec<&str> = self.inputs.keys().map(String::as_str).collect();
                problems.push(
                    Problem::error(
                        "nimbus::module::unknown_input",
                        format!("module {} has no input `{written}`", self.dir),
                        Label::new(use_file, key_span, "not an input of the module"),
                    )
                    .with_label(Label::new(
                        self.file,
                        self.declared_at,
                        "the module's inputs",
                    ))
                    .with_help(
                        match did_you_mean(&name, names.iter().copied()) {
                            Some(close) => format!("did you mean `{close}`?"),
                            None if names.is_empty() => "the module declares no inputs".into(),
                            None => format!("its inputs are: {}", names.join(", ")),
                        },
                    ),
                );
                continue;
            };
            if let Some(why) = mismatch(&input.spec, &value.node) {
                let at = value
                    .at
                    .clone()
                    .unwrap_or_else(|| Label::new(use_file, value.node.span, ""));
                problems.push(
                    Problem::error(
                        "nimbus::module::input_value",
                        format!("input `{name}` of module {} {why}", self.dir),
                        Label::new(at.file, at.span, "this value"),
                    )
                    .with_label(input.at.clone())
                    .with_help(allowed_help(&input.spec)),
                );
                continue;
            }
            bound.insert(name, value);
        }
        for (name, input) in &self.inputs {
            if bound.contains_key(name) {
                continue;
            }
            match &input.spec.default {
                Some(default) => {
                    bound.insert(
                        name.clone(),
                        Sourced {
                            node: node_of_json(default, input.at.span),
                            at: Some(Label::new(
                                self.file,
                                input.at.span,
                                format!("the default of `{name}`"),
                            )),
                        },
                    );
                }
                None => problems.push(
                    Problem::error(
                        "nimbus::module::missing_input",
                        format!(
                            "module {} needs input `{name}`, which has no default",
                            self.dir
                        ),
                        use_label.clone(),
                    )
                    .with_label(input.at.clone())
                    .with_help(format!("give it under `values:` (`{name}: ...`)")),
                ),
            }
        }
        (problems.len() == before).then_some(bound)
    }
}

/// Why `value` does not fit `spec`, if it does not.
fn mismatch(spec: &InputSpec, value: &Node) -> Option<String> {
    let fits = match (spec.input_type, &value.value) {
        (InputType::String, Value::String(_))
        | (InputType::Integer, Value::Int(_))
        | (InputType::Boolean, Value::Bool(_))
        | (InputType::List, Value::Seq(_))
        | (InputType::Map, Value::Map(_))
        | (InputType::Quantity, Value::Int(_)) => true,
        (InputType::Quantity, Value::String(s)) => quantity(s).is_some(),
        _ => false,
    };
    if !fits {
        return Some(format!(
            "must be {} {}, and this is {}",
            article(spec.input_type),
            spec.input_type.as_str(),
            value.kind_name()
        ));
    }
    if let Some(allowed) = &spec.allowed
        && !allowed.contains(&json_of_node(value))
    {
        return Some(format!(
            "must be one of {}",
            allowed
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let number = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => quantity(s),
        other => other.as_f64(),
    };
    let here = match &value.value {
        Value::Int(i) => Some(*i as f64),
        Value::String(s) => quantity(s),
        _ => None,
    };
    if let Some(here) = here {
        if let Some(min) = spec.min.as_ref().and_then(number)
            && here < min
        {
            return Some(format!(
                "must be at least {}",
                spec.min.as_ref().map(show).unwrap_or_default()
            ));
        }
        if let Some(max) = spec.max.as_ref().and_then(number)
            && here > max
        {
            return Some(format!(
                "must be at most {}",
                spec.max.as_ref().map(show).unwrap_or_default()
            ));
        }
    }
    None
}

fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A quantity as a number to compare: bytes, else millicores.
fn quantity(text: &str) -> Option<f64> {
    Bytes::parse(text)
        .map(|b| b.bytes as f64)
        .or_else(|_| Cpu::parse(text).map(|c| c.millicores as f64))
        .ok()
}

fn article(kind: InputType) -> &'static str {
    match kind {
        InputType::Integer => "an",
        _ => "a",
    }
}

fn allowed_help(spec: &InputSpec) -> String {
    let mut parts = vec![format!("the input is {}", spec.input_type.as_str())];
    if let Some(allowed) = &spec.allowed {
        parts.push(format!(
            "one of {}",
            allowed.iter().map(show).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(min) = &spec.min {
        parts.push(format!("at least {}", show(min)));
    }
    if let Some(max) = &spec.max {
        parts.push(format!("at most {}", show(max)));
    }
    if let Some(description) = &spec.description {
        parts.push(format!("({description})"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: InputType) -> InputSpec {
        InputSpec {
            input_type: kind,
            default: None,
            allowed: None,
            min: None,
            max: None,
            description: None,
        }
    }

    #[test]
    fn types_ranges_and_allowed_values() {
        let int = |i| Node::new(Value::Int(i), ByteSpan::default());
        let text = |s: &str| Node::new(Value::String(s.into()), ByteSpan::default());
        let mut replicas = spec(InputType::Integer);
        replicas.min = Some(1.into());
        replicas.max = Some(10.into());
        assert_eq!(mismatch(&replicas, &int(3)), None);
        assert!(
            mismatch(&replicas, &int(11))
                .unwrap()
                .contains("at most 10")
        );
        assert!(
            mismatch(&replicas, &text("3"))
                .unwrap()
                .contains("an integer")
        );
        let mut memory = spec(InputType::Quantity);
        memory.max = Some("1Gi".into());
        assert_eq!(mismatch(&memory, &text("512Mi")), None);
        assert!(mismatch(&memory, &text("2Gi")).is_some());
        assert!(mismatch(&memory, &text("lots")).is_some());
        let mut tier = spec(InputType::String);
        tier.allowed = Some(vec!["small".into(), "large".into()]);
        assert_eq!(mismatch(&tier, &text("small")), None);
        assert!(mismatch(&tier, &text("huge")).unwrap().contains("one of"));
    }
}
