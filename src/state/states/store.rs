//! [`StoreRef`]: one resolved store and the calls on it. Each call checks the request in
//! daprd's order, turns app keys into stored keys, parses options, calls the store once and
//! records `dapr_component_state_*`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Instant;

use futures_util::StreamExt as _;

use super::error::{has, MetricOp};
use super::types::{
    BulkEntry, BulkGet, DeleteState, GetState, QueryOutcome, SaveState, StateEntry, StateOptions,
    TransactionOperation,
};
use super::{Entry, States, StatesError};
use crate::state::query::Query;
use crate::state::{
    options, prefix, DeleteRequest, Feature, GetRequest, Item, SetRequest, StateError, StateStore,
};

/// A store found by name; borrow it for the duration of one API call.
pub struct StoreRef<'a> {
    states: &'a States,
    name: &'a str,
    entry: &'a Entry,
}

impl<'a> StoreRef<'a> {
    pub(super) fn new(states: &'a States, name: &'a str, entry: &'a Entry) -> Self {
        Self {
            states,
            name,
            entry,
        }
    }

    pub fn name(&self) -> &str {
        self.name
    }

    pub fn features(&self) -> &'static [Feature] {
        self.entry.store.features()
    }

    fn store(&self) -> &'a dyn StateStore {
        &*self.entry.store
    }

    /// Runs one store call and records its count and latency.
    async fn timed<T>(
        &self,
        op: MetricOp,
        call: impl Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        let started = Instant::now();
        let result = call.await;
        self.record(op, result.is_ok(), started);
        result
    }

    fn record(&self, op: MetricOp, success: bool, started: Instant) {
        self.states
            .metrics
            .state(&self.entry.label, op.as_str(), success, started.elapsed());
    }

    fn stored_key(&self, key: &str) -> Result<String, StatesError> {
        self.entry
            .prefix
            .apply(key)
            .map_err(|_| StatesError::IllegalKey {
                store: self.name.to_owned(),
                key: key.to_owned(),
            })
    }

    /// `GET /v1.0/state/{store}/{key}`: `None` when the key is absent.
    pub async fn get(&self, req: GetState) -> Result<Option<StateEntry>, StatesError> {
        let stored = self.stored_key(&req.key)?;
        let request = GetRequest {
            key: stored,
            consistency: options::read_consistency(&req.consistency),
            metadata: req.metadata,
        };
        let item = self
            .timed(MetricOp::Get, self.store().get(request))
            .await
            .map_err(|source| StatesError::Get {
                store: self.name.to_owned(),
                key: req.key,
                source,
            })?;
        Ok(item.map(|item| StateEntry {
            metadata: response_metadata(&item),
            value: item.value,
            etag: item.etag,
        }))
    }

    /// Saves every item. Items are checked in order (empty key, illegal key) before any is
    /// written; then all are written, each on its own as daprd's bulk set does, and the first
    /// etag failure (else the first failure) is reported.
    pub async fn save(&self, items: Vec<SaveState>) -> Result<(), StatesError> {
        let mut keys = Vec::with_capacity(items.len());
        for item in &items {
            if item.key.is_empty() {
                return Err(StatesError::EmptyKey);
            }
            keys.push(self.stored_key(&item.key)?);
        }
        let requests = items
            .into_iter()
            .zip(keys)
            .map(|(item, key)| self.set_request(item, key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| self.save_error(source))?;
        let store = self.store();
        let mut requests = requests.into_iter();
        let result = match (requests.next(), requests.len()) {
            (None, _) => return Ok(()),
            (Some(only), 0) => self.timed(MetricOp::Set, store.set(only)).await,
            (Some(first), _) => {
                let all = std::iter::once(first).chain(requests).map(|r| store.set(r));
                let bulk = async { first_failure(futures_util::future::join_all(all).await) };
                self.timed(MetricOp::Set, bulk).await
            }
        };
        result.map_err(|source| self.save_error(source))
    }

    fn save_error(&self, source: StateError) -> StatesError {
        StatesError::Save {
            store: self.name.to_owned(),
            source,
        }
    }

    /// Builds the store request for one item under its stored key: options, TTL (item
    /// metadata, else the component default), encoded value.
    fn set_request(&self, item: SaveState, key: String) -> Result<SetRequest, StateError> {
        let ttl = options::ttl(item.metadata.get(options::TTL_KEY).map(String::as_str))?
            .or(self.entry.default_ttl);
        Ok(SetRequest {
            key,
            value: item.value.encode(&item.metadata)?,
            etag: item.etag.filter(|e| !e.is_empty()),
            concurrency: options::concurrency(&item.options.concurrency)?,
            consistency: options::consistency(&item.options.consistency)?,
            ttl,
            metadata: item.metadata,
        })
    }

    /// Builds the store request for one delete under its stored key.
    fn delete_request(
        key: String,
        etag: Option<String>,
        options: &StateOptions,
        metadata: HashMap<String, String>,
    ) -> Result<DeleteRequest, StateError> {
        Ok(DeleteRequest {
            key,
            etag: etag.filter(|e| !e.is_empty()),
            concurrency: options::concurrency(&options.concurrency)?,
            consistency: options::consistency(&options.consistency)?,
            metadata,
        })
    }

    /// `DELETE /v1.0/state/{store}/{key}`.
    pub async fn delete(&self, req: DeleteState) -> Result<(), StatesError> {
        let stored = self.stored_key(&req.key)?;
        let key = req.key.clone();
        let delete_error = |source| StatesError::Delete {
            store: self.name.to_owned(),
            key: key.clone(),
            source,
        };
        let request = Self::delete_request(stored, req.etag, &req.options, req.metadata)
            .map_err(delete_error)?;
        self.timed(MetricOp::Delete, self.store().delete(request))
            .await
            .map_err(delete_error)
    }

    /// Reads several keys, at most `parallelism` at once, answering in key order. A key's own
    /// failure is reported on that key; the call fails only for an illegal key.
    pub async fn bulk_get(&self, req: BulkGet) -> Result<Vec<BulkEntry>, StatesError> {
        if req.keys.is_empty() {
            return Ok(Vec::new());
        }
        let stored = req
            .keys
            .iter()
            .map(|k| self.stored_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let parallelism = usize::try_from(req.parallelism)
            .ok()
            .filter(|p| *p > 0)
            .unwrap_or(stored.len());
        let store = self.store();
        let metadata = req.metadata;
        let reads = futures_util::stream::iter(stored.into_iter().map(|key| {
            store.get(GetRequest {
                key,
                consistency: Default::default(),
                metadata: metadata.clone(),
            })
        }))
        .buffered(parallelism)
        .collect::<Vec<_>>();
        // Each key's failure is its own; the bulk read as a whole succeeds.
        let started = Instant::now();
        let results = reads.await;
        self.record(MetricOp::BulkGet, true, started);
        Ok(req
            .keys
            .into_iter()
            .zip(results)
            .map(|(key, result)| bulk_entry(key, result))
            .collect())
    }

    /// Fails unless the store is transactional (daprd checks this before reading the body).
    pub fn ensure_transactional(&self) -> Result<(), StatesError> {
        if has(self.store(), Feature::Transactional) {
            Ok(())
        } else {
            Err(StatesError::TransactionsNotSupported {
                store: self.name.to_owned(),
            })
        }
    }

    /// Applies every operation atomically. Checks run in daprd's order: transactional store,
    /// then per operation its key and its kind, then the store's size limit.
    pub async fn transact(
        &self,
        ops: Vec<TransactionOperation>,
        metadata: HashMap<String, String>,
    ) -> Result<(), StatesError> {
        self.ensure_transactional()?;
        if ops.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(ops.len());
        for op in &ops {
            keys.push(self.stored_key(&op.request.key)?);
            if !matches!(op.operation.as_str(), "upsert" | "delete") {
                return Err(StatesError::UnsupportedOperation(op.operation.clone()));
            }
        }
        if let Some(max) = self.store().max_transaction_ops().filter(|m| *m > 0) {
            if ops.len() > max {
                return Err(StatesError::TooManyOperations {
                    store: self.name.to_owned(),
                    count: ops.len(),
                    max,
                });
            }
        }
        let tx_error = |source| StatesError::Transaction {
            store: self.name.to_owned(),
            source,
        };
        let requests = ops
            .into_iter()
            .zip(keys)
            .map(|(op, key)| match op.operation.as_str() {
                "delete" => {
                    let r = op.request;
                    Self::delete_request(key, r.etag, &r.options, r.metadata)
                        .map(crate::state::Operation::Delete)
                }
                _ => self
                    .set_request(op.request, key)
                    .map(crate::state::Operation::Upsert),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(tx_error)?;
        self.timed(
            MetricOp::Transaction,
            self.store().transact(requests, metadata),
        )
        .await
        .map_err(tx_error)
    }

    /// The query API over `query_json` (daprd's query language), keys answered without prefix.
    pub async fn query(
        &self,
        query_json: &[u8],
        metadata: HashMap<String, String>,
    ) -> Result<QueryOutcome, StatesError> {
        if !has(self.store(), Feature::Query) {
            return Err(StatesError::QueryNotSupported {
                store: self.name.to_owned(),
            });
        }
        let failed = |detail: String| StatesError::QueryFailed {
            store: self.name.to_owned(),
            detail,
        };
        let query: Query = serde_json::from_slice(query_json)
            .map_err(|e| failed(format!("failed to parse JSON query body: {e}")))?;
        // daprd parses the filter while decoding the body; a bad one is a parse failure.
        query
            .parsed_filter()
            .map_err(|e| failed(format!("failed to parse JSON query body: {e}")))?;
        let response = self
            .timed(MetricOp::Query, self.store().query(query, metadata))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let results = response
            .results
            .into_iter()
            .map(|mut item| {
                let app_key = prefix::strip(&item.key);
                if app_key.len() != item.key.len() {
                    item.key = app_key.to_owned();
                }
                item
            })
            .collect();
        Ok(QueryOutcome {
            results,
            token: response.token,
        })
    }
}

fn bulk_entry(key: String, result: Result<Option<Item>, StateError>) -> BulkEntry {
    match result {
        Ok(Some(item)) => BulkEntry {
            key,
            metadata: response_metadata(&item),
            value: Some(item.value),
            etag: item.etag,
            error: None,
        },
        Ok(None) => BulkEntry {
            key,
            value: None,
            etag: None,
            metadata: BTreeMap::new(),
            error: None,
        },
        Err(e) => BulkEntry {
            key,
            value: None,
            etag: None,
            metadata: BTreeMap::new(),
            error: Some(e.to_string()),
        },
    }
}

fn response_metadata(item: &Item) -> BTreeMap<String, String> {
    item.expires
        .map(|at| {
            BTreeMap::from([(
                options::TTL_EXPIRE_TIME_KEY.to_owned(),
                options::expire_time(at),
            )])
        })
        .unwrap_or_default()
}

/// The error a bulk write reports: an etag failure first, since it decides the status code.
fn first_failure(results: Vec<Result<(), StateError>>) -> Result<(), StateError> {
    let mut first = None;
    for err in results.into_iter().filter_map(Result::err) {
        if matches!(
            err,
            StateError::EtagMismatch(_) | StateError::EtagInvalid(_)
        ) {
            return Err(err);
        }
        first.get_or_insert(err);
    }
    first.map_or(Ok(()), Err)
}
