//! The query API over the JSONB `value` column, after daprd's
//! `common/component/postgresql/v1/postgresql_query.go`: a dotted key `a.b` is
//! `value->'a'->>'b'`, `IN` is an `OR` of equalities, sort keys become `ORDER BY`, and paging
//! is `LIMIT` plus an `OFFSET` carried in the token (the next token is offset + rows).
//!
//! Where daprd's SQL gives wrong answers we do better, and say so here:
//! - daprd compares every value as text, so `GT 9` misses `10`; numbers here compare as
//!   numbers (rows whose field is not a number never match a numeric filter).
//! - daprd splices path segments into the SQL text; here they are parameters.
//! - daprd's query also returns expired rows the cleanup has not removed yet; reads never
//!   show those, so queries skip them too.
//! - Results carry the stored JSON as daprd's do (a binary value shows as its base64 string),
//!   since the API embeds each result in a JSON document.
//! - Sorting uses the JSONB value (numbers in numeric order, strings as daprd sorts them),
//!   and the key breaks ties so pages do not overlap or skip rows.

use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::ops::backend;
use super::value::{compact, RawJsonb, Xid};

use crate::state::query::{Filter, Order, Query, QueryItem, QueryResponse};
use crate::state::StateError;

/// A statement and its parameters (all text; the SQL casts them).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Built {
    pub sql: String,
    pub params: Vec<String>,
    /// `LIMIT`, when the query pages.
    pub limit: Option<i64>,
    /// `OFFSET` from the token.
    pub offset: i64,
}

pub(super) fn build(table: &str, query: &Query) -> Result<Built, StateError> {
    let mut b = Builder { params: Vec::new() };
    let mut sql = format!(
        "SELECT key, value, xmin FROM {table} \
         WHERE (expiredate IS NULL OR expiredate >= CURRENT_TIMESTAMP)"
    );
    if let Some(filter) = query.parsed_filter()? {
        let cond = b.filter(&filter)?;
        sql.push_str(" AND ");
        sql.push_str(&cond);
    }
    sql.push_str(" ORDER BY ");
    for s in &query.sort {
        let path = b.json_path(&s.key);
        let dir = match s.order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        sql.push_str(&format!("{path} {dir}, "));
    }
    sql.push_str("key");
    let limit = (query.page.limit > 0).then_some(query.page.limit);
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let offset = match query.page.token.as_str() {
        "" => 0,
        token => token
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                StateError::InvalidRequest(format!(
                    "invalid query token {token:?}: expected the token of a previous page"
                ))
            })?,
    };
    if !query.page.token.is_empty() {
        sql.push_str(&format!(" OFFSET {offset}"));
    }
    Ok(Built {
        sql,
        params: b.params,
        limit,
        offset,
    })
}

struct Builder {
    params: Vec<String>,
}

impl Builder {
    fn param(&mut self, value: String) -> String {
        self.params.push(value);
        format!("${}::text", self.params.len())
    }

    /// `value->$1->$2`: the JSONB at a dotted path (SQL NULL when absent).
    fn json_path(&mut self, key: &str) -> String {
        let mut out = "value".to_owned();
        for part in key.split('.') {
            let p = self.param(part.to_owned());
            out.push_str(&format!("->{p}"));
        }
        out
    }

    /// `value->$1->>$2`: the same as text, as daprd compares it.
    fn text_path(&mut self, key: &str) -> String {
        let parts: Vec<&str> = key.split('.').collect();
        let mut out = "value".to_owned();
        for (i, part) in parts.iter().enumerate() {
            let p = self.param((*part).to_owned());
            let arrow = if i + 1 == parts.len() { "->>" } else { "->" };
            out.push_str(&format!("{arrow}{p}"));
        }
        out
    }

