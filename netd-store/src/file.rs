//! Embedded single-machine backend. (Being implemented: see the contract in lib.rs.)

use std::time::Duration;

use crate::{KeyValue, LeaseId, Listing, Result, StoreError, WatchEvent};

fn todo<T>() -> Result<T> {
    Err(StoreError::Other("file backend not implemented yet".into()))
}

pub struct FileStore {}

impl FileStore {
    pub fn open(_dir: &std::path::Path) -> Result<Self> {
        todo()
    }
    pub async fn get(&self, _key: &str) -> Result<Option<KeyValue>> {
        todo()
    }
    pub async fn list(&self, _prefix: &str) -> Result<Listing> {
        todo()
    }
    pub async fn create_all(&self, _kvs: &[(String, Vec<u8>)]) -> Result<bool> {
        todo()
    }
    pub async fn put(&self, _key: &str, _value: &[u8], _lease: Option<LeaseId>) -> Result<i64> {
        todo()
    }
    pub async fn delete_all(&self, _keys: &[String]) -> Result<usize> {
        todo()
    }
    pub async fn grant_lease(&self, _ttl: Duration) -> Result<LeaseId> {
        todo()
    }
    pub async fn keep_alive(&self, _lease: LeaseId) -> Result<()> {
        todo()
    }
    pub async fn revoke(&self, _lease: LeaseId) -> Result<()> {
        todo()
    }
    pub fn watch(&self, _prefix: &str, _from_revision: i64) -> Result<FileWatch> {
        todo()
    }
}

pub struct FileWatch {}

impl FileWatch {
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        todo()
    }
}
