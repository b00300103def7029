//! Input templates: `{{ context.alert.labels.severity }}`, `{{ nodes.scan.output.findings.0.file }}`.
//!
//! A template is a JSON document whose strings may hold `{{ reference }}` placeholders. A reference
//! is a dotted path into the scope (`context` = the run's context, `nodes.<id>.output` = a parent's
//! output); a numeric segment indexes an array. A string that is exactly one placeholder is
//! replaced by the referenced value with its type (a number stays a number, an object an object);
//! a placeholder inside a longer string is replaced by the value's text (strings as they are,
//! anything else as compact JSON), and the document stays valid JSON because substitution works on
//! values, never on JSON text. An unresolved reference is an error naming it, never passed on.
//!
//! ```
//! use hybridgrid_flow_model::template::{render, Scope};
//! use serde_json::json;
//!
//! let context = json!({"alert": {"labels": {"severity": "critical"}}});
//! let nodes = json!({"scan": {"output": {"findings": [{"file": "a \"b\".env", "line": 3}]}}});
//! let scope = Scope { context: &context, nodes: &nodes };
//! let input = json!({
//!     "severity": "{{ context.alert.labels.severity }}",
//!     "first": "{{ nodes.scan.output.findings.0 }}",
//!     "text": "found in {{ nodes.scan.output.findings.0.file }} line {{nodes.scan.output.findings.0.line}}",
//! });
//! let out = render(&input, &scope).unwrap();
//! assert_eq!(out["first"], json!({"file": "a \"b\".env", "line": 3}));
//! assert_eq!(out["text"], json!("found in a \"b\".env line 3"));
//!
//! let err = render(&json!("{{ nodes.scan.output.missing }}"), &scope).unwrap_err();
//! assert_eq!(err.to_string(), "unresolved reference `nodes.scan.output.missing` (no key \"missing\")");
//! ```

use serde_json::Value;

/// What templates can refer to.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The run's context (`context.…`).
    pub context: &'a Value,
    /// An object of node id → `{"output": …}` (`nodes.<id>.output.…`).
    pub nodes: &'a Value,
}

/// A template that cannot be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The reference names nothing in the scope.
    #[error("unresolved reference `{reference}` ({reason})")]
    Unresolved {
        /// The reference as written, trimmed.
        reference: String,
        /// Which segment failed.
        reason: String,
    },
    /// A `{{` without `}}`, or an empty or malformed reference.
    #[error("malformed template {text:?}: {reason}")]
    Malformed {
        /// The string holding it.
        text: String,
        /// What is wrong.
        reason: String,
    },
}

/// Renders every string of `template` against `scope`.
pub fn render(template: &Value, scope: &Scope<'_>) -> Result<Value, TemplateError> {
    match template {
        Value::String(s) => render_str(s, scope),
        Value::Array(items) => items
            .iter()
            .map(|v| render(v, scope))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), render(v, scope)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Every reference in `template`, as written (trimmed), in document order.
pub fn references(template: &Value) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    collect(template, &mut out)?;
    Ok(out)
}

