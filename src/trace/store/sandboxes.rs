//! The record of each stateful sandbox and of its snapshots: the store, not the process, owns a
//! sandbox, so a restart finds them all again.

use rusqlite::{Connection, OptionalExtension, params};
use tracebox_model::sandbox::{SandboxRecord, SandboxStatus, SnapshotRecord};

use super::StoreError;

pub(super) fn put(db: &Connection, record: &SandboxRecord) -> Result<(), StoreError> {
    let json = serde_json::to_string(record).map_err(|e| StoreError::Commit(e.to_string()))?;
    db.prepare_cached("INSERT OR REPLACE INTO sandboxes (id, status, created_at_us, record) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![record.id, record.status.as_str(), record.created_at_us, json])?;
    Ok(())
}

pub(super) fn get(db: &Connection, id: &str) -> Result<Option<SandboxRecord>, StoreError> {
    let json: Option<String> = db
        .prepare_cached("SELECT record FROM sandboxes WHERE id = ?1")?
        .query_row(params![id], |row| row.get(0))
        .optional()?;
    json.map(|json| decode(&json)).transpose()
}

/// Sandboxes that are not stopped, newest first, optionally of one status.
pub(super) fn list(db: &Connection, status: Option<SandboxStatus>) -> Result<Vec<SandboxRecord>, StoreError> {
    let mut query = db.prepare_cached(
        "SELECT record FROM sandboxes WHERE status != 'stopped' AND (?1 IS NULL OR status = ?1)
         ORDER BY created_at_us DESC",
    )?;
    let rows = query.query_map(params![status.map(SandboxStatus::as_str)], |row| row.get::<_, String>(0))?;
    rows.map(|json| decode(&json?)).collect()
}

pub(super) fn remove(db: &Connection, id: &str) -> Result<(), StoreError> {
    db.prepare_cached("DELETE FROM sandboxes WHERE id = ?1")?.execute(params![id])?;
    Ok(())
}

fn decode(json: &str) -> Result<SandboxRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Commit(format!("a sandbox record cannot be read: {e}")))
}

pub(super) fn put_snapshot(db: &Connection, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT INTO snapshots (id, sandbox_id, label, sha256, bytes, created_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        snapshot.id,
        snapshot.sandbox_id,
        snapshot.label,
        snapshot.sha256,
        snapshot.bytes as i64,
        snapshot.created_at_us
    ])?;
    Ok(())
}

/// A sandbox's snapshots, oldest first.
pub(super) fn snapshots(db: &Connection, sandbox_id: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
    let mut query = db.prepare_cached(
        "SELECT id, sandbox_id, label, sha256, bytes, created_at_us FROM snapshots WHERE sandbox_id = ?1
         ORDER BY created_at_us, id",
    )?;
    let rows = query.query_map(params![sandbox_id], |row| {
        Ok(SnapshotRecord {
            id: row.get(0)?,
            sandbox_id: row.get(1)?,
            label: row.get(2)?,
            sha256: row.get(3)?,
            bytes: row.get::<_, i64>(4)?.max(0) as u64,
            created_at_us: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forget a sandbox's snapshots; the hashes that no other snapshot holds any more, whose
/// files may go.
pub(super) fn remove_snapshots(db: &Connection, sandbox_id: &str) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = snapshots(db, sandbox_id)?.into_iter().map(|s| s.id).collect();
    remove_snapshot_ids(db, &ids)
}

/// Forget these snapshots; the hashes that no other snapshot holds any more.
pub(super) fn remove_snapshot_ids(db: &Connection, ids: &[String]) -> Result<Vec<String>, StoreError> {
    let mut hashes = Vec::new();
    for id in ids {
        let hash: Option<String> = db
            .prepare_cached("DELETE FROM snapshots WHERE id = ?1 RETURNING sha256")?
            .query_row(params![id], |row| row.get(0))
            .optional()?;
        hashes.extend(hash);
    }
    let mut unused = Vec::new();
    for hash in hashes {
        let left: i64 = db
            .prepare_cached("SELECT count(*) FROM snapshots WHERE sha256 = ?1")?
            .query_row(params![hash], |r| r.get(0))?;
        if left == 0 && !unused.contains(&hash) {
            unused.push(hash);
        }
    }
    Ok(unused)
}

/// Bytes of every snapshot kept (counting each stored file once).
pub(super) fn snapshot_bytes(db: &Connection) -> Result<u64, StoreError> {
    let bytes: i64 = db
        .prepare_cached(
            "SELECT coalesce(sum(bytes), 0) FROM (SELECT sha256, max(bytes) AS bytes FROM snapshots GROUP BY sha256)",
        )?
        .query_row([], |row| row.get(0))?;
    Ok(bytes.max(0) as u64)
}
