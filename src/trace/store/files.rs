//! The record of each uploaded file (size, sha256, when, by which trace), kept beside the
//! traces so `GET /files` can list hashes without reading every file.

use rusqlite::{Connection, params};

use super::StoreError;

/// What is recorded about one stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Whose it is: a tenant, or "" for the files of an open server.
    pub tenant: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_at_us: i64,
    /// The upload trace that stored it.
    pub trace_id: Option<String>,
}

pub(super) fn put(db: &Connection, record: &FileRecord) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT OR REPLACE INTO files (tenant, name, size, sha256, uploaded_at_us, trace_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        record.tenant,
        record.name,
        record.size as i64,
        record.sha256,
        record.uploaded_at_us,
        record.trace_id
    ])?;
    Ok(())
}

pub(super) fn remove(db: &Connection, tenant: &str, name: &str) -> Result<(), StoreError> {
    db.prepare_cached("DELETE FROM files WHERE tenant = ?1 AND name = ?2")?.execute(params![tenant, name])?;
    Ok(())
}

pub(super) fn get(db: &Connection, tenant: &str, name: &str) -> Result<Option<FileRecord>, StoreError> {
    Ok(select(db, "WHERE tenant = ?1 AND name = ?2", params![tenant, name])?.pop())
}

pub(super) fn all(db: &Connection, tenant: &str) -> Result<Vec<FileRecord>, StoreError> {
    select(db, "WHERE tenant = ?1", params![tenant])
}

fn select(db: &Connection, condition: &str, values: impl rusqlite::Params) -> Result<Vec<FileRecord>, StoreError> {
    let sql =
        format!("SELECT tenant, name, size, sha256, uploaded_at_us, trace_id FROM files {condition} ORDER BY name");
    let mut query = db.prepare_cached(&sql)?;
    let rows = query.query_map(values, |row| {
        Ok(FileRecord {
            tenant: row.get(0)?,
            name: row.get(1)?,
            size: row.get::<_, i64>(2)?.max(0) as u64,
            sha256: row.get(3)?,
            uploaded_at_us: row.get(4)?,
            trace_id: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
