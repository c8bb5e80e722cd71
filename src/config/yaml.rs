//! Multi-document YAML reading shared by Components and Configuration. Syntax errors keep the
//! parser's file position; type errors keep the field path (via `serde_path_to_error`).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::ConfigError;

/// One non-empty document of a file, with its 0-based index among all documents of the file
/// (empty ones included, so the index matches what a reader counts).
#[derive(Debug)]
pub(super) struct Document {
    pub index: usize,
    pub value: Value,
}

/// Splits `text` on `---` and parses every document. Empty documents are dropped.
pub(super) fn documents(path: &Path, text: &str) -> Result<Vec<Document>, ConfigError> {
    let mut out = Vec::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        // Stop at the first broken document: the parser cannot resynchronise after an error.
        let mut value = Value::deserialize(de).map_err(|e| syntax_error(path, index, &e))?;
        value
            .apply_merge()
            .map_err(|e| syntax_error(path, index, &e))?;
        if !value.is_null() {
            out.push(Document { index, value });
        }
    }
    Ok(out)
}

fn syntax_error(path: &Path, document: usize, err: &serde_yaml_ng::Error) -> ConfigError {
    match err.location() {
        Some(loc) => ConfigError::Syntax {
            path: path.to_owned(),
            document,
            line: loc.line(),
            column: loc.column(),
            // The position is already in the message's own fields; do not say it twice.
            reason: err.to_string().replacen(
                &format!(" at line {} column {}", loc.line(), loc.column()),
                "",
                1,
            ),
        },
        None => invalid(path, document, "", err.to_string()),
    }
}

/// `apiVersion` and `kind` of a document, when both are strings.
pub(super) fn header(value: &Value) -> Option<(&str, &str)> {
    let api_version = value.get("apiVersion")?.as_str()?;
    let kind = value.get("kind")?.as_str()?;
    Some((api_version, kind))
}

/// Whether `api_version` belongs to Dapr's API group (`dapr.io/<version>`).
pub(super) fn is_dapr_group(api_version: &str) -> bool {
    api_version.starts_with("dapr.io/")
}

/// Decodes a document into a strict (`deny_unknown_fields`) type, reporting the field path.
pub(super) fn decode<T: DeserializeOwned>(
    path: &Path,
    document: usize,
    value: Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        invalid(path, document, &field, e.inner().to_string())
    })
}

/// Builds [`ConfigError::Invalid`]; an empty or root field path reads as "(top level)".
pub(super) fn invalid(path: &Path, document: usize, field: &str, reason: String) -> ConfigError {
    let field = match field {
        "" | "." => "(top level)".to_owned(),
        f => f.to_owned(),
    };
    ConfigError::Invalid {
        path: path.to_owned(),
        document,
        field,
        reason,
    }
}

/// Renders a YAML value as the string daprd hands to a component: strings as they are, other
/// scalars as their text (`true`, `5`), null as empty, lists and maps as compact JSON (daprd
/// JSON-encodes non-string values and unquotes strings).
pub(super) fn render(value: &Value) -> Result<String, String> {
    Ok(match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => render_float(f),
            (None, None, None) => n.to_string(),
        },
        Value::Sequence(_) | Value::Mapping(_) => {
            // Through serde_json::Value so map keys come out sorted, as Go's encoder sorts them.
            let json = serde_json::to_value(value)
                .map_err(|e| format!("cannot render this value as JSON text: {e}"))?;
            json.to_string()
        }
        Value::Tagged(tagged) => render(&tagged.value)?,
    })
}

/// Go's JSON encoder prints whole floats without a fraction (`1.0` -> `1`); match it so
/// components parsing integers accept the value.
fn render_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}