    /// The field as a number, or NULL when it holds anything else (so a stray string in one
    /// row cannot fail the whole query with a cast error).
    fn numeric_path(&mut self, key: &str) -> String {
        let json = self.json_path(key);
        let text = self.text_path(key);
        format!("(CASE WHEN jsonb_typeof({json}) = 'number' THEN ({text})::numeric END)")
    }

    fn filter(&mut self, f: &Filter) -> Result<String, StateError> {
        Ok(match f {
            Filter::Eq(k, v) => self.equal(k, v),
            Filter::Neq(k, v) => {
                // Like daprd's `!=`: rows without the field do not match.
                let present = self.json_path(k);
                let eq = self.equal(k, v);
                format!("({present} IS NOT NULL AND NOT COALESCE({eq}, false))")
            }
            Filter::Gt(k, v) => self.compare(">", "GT", k, v)?,
            Filter::Gte(k, v) => self.compare(">=", "GTE", k, v)?,
            Filter::Lt(k, v) => self.compare("<", "LT", k, v)?,
            Filter::Lte(k, v) => self.compare("<=", "LTE", k, v)?,
            Filter::In(k, values) => {
                let parts: Vec<String> = values.iter().map(|v| self.equal(k, v)).collect();
                format!("({})", parts.join(" OR "))
            }
            Filter::And(fs) => self.join("AND", fs)?,
            Filter::Or(fs) => self.join("OR", fs)?,
        })
    }

    fn join(&mut self, op: &str, filters: &[Filter]) -> Result<String, StateError> {
        let parts = filters
            .iter()
            .map(|f| self.filter(f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("({})", parts.join(&format!(" {op} "))))
    }

    fn equal(&mut self, key: &str, value: &Value) -> String {
        match value {
            // daprd's form: the field as text against the string.
            Value::String(s) => {
                let path = self.text_path(key);
                let p = self.param(s.clone());
                format!("({path} = {p})")
            }
            Value::Number(n) => {
                let path = self.numeric_path(key);
                let p = self.param(n.to_string());
                format!("({path} = ({p})::numeric)")
            }
            // true/false/null, objects and arrays: JSON equality.
            other => {
                let path = self.json_path(key);
                let p = self.param(other.to_string());
                format!("({path} = ({p})::jsonb)")
            }
        }
    }

    fn compare(
        &mut self,
        op: &str,
        name: &str,
        key: &str,
        value: &Value,
    ) -> Result<String, StateError> {
        match value {
            Value::Number(n) => {
                let path = self.numeric_path(key);
                let p = self.param(n.to_string());
                Ok(format!("({path} {op} ({p})::numeric)"))
            }
            // daprd's own refusal, word for word.
            Value::String(s) => Err(StateError::InvalidRequest(format!(
                "unsupported type of value {s}; string type not permitted"
            ))),
            other => Err(StateError::InvalidRequest(format!(
                "{name} on {key:?} needs a number, got {other}"
            ))),
        }
    }
}

/// Runs a built query (its SQL differs per query, so it is not cached as a statement).
pub(super) async fn run(
    client: &mut deadpool_postgres::Client,
    built: Built,
) -> Result<QueryResponse, StateError> {
    let params: Vec<&(dyn ToSql + Sync)> = built
        .params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect();
    let rows = client
        .query(built.sql.as_str(), &params)
        .await
        .map_err(backend("query"))?;
    let mut results = Vec::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.try_get(0).map_err(backend("query"))?;
        let json: RawJsonb<'_> = row.try_get(1).map_err(backend("query"))?;
        let etag: Xid = row.try_get(2).map_err(backend("query"))?;
        results.push(QueryItem {
            key,
            data: compact(json.0),
            etag: Some(etag.0.to_string()),
            error: None,
        });
    }
    // daprd returns offset + rows whenever the query has a limit, even on the last page.
    let token = built.limit.map(|_| {
        let n = i64::try_from(results.len()).unwrap_or(i64::MAX);
        built.offset.saturating_add(n).to_string()
    });
    Ok(QueryResponse { results, token })
}
