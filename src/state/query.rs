//! The state query API's JSON language (`filter`, `sort`, `page`), as daprd's `state/query`
//! package defines it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A parsed query. `filter` is kept as the JSON daprd accepts and parsed into [`Filter`] by
/// [`Query::filter`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Query {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<Sort>,
    #[serde(default)]
    pub page: Page,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Sort {
    pub key: String,
    #[serde(default)]
    pub order: Order,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Order {
    #[default]
    #[serde(rename = "ASC")]
    Asc,
    #[serde(rename = "DESC")]
    Desc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Page {
    #[serde(default)]
    pub limit: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

/// A filter tree. Keys are dotted paths into the stored JSON value (`person.org`).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq(String, serde_json::Value),
    Neq(String, serde_json::Value),
    Gt(String, serde_json::Value),
    Gte(String, serde_json::Value),
    Lt(String, serde_json::Value),
    Lte(String, serde_json::Value),
    In(String, Vec<serde_json::Value>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// One result row; `key` is the full stored key until the building block strips the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryItem {
    pub key: String,
    pub data: Bytes,
    pub etag: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResponse {
    pub results: Vec<QueryItem>,
    /// The next page's token, when there is one.
    pub token: Option<String>,
}

impl Query {
    /// Parses `filter` into a [`Filter`] tree; `None` when the query has no filter.
    pub fn parsed_filter(&self) -> Result<Option<Filter>, super::StateError> {
        match &self.filter {
            None => Ok(None),
            Some(v) if v.as_object().is_some_and(|o| o.is_empty()) => Ok(None),
            Some(v) => parse_filter(v)
                .map(Some)
                .map_err(super::StateError::InvalidRequest),
        }
    }
}

/// daprd's filter JSON: an object with one operator, e.g. `{"EQ": {"state": "CA"}}`,
/// `{"IN": {"state": ["CA", "WA"]}}`, `{"AND": [..]}`.
pub fn parse_filter(value: &serde_json::Value) -> Result<Filter, String> {
    let obj = value.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        format!("filter must be an object with exactly one operator, got {value}")
    })?;
    let (op, arg) = obj.iter().next().ok_or("empty filter")?;
    let field = || -> Result<(String, serde_json::Value), String> {
        let inner = arg
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| format!("{op} takes an object with exactly one key, got {arg}"))?;
        let (k, v) = inner.iter().next().ok_or("empty operand")?;
        Ok((k.clone(), v.clone()))
    };
    let list = || -> Result<Vec<Filter>, String> {
        let items = arg
            .as_array()
            .ok_or_else(|| format!("{op} takes an array of filters, got {arg}"))?;
        if items.len() < 2 {
            return Err(format!("{op} needs at least two filters"));
        }
        items.iter().map(parse_filter).collect()
    };
    Ok(match op.as_str() {
        "EQ" => field().map(|(k, v)| Filter::Eq(k, v))?,
        "NEQ" => field().map(|(k, v)| Filter::Neq(k, v))?,
        "GT" => field().map(|(k, v)| Filter::Gt(k, v))?,
        "GTE" => field().map(|(k, v)| Filter::Gte(k, v))?,
        "LT" => field().map(|(k, v)| Filter::Lt(k, v))?,
        "LTE" => field().map(|(k, v)| Filter::Lte(k, v))?,
        "IN" => {
            let (k, v) = field()?;
            match v {
                serde_json::Value::Array(values) if !values.is_empty() => Filter::In(k, values),
                other => return Err(format!("IN takes a non-empty array of values, got {other}")),
            }
        }
        "AND" => Filter::And(list()?),
        "OR" => Filter::Or(list()?),
        other => {
            return Err(format!(
                "unknown filter operator {other:?} (EQ, NEQ, GT, GTE, LT, LTE, IN, AND, OR)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_daprd_filters() {
        let q: Query = serde_json::from_value(json!({
            "filter": {"OR": [{"EQ": {"person.org": "A"}}, {"AND": [{"IN": {"state": ["CA", "WA"]}}, {"GT": {"age": 3}}]}]},
            "sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}],
            "page": {"limit": 2, "token": "2"}
        }))
        .unwrap();
        assert_eq!(
            q.parsed_filter().unwrap(),
            Some(Filter::Or(vec![
                Filter::Eq("person.org".into(), json!("A")),
                Filter::And(vec![
                    Filter::In("state".into(), vec![json!("CA"), json!("WA")]),
                    Filter::Gt("age".into(), json!(3)),
                ]),
            ]))
        );
        assert_eq!(q.sort[0].order, Order::Desc);
        assert_eq!(q.sort[1].order, Order::Asc);
        assert_eq!(q.page.limit, 2);
    }

    #[test]
    fn rejects_malformed_filters() {
        for bad in [
            json!({"EQ": {"a": 1}, "NEQ": {"b": 2}}),
            json!({"XOR": []}),
            json!({"AND": [{"EQ": {"a": 1}}]}),
            json!({"IN": {"a": 1}}),
        ] {
            assert!(parse_filter(&bad).is_err(), "{bad}");
        }
        let empty: Query = serde_json::from_value(json!({"filter": {}})).unwrap();
        assert_eq!(empty.parsed_filter().unwrap(), None);
    }
}
