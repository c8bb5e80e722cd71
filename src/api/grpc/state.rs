//! The state RPCs: protobuf in, [`States`] calls out, the same entry points and error mapping
//! as the HTTP state routes.
//!
//! [`States`]: crate::state::States

use tonic::{Request, Response, Status};

use super::super::error::ApiError;
use super::super::state::errors::api_error;
use super::super::ApiState;
use super::errors::status;
use crate::proto::common::{state_options, StateItem, StateOptions as PbOptions};
use crate::proto::runtime::{
    BulkStateItem, DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest,
    GetBulkStateRequest, GetBulkStateResponse, GetStateRequest, GetStateResponse, QueryStateItem,
    QueryStateRequest, QueryStateResponse, SaveStateRequest,
};
use crate::state::{
    BulkGet, DeleteState, GetState, SaveState, StateOptions, StatesError, TransactionOperation,
    Value,
};

fn failed(err: StatesError) -> Status {
    status(api_error(err))
}

/// daprd's option strings for the protobuf enums; unspecified is the store default.
fn consistency(value: i32) -> String {
    match state_options::StateConsistency::try_from(value) {
        Ok(state_options::StateConsistency::ConsistencyEventual) => "eventual".to_owned(),
        Ok(state_options::StateConsistency::ConsistencyStrong) => "strong".to_owned(),
        _ => String::new(),
    }
}

fn concurrency(value: i32) -> String {
    match state_options::StateConcurrency::try_from(value) {
        Ok(state_options::StateConcurrency::ConcurrencyFirstWrite) => "first-write".to_owned(),
        Ok(state_options::StateConcurrency::ConcurrencyLastWrite) => "last-write".to_owned(),
        _ => String::new(),
    }
}

fn options(options: Option<PbOptions>) -> StateOptions {
    options.map_or_else(StateOptions::default, |o| StateOptions {
        concurrency: concurrency(o.concurrency),
        consistency: consistency(o.consistency),
    })
}

/// A gRPC item's value is bytes, stored verbatim unless its metadata says it is JSON.
fn save_item(item: StateItem) -> SaveState {
    SaveState {
        key: item.key,
        value: Value::Bytes(item.value),
        etag: item.etag.map(|e| e.value),
        metadata: item.metadata,
        options: options(item.options),
    }
}

pub(super) async fn get(
    api: &ApiState,
    req: Request<GetStateRequest>,
) -> Result<Response<GetStateResponse>, Status> {
    let req = req.into_inner();
    let store = api.states.store(&req.store_name).map_err(failed)?;
    let entry = store
        .get(GetState {
            key: req.key,
            consistency: consistency(req.consistency),
            metadata: req.metadata,
        })
        .await
        .map_err(failed)?;
    // A missing key is OK with empty data and etag, as in daprd.
    let reply = entry.map_or_else(GetStateResponse::default, |e| GetStateResponse {
        data: e.value,
        etag: e.etag.unwrap_or_default(),
        metadata: e.metadata.into_iter().collect(),
    });
    Ok(Response::new(reply))
}

pub(super) async fn bulk_get(
    api: &ApiState,
    req: Request<GetBulkStateRequest>,
) -> Result<Response<GetBulkStateResponse>, Status> {
    let req = req.into_inner();
    let store = api.states.store(&req.store_name).map_err(failed)?;
    let entries = store
        .bulk_get(BulkGet {
            keys: req.keys,
            parallelism: i64::from(req.parallelism),
            metadata: req.metadata,
        })
        .await
        .map_err(failed)?;
    let items = entries
        .into_iter()
        .map(|e| BulkStateItem {
            key: e.key,
            data: e.value.unwrap_or_default(),
            etag: e.etag.unwrap_or_default(),
            error: e.error.unwrap_or_default(),
            metadata: e.metadata.into_iter().collect(),
        })
        .collect();
    Ok(Response::new(GetBulkStateResponse { items }))
}

pub(super) async fn save(api: &ApiState, req: Request<SaveStateRequest>) -> Result<(), Status> {
    let req = req.into_inner();
    let store = api.states.store(&req.store_name).map_err(failed)?;
    let items = req.states.into_iter().map(save_item).collect();
    store.save(items).await.map_err(failed)
}

pub(super) async fn delete(api: &ApiState, req: Request<DeleteStateRequest>) -> Result<(), Status> {
    let req = req.into_inner();
    let store = api.states.store(&req.store_name).map_err(failed)?;
    store
        .delete(DeleteState {
            key: req.key,
            etag: req.etag.map(|e| e.value),
            options: options(req.options),
            metadata: req.metadata,
        })
        .await
        .map_err(failed)
}

/// Deletes the items one after the other, stopping at the first failure, which daprd reports
/// as `ERR_STATE_BULK_DELETE`.
pub(super) async fn bulk_delete(
    api: &ApiState,
    req: Request<DeleteBulkStateRequest>,
) -> Result<(), Status> {
    let req = req.into_inner();
    let store = api.states.store(&req.store_name).map_err(failed)?;
    for item in req.states {
        let result = store
            .delete(DeleteState {
                key: item.key,
                etag: item.etag.map(|e| e.value),
                options: options(item.options),
                metadata: item.metadata,
            })
            .await;
        if let Err(err) = result {
            let mut err: ApiError = api_error(err);
            if err.code == "ERR_STATE_DELETE" {
                err.code = "ERR_STATE_BULK_DELETE";
            }
            return Err(status(err));
        }
    }
    Ok(())
}

pub(super) async fn transaction(
    api: &ApiState,
    req: Request<ExecuteStateTransactionRequest>,
) -> Result<(), Status> {
    let req = req.into_inner();
    let store = api.states.store(&req.store_name).map_err(failed)?;
    store.ensure_transactional().map_err(failed)?;
    let ops = req
        .operations
        .into_iter()
        .map(|op| TransactionOperation {
            operation: op.operation_type,
            request: save_item(op.request.unwrap_or_default()),
        })
        .collect();
    store.transact(ops, req.metadata).await.map_err(failed)
}

pub(super) async fn query(
    api: &ApiState,
    req: Request<QueryStateRequest>,
) -> Result<Response<QueryStateResponse>, Status> {
    let req = req.into_inner();
    let store = api.states.store(&req.store_name).map_err(failed)?;
    let outcome = store
        .query(req.query.as_bytes(), req.metadata)
        .await
        .map_err(failed)?;
    let results = outcome
        .results
        .into_iter()
        .map(|r| QueryStateItem {
            key: r.key,
            data: r.data,
            etag: r.etag.unwrap_or_default(),
            error: r.error.unwrap_or_default(),
        })
        .collect();
    Ok(Response::new(QueryStateResponse {
        results,
        token: outcome.token.unwrap_or_default(),
        metadata: Default::default(),
    }))
}
