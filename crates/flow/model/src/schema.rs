//! JSON Schema checks of agent inputs and outputs (drafts 4 to 2020-12, through `boon`).
//!
//! ```
//! use hybridgrid_flow_model::schema::CompiledSchema;
//! use serde_json::json;
//!
//! let s = CompiledSchema::compile(&json!({"type": "object", "required": ["path"],
//!     "properties": {"path": {"type": "string"}}})).unwrap();
//! assert!(s.validate(&json!({"path": "/src"})).is_ok());
//! let problems = s.validate(&json!({"path": 3})).unwrap_err();
//! assert!(problems[0].contains("/path"), "{problems:?}");
//! ```

use serde_json::Value;

/// A schema that does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON Schema: {reason}")]
pub struct SchemaError {
    /// What the compiler said.
    pub reason: String,
}

/// A compiled schema, ready to check many documents.
pub struct CompiledSchema {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledSchema")
    }
}

/// Longest list of problems reported for one document.
const MAX_PROBLEMS: usize = 10;

impl CompiledSchema {
    /// Compiles `schema`. Only `$ref`s inside the document resolve (no network, no files).
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let url = "urn:hybridgrid:schema";
        compiler
            .add_resource(url, schema.clone())
            .map_err(|e| SchemaError {
                reason: format!("{e:#}"),
            })?;
        let index = compiler
            .compile(url, &mut schemas)
            .map_err(|e| SchemaError {
                reason: format!("{e:#}"),
            })?;
        Ok(Self { schemas, index })
    }

    /// Checks `doc`; the error lists each problem as `<JSON pointer>: <what>`.
    pub fn validate(&self, doc: &Value) -> Result<(), Vec<String>> {
        match self.schemas.validate(doc, self.index) {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut out = Vec::new();
                flatten(&e.basic_output(), &mut out);
                if out.is_empty() {
                    out.push(e.to_string());
                }
                out.truncate(MAX_PROBLEMS);
                Err(out)
            }
        }
    }
}

fn flatten(output: &boon::OutputUnit<'_, '_, '_>, out: &mut Vec<String>) {
    let value = serde_json::to_value(output).unwrap_or(Value::Null);
    collect(&value, out);
}

fn collect(v: &Value, out: &mut Vec<String>) {
    if let Some(errors) = v.get("errors").and_then(Value::as_array) {
        for e in errors {
            collect(e, out);
        }
        return;
    }
    if let Some(msg) = v.get("error").and_then(Value::as_str) {
        let at = v
            .get("instanceLocation")
            .and_then(Value::as_str)
            .unwrap_or("");
        let at = if at.is_empty() { "/" } else { at };
        out.push(format!("{at}: {msg}"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn true_schema_accepts_anything_and_bad_schema_is_an_error() {
        let any = CompiledSchema::compile(&json!(true)).unwrap();
        assert!(any.validate(&json!([1, "x"])).is_ok());
        let err = CompiledSchema::compile(&json!({"type": "nonsense"})).unwrap_err();
        assert!(err.to_string().contains("invalid JSON Schema"), "{err}");
    }

    #[test]
    fn problems_name_the_location() {
        let s = CompiledSchema::compile(&json!({
            "type": "object", "required": ["findings"],
            "properties": {"findings": {"type": "array", "items": {"type": "object", "required": ["file"]}}}
        }))
        .unwrap();
        let p = s.validate(&json!({"findings": [{"line": 1}]})).unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.starts_with("/findings/0") && m.contains("file")),
            "{p:?}"
        );
        let p = s.validate(&json!({})).unwrap_err();
        assert!(p.iter().any(|m| m.contains("findings")), "{p:?}");
    }
}
