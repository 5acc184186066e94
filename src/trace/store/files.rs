//! The record of each uploaded file (size, sha256, when, by which trace), kept beside the
//! traces so `GET /files` can list hashes without reading every file.

use rusqlite::{Connection, params};

use super::StoreError;

/// What is recorded about one stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_at_us: i64,
    /// The upload trace that stored it.
    pub trace_id: Option<String>,
}

pub(super) fn put(db: &Connection, record: &FileRecord) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT OR REPLACE INTO files (name, size, sha256, uploaded_at_us, trace_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![record.name, record.size as i64, record.sha256, record.uploaded_at_us, record.trace_id])?;
    Ok(())
}

pub(super) fn remove(db: &Connection, name: &str) -> Result<(), StoreError> {
    db.prepare_cached("DELETE FROM files WHERE name = ?1")?.execute(params![name])?;
    Ok(())
}

pub(super) fn get(db: &Connection, name: &str) -> Result<Option<FileRecord>, StoreError> {
    Ok(select(db, "WHERE name = ?1", params![name])?.pop())
}

pub(super) fn all(db: &Connection) -> Result<Vec<FileRecord>, StoreError> {
    select(db, "", params![])
}

fn select(db: &Connection, condition: &str, values: impl rusqlite::Params) -> Result<Vec<FileRecord>, StoreError> {
    let sql = format!("SELECT name, size, sha256, uploaded_at_us, trace_id FROM files {condition} ORDER BY name");
    let mut query = db.prepare_cached(&sql)?;
    let rows = query.query_map(values, |row| {
        Ok(FileRecord {
            name: row.get(0)?,
            size: row.get::<_, i64>(1)?.max(0) as u64,
            sha256: row.get(2)?,
            uploaded_at_us: row.get(3)?,
            trace_id: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