fn collect(v: &Value, out: &mut Vec<String>) -> Result<(), TemplateError> {
    match v {
        Value::String(s) => {
            for part in parse(s)? {
                if let Part::Ref(r) = part {
                    out.push(r.to_owned());
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                collect(i, out)?;
            }
        }
        Value::Object(map) => {
            for i in map.values() {
                collect(i, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The node a `nodes.<id>…` reference points at.
pub fn referenced_node(reference: &str) -> Option<&str> {
    let mut segs = reference.split('.');
    (segs.next() == Some("nodes"))
        .then(|| segs.next())
        .flatten()
}

/// Whether a value holds no template at all.
pub fn is_static(template: &Value) -> bool {
    matches!(references(template), Ok(r) if r.is_empty())
}

enum Part<'a> {
    Text(&'a str),
    Ref(&'a str),
}

fn parse(s: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(TemplateError::Malformed {
                text: s.to_owned(),
                reason: "`{{` without a closing `}}`".into(),
            });
        };
        let reference = after[..close].trim();
        check_reference(s, reference)?;
        parts.push(Part::Ref(reference));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

fn check_reference(text: &str, reference: &str) -> Result<(), TemplateError> {
    let bad = |reason: String| TemplateError::Malformed {
        text: text.to_owned(),
        reason,
    };
    if reference.is_empty() {
        return Err(bad("empty reference `{{ }}`".into()));
    }
    if reference.split('.').any(|seg| {
        seg.is_empty()
            || !seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(bad(format!(
            "reference `{reference}` is not a dotted path of names and indexes"
        )));
    }
    match reference.split('.').next() {
        Some("context") | Some("nodes") => Ok(()),
        _ => Err(bad(format!(
            "reference `{reference}` must start with `context` or `nodes`"
        ))),
    }
}

fn render_str(s: &str, scope: &Scope<'_>) -> Result<Value, TemplateError> {
    if !s.contains("{{") {
        return Ok(Value::String(s.to_owned()));
    }
    let parts = parse(s)?;
    if let [Part::Ref(r)] = parts.as_slice() {
        return lookup(r, scope).cloned();
    }
    let mut out = String::with_capacity(s.len());
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Ref(r) => match lookup(r, scope)? {
                Value::String(v) => out.push_str(v),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

fn lookup<'a>(reference: &str, scope: &Scope<'a>) -> Result<&'a Value, TemplateError> {
    let mut segs = reference.split('.');
    let mut cur = match segs.next() {
        Some("context") => scope.context,
        Some("nodes") => scope.nodes,
        _ => {
            return Err(TemplateError::Unresolved {
                reference: reference.to_owned(),
                reason: "must start with `context` or `nodes`".into(),
            });
        }
    };
    for seg in segs {
        let next = match cur {
            Value::Object(map) => map.get(seg),
            Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        cur = next.ok_or_else(|| TemplateError::Unresolved {
            reference: reference.to_owned(),
            reason: match cur {
                Value::Array(items) => format!("no index {seg} in an array of {}", items.len()),
                Value::Object(_) => format!("no key {seg:?}"),
                Value::Null => format!("{seg:?} looked up in null"),
                other => format!("{seg:?} looked up in a {}", type_name(other)),
            },
        })?;
    }
    Ok(cur)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn scope_of<'a>(context: &'a Value, nodes: &'a Value) -> Scope<'a> {
        Scope { context, nodes }
    }

    #[test]
    fn whole_value_keeps_its_type() {
        let c = json!({"n": 3, "b": true, "o": {"x": [1, 2]}, "nul": null});
        let n = json!({});
        let s = scope_of(&c, &n);
        assert_eq!(render(&json!("{{context.n}}"), &s).unwrap(), json!(3));
        assert_eq!(
            render(&json!(" {{ context.b }} "), &s).unwrap(),
            json!(" true ")
        );
        assert_eq!(render(&json!("{{ context.b }}"), &s).unwrap(), json!(true));
        assert_eq!(render(&json!("{{ context.o.x.1 }}"), &s).unwrap(), json!(2));
        assert_eq!(
            render(&json!("{{ context.nul }}"), &s).unwrap(),
            json!(null)
        );
        assert_eq!(
            render(&json!(["{{ context.o }}", 7]), &s).unwrap(),
            json!([{"x": [1, 2]}, 7])
        );
        assert_eq!(
            render(&json!("o={{ context.o }}"), &s).unwrap(),
            json!("o={\"x\":[1,2]}")
        );
    }

    #[test]
    fn errors_name_the_reference() {
        let c = json!({"a": [1]});
        let n = json!({"scan": {"output": {"x": 1}}});
        let s = scope_of(&c, &n);
        let e = render(&json!({"k": "{{ context.a.5 }}"}), &s).unwrap_err();
        assert_eq!(
            e,
            TemplateError::Unresolved {
                reference: "context.a.5".into(),
                reason: "no index 5 in an array of 1".into()
            }
        );
        assert!(matches!(
            render(&json!("{{ nodes.lint.output }}"), &s),
            Err(TemplateError::Unresolved { reference, .. }) if reference == "nodes.lint.output"
        ));
        for bad in [
            "{{ context.a",
            "{{ }}",
            "{{ env.HOME }}",
            "{{ context..a }}",
            "{{ context.a | x }}",
        ] {
            assert!(
                matches!(
                    render(&json!(bad), &s),
                    Err(TemplateError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn references_and_nodes() {
        let t = json!({"a": "{{ nodes.scan.output.f }} and {{ context.x }}", "b": ["{{nodes.lint.output}}"]});
        let refs = references(&t).unwrap();
        assert_eq!(
            refs,
            vec!["nodes.scan.output.f", "context.x", "nodes.lint.output"]
        );
        assert_eq!(referenced_node(&refs[0]), Some("scan"));
        assert_eq!(referenced_node(&refs[1]), None);
        assert!(is_static(&json!({"a": [1, "plain"]})));
    }

    proptest! {
        /// Any string value substituted into a longer string yields exactly that text: escaping is
        /// the JSON serializer's job, so quotes, backslashes and newlines survive.
        #[test]
        fn embedded_strings_survive_verbatim(v in "\\PC*", pre in "[a-z ]{0,5}") {
            let c = json!({"v": v.clone()});
            let n = json!({});
            let out = render(&json!(format!("{pre}{{{{ context.v }}}}!")), &scope_of(&c, &n)).unwrap();
            prop_assert_eq!(out, Value::String(format!("{pre}{v}!")));
        }

        /// A whole-value template returns the referenced value unchanged.
        #[test]
        fn whole_value_is_identity(n in any::<i64>(), s in "\\PC*", b in any::<bool>()) {
            let c = json!({"x": {"n": n, "s": s, "b": b}});
            let nodes = json!({});
            let out = render(&json!("{{ context.x }}"), &scope_of(&c, &nodes)).unwrap();
            prop_assert_eq!(&out, &c["x"]);
        }
    }
}
