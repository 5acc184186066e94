//! API keys: made and revoked by `tracebox keys` (possibly while a server runs on the same data
//! directory), looked up by every authenticated request. These run on a connection of their own,
//! synchronously: a lookup by primary key takes microseconds, and a request must see a revocation
//! the moment it is committed.

use rusqlite::{Connection, OptionalExtension, Row, params};
use tracebox_model::access::{KeyLimits, KeyRecord};

use super::StoreError;
use super::queries::parse_name;

const COLUMNS: &str = "id, name, tenant, role, secret_sha256, created_at_us, revoked_at_us,
     rate_per_sec, max_sandboxes, max_concurrent_runs, upload_quota_bytes";

fn record(row: &Row) -> rusqlite::Result<KeyRecord> {
    let digest: Vec<u8> = row.get(4)?;
    let secret_sha256 = <[u8; 32]>::try_from(digest.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            4,
            rusqlite::types::Type::Blob,
            "a key digest of the wrong size".into(),
        )
    })?;
    let count = |column: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(column)?.map(|n| n.max(0) as u64))
    };
    Ok(KeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        tenant: row.get(2)?,
        role: parse_name(3, &row.get::<_, String>(3)?)?,
        secret_sha256,
        created_at_us: row.get(5)?,
        revoked_at_us: row.get(6)?,
        limits: KeyLimits {
            rate_per_sec: row.get(7)?,
            max_sandboxes: count(8)?,
            max_concurrent_runs: count(9)?,
            upload_quota_bytes: count(10)?,
        },
    })
}

/// Why a key could not be added.
pub(super) fn insert(db: &Connection, key: &KeyRecord) -> Result<bool, StoreError> {
    let as_i64 = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let added = db
        .prepare_cached(
            "INSERT OR IGNORE INTO keys (id, name, tenant, role, secret_sha256, created_at_us, rate_per_sec,
               max_sandboxes, max_concurrent_runs, upload_quota_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            key.id,
            key.name,
            key.tenant,
            key.role.as_str(),
            key.secret_sha256.as_slice(),
            key.created_at_us,
            key.limits.rate_per_sec,
            as_i64(key.limits.max_sandboxes),
            as_i64(key.limits.max_concurrent_runs),
            as_i64(key.limits.upload_quota_bytes),
        ])?;
    Ok(added == 1)
}

pub(super) fn by_id(db: &Connection, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM keys WHERE id = ?1");
    Ok(db.prepare_cached(&sql)?.query_row(params![id], record).optional()?)
}

pub(super) fn all(db: &Connection) -> Result<Vec<KeyRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM keys ORDER BY created_at_us, name");
    let mut query = db.prepare_cached(&sql)?;
    let rows = query.query_map([], record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn any(db: &Connection) -> Result<bool, StoreError> {
    Ok(db.prepare_cached("SELECT EXISTS (SELECT 1 FROM keys)")?.query_row([], |row| row.get(0))?)
}

/// Revoke the key `name`; false when there is no such key not yet revoked.
pub(super) fn revoke(db: &Connection, name: &str, at_us: i64) -> Result<bool, StoreError> {
    let changed = db
        .prepare_cached("UPDATE keys SET revoked_at_us = ?2 WHERE name = ?1 AND revoked_at_us IS NULL")?
        .execute(params![name, at_us])?;
    Ok(changed == 1)
}

pub(super) fn revoke_token(db: &Connection, jti: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
    db.prepare_cached("DELETE FROM revoked_tokens WHERE expires_at <= ?1")?.execute(params![now])?;
    db.prepare_cached("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)")?
        .execute(params![jti, expires_at])?;
    Ok(())
}

pub(super) fn token_revoked(db: &Connection, jti: &str) -> Result<bool, StoreError> {
    Ok(db
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?1)")?
        .query_row(params![jti], |row| row.get(0))?)
}
