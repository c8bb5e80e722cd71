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
