//! The query API evaluated in process over stored JSON values: filters on dotted paths, sort on
//! several keys, and paging with daprd's offset token (as its Redis store issues it: the offset
//! of the next page, returned whenever a limit is set and the page is not empty).

use std::cmp::Ordering;

use bytes::Bytes;
use serde_json::Value as Json;

use crate::state::query::{Filter, Order, Query, QueryItem, QueryResponse, Sort};
use crate::state::StateError;

/// One stored item offered to a query.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: String,
    pub value: Bytes,
    pub etag: String,
}

/// Runs `query` over `candidates`. Values that are not JSON cannot match a filter or be
/// sorted on, so they are left out. Ties (and queries without `sort`) are ordered by key, so
/// paging is stable between calls.
pub fn evaluate(query: &Query, candidates: Vec<Candidate>) -> Result<QueryResponse, StateError> {
    let filter = query.parsed_filter()?;
    let offset = parse_token(&query.page.token)?;
    let mut rows: Vec<(Candidate, Json)> = candidates
        .into_iter()
        .filter_map(|c| {
            let json = serde_json::from_slice::<Json>(&c.value).ok()?;
            filter
                .as_ref()
                .is_none_or(|f| matches(f, &json))
                .then_some((c, json))
        })
        .collect();
    rows.sort_by(|(a, a_json), (b, b_json)| {
        compare_rows(&query.sort, a_json, b_json).then_with(|| a.key.cmp(&b.key))
    });

    let limit = usize::try_from(query.page.limit).ok().filter(|l| *l > 0);
    let page = rows
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX));
    let results: Vec<QueryItem> = page
        .map(|(c, _)| QueryItem {
            key: c.key,
            data: c.value,
            etag: Some(c.etag),
            error: None,
        })
        .collect();
    let token =
        (limit.is_some() && !results.is_empty()).then(|| (offset + results.len()).to_string());
    Ok(QueryResponse { results, token })
}

fn parse_token(token: &str) -> Result<usize, StateError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse()
        .map_err(|_| StateError::InvalidRequest(format!("invalid pagination token {token:?}")))
}

/// The value at a dotted path (`person.org`) inside an object tree.
fn lookup<'a>(value: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.')
        .try_fold(value, |node, segment| node.as_object()?.get(segment))
}

/// A missing path matches no comparison, `NEQ` included (as a SQL NULL would not).
fn matches(filter: &Filter, value: &Json) -> bool {
    let field = |path: &str| lookup(value, path);
    let ordered = |path: &str, operand: &Json, accept: fn(Ordering) -> bool| {
        field(path)
            .and_then(|v| compare_values(v, operand))
            .is_some_and(accept)
    };
    match filter {
        Filter::Eq(path, operand) => field(path).is_some_and(|v| equal(v, operand)),
        Filter::Neq(path, operand) => field(path).is_some_and(|v| !equal(v, operand)),
        Filter::Gt(path, operand) => ordered(path, operand, Ordering::is_gt),
        Filter::Gte(path, operand) => ordered(path, operand, Ordering::is_ge),
        Filter::Lt(path, operand) => ordered(path, operand, Ordering::is_lt),
        Filter::Lte(path, operand) => ordered(path, operand, Ordering::is_le),
        Filter::In(path, operands) => {
            field(path).is_some_and(|v| operands.iter().any(|o| equal(v, o)))
        }
        Filter::And(all) => all.iter().all(|f| matches(f, value)),
        Filter::Or(any) => any.iter().any(|f| matches(f, value)),
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(_), Json::Number(_)) => compare_values(a, b) == Some(Ordering::Equal),
        _ => a == b,
    }
}

/// Numbers compare numerically, strings by code point, booleans false < true; values of
/// different kinds do not compare.
fn compare_values(a: &Json, b: &Json) -> Option<Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare_rows(sort: &[Sort], a: &Json, b: &Json) -> Ordering {
    sort.iter()
        .map(|s| {
            let ord = sort_order(lookup(a, &s.key), lookup(b, &s.key));
            match s.order {
                Order::Asc => ord,
                Order::Desc => ord.reverse(),
            }
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// A total order for sorting: missing values sort after present ones (as SQL NULLs do in
/// ascending order), and values of different kinds by kind.
fn sort_order(a: Option<&Json>, b: Option<&Json>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            compare_values(a, b).unwrap_or_else(|| kind_rank(a).cmp(&kind_rank(b)))
        }
    }
}

fn kind_rank(v: &Json) -> u8 {
    match v {
        Json::Null => 0,
        Json::Bool(_) => 1,
        Json::Number(_) => 2,
        Json::String(_) => 3,
        Json::Array(_) => 4,
        Json::Object(_) => 5,
    }
}
