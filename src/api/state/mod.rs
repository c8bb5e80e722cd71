//! The state routes of daprd's HTTP API (reference §2.5). Handlers only translate: decode the
//! request, call [`crate::state::States`], encode the answer or the error.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use http::header::IF_MATCH;
use http::HeaderMap;

use super::error::ApiError;
use super::ApiState;
use crate::state::{DeleteState, GetState, StateOptions, StatesError};

pub(super) mod body;
pub(super) mod errors;
mod reply;

use body::UrlParams;

type Params = Query<Vec<(String, String)>>;

/// Every state route. `bulk` and `transaction` are also ordinary keys for GET and DELETE, as
/// daprd's router falls through to `{key}` when the method does not match.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1.0/state/{store}", post(save).put(save))
        .route(
            "/v1.0/state/{store}/bulk",
            post(bulk_get).put(bulk_get).merge(named_key("bulk")),
        )
        .route(
            "/v1.0/state/{store}/transaction",
            post(transaction)
                .put(transaction)
                .merge(named_key("transaction")),
        )
        .route("/v1.0/state/{store}/{key}", get(get_state).delete(delete))
        .route("/v1.0-alpha1/state/{store}/query", post(query).put(query))
}

/// GET and DELETE for a key whose name is also a route segment.
fn named_key(key: &'static str) -> MethodRouter<Arc<ApiState>> {
    get(
        move |api: State<Arc<ApiState>>, Path(store): Path<String>, params: Params| async move {
            get_key(api, store, key.to_owned(), params).await
        },
    )
    .delete(
        move |api: State<Arc<ApiState>>,
              Path(store): Path<String>,
              params: Params,
              headers: HeaderMap| async move {
            delete_key(api, store, key.to_owned(), params, headers).await
        },
    )
}

fn respond(result: Result<Response, StatesError>) -> Response {
    result.unwrap_or_else(|err| errors::api_error(err).into_response())
}

async fn get_state(
    api: State<Arc<ApiState>>,
    Path((store, key)): Path<(String, String)>,
    params: Params,
) -> Response {
    get_key(api, store, key, params).await
}

async fn get_key(
    State(api): State<Arc<ApiState>>,
    store: String,
    key: String,
    Query(params): Params,
) -> Response {
    let params = UrlParams::new(params);
    let consistency = params.param("consistency");
    respond(
        async {
            let entry = api
                .states
                .store(&store)?
                .get(GetState {
                    key,
                    consistency,
                    metadata: params.metadata,
                })
                .await?;
            Ok(entry.map_or_else(reply::no_content, reply::entry))
        }
        .await,
    )
}

async fn delete(
    api: State<Arc<ApiState>>,
    Path((store, key)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> Response {
    delete_key(api, store, key, params, headers).await
}

/// The `If-Match` header's presence asks for an etag check; an empty value is no etag.
async fn delete_key(
    State(api): State<Arc<ApiState>>,
    store: String,
    key: String,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let params = UrlParams::new(params);
    let etag = headers
        .get(IF_MATCH)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let options = StateOptions {
        concurrency: params.param("concurrency"),
        consistency: params.param("consistency"),
    };
    respond(
        async {
            api.states
                .store(&store)?
                .delete(DeleteState {
                    key,
                    etag,
                    options,
                    metadata: params.metadata,
                })
                .await?;
            Ok(reply::no_content())
        }
        .await,
    )
}

/// Runs a handler that needs a store and the request body, reading the body only once the
/// store lookup succeeded, as daprd orders its checks.
async fn with_store_and_body<S, F, Fut>(
    api: &ApiState,
    store: Result<S, StatesError>,
    body: Body,
    run: F,
) -> Response
where
    F: FnOnce(S, bytes::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let store = match store {
        Ok(store) => store,
        Err(err) => return errors::api_error(err).into_response(),
    };
    match body::read(body, api.max_body).await {
        Ok(bytes) => run(store, bytes)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(err) => err.into_response(),
    }
}

async fn save(
    State(api): State<Arc<ApiState>>,
    Path(store): Path<String>,
    Query(params): Params,
    request: Body,
) -> Response {
    let params = UrlParams::new(params);
    let store = api.states.store(&store);
    with_store_and_body(&api, store, request, |store, bytes| async move {
        let items = body::save_items(&bytes, &params.metadata)?;
        store.save(items).await.map_err(errors::api_error)?;
        Ok(reply::no_content())
    })
    .await
}

async fn bulk_get(
    State(api): State<Arc<ApiState>>,
    Path(store): Path<String>,
    Query(params): Params,
    request: Body,
) -> Response {
    let params = UrlParams::new(params);
    let store = api.states.store(&store);
    with_store_and_body(&api, store, request, |store, bytes| async move {
        let req = body::bulk_get(&bytes, &params.metadata)?;
        let entries = store.bulk_get(req).await.map_err(errors::api_error)?;
        Ok(reply::bulk(&entries))
    })
    .await
}

async fn transaction(
    State(api): State<Arc<ApiState>>,
    Path(store): Path<String>,
    Query(params): Params,
    request: Body,
) -> Response {
    let params = UrlParams::new(params);
    let store = api
        .states
        .store(&store)
        .and_then(|s| s.ensure_transactional().map(|()| s));
    with_store_and_body(&api, store, request, |store, bytes| async move {
        let (ops, metadata) = body::transaction(&bytes, &params.metadata)?;
        store
            .transact(ops, metadata)
            .await
            .map_err(errors::api_error)?;
        Ok(reply::no_content())
    })
    .await
}

async fn query(
    State(api): State<Arc<ApiState>>,
    Path(store): Path<String>,
    Query(params): Params,
    request: Body,
) -> Response {
    let params = UrlParams::new(params);
    let store = api.states.store(&store);
    with_store_and_body(&api, store, request, |store, bytes| async move {
        let outcome = store
            .query(&bytes, params.metadata)
            .await
            .map_err(errors::api_error)?;
        Ok(reply::query(&outcome))
    })
    .await
}
