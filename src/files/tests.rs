//! Uploads against a real directory and a real store: names, limits, the quota, partial files.

use super::*;

const MIB: u64 = 1024 * 1024;

/// The files of a data directory `dir` with the shipped defaults, spelled out (the tests that
/// need a limit of their own set it).
pub(super) fn settings_in(dir: &Path) -> FilesSettings {
    FilesSettings {
        dir: dir.join("uploads"),
        upload_max_file_bytes: 100 * MIB,
        upload_max_request_bytes: 256 * MIB,
        upload_max_total_bytes: 4096 * MIB,
        artifacts: ArtifactLimits {
            max_files: 100,
            max_bytes: 64 * MIB,
            max_total_bytes: 4096 * MIB,
            retention: Some(std::time::Duration::from_secs(168 * 3600)),
        },
    }
}

fn files(dir: &Path, max_file: u64, max_request: u64) -> (Files, TraceStore) {
    files_within(dir, max_file, max_request, settings_in(dir).upload_max_total_bytes)
}

fn files_within(dir: &Path, max_file: u64, max_request: u64, max_total: u64) -> (Files, TraceStore) {
    let store = TraceStore::open(&dir.join("traces")).unwrap();
    let settings = FilesSettings {
        upload_max_file_bytes: max_file,
        upload_max_request_bytes: max_request,
        upload_max_total_bytes: max_total,
        ..settings_in(dir)
    };
    (Files::new(settings, store.clone(), "boot-1"), store)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

async fn upload(files: &Files, parts: &[(&str, &[u8])], overwrite: bool) -> Result<Vec<StoredFile>, FileError> {
    let mut upload = files.upload(None, None);
    for (name, bytes) in parts {
        upload.begin_file(FileName::parse(name).unwrap()).await?;
        upload.write(bytes).await?;
    }
    upload.commit(overwrite, TraceId::new()).await
}

#[tokio::test]
async fn a_taken_name_is_numbered_unless_overwrite_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (files, store) = files(dir.path(), 100, 100);
    let first = upload(&files, &[("a.txt", b"one"), ("a.txt", b"two")], false).await.unwrap();
    assert_eq!((first[0].name.as_str(), first[0].requested_name.as_deref()), ("a.txt", None));
    assert_eq!((first[1].name.as_str(), first[1].requested_name.as_deref()), ("a-1.txt", Some("a.txt")));
    let replaced = upload(&files, &[("a.txt", b"three")], true).await.unwrap();
    assert_eq!(replaced[0].name, "a.txt");
    assert_eq!(std::fs::read(files.dir().join("a.txt")).unwrap(), b"three");
    assert_eq!(listing(files.dir()), ["a-1.txt", "a.txt"]);
    let listed = files.list(None).await.unwrap();
    assert_eq!(listed[1].sha256.as_deref(), Some(replaced[0].sha256.as_str()));
    store.close();
}

#[tokio::test]
async fn a_refused_upload_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (files, store) = files(dir.path(), 10, 15);
    let error = upload(&files, &[("a.txt", b"12345678901")], false).await.unwrap_err();
    assert!(matches!(error, FileError::FileTooLarge { limit: 10, .. }), "{error}");
    let error = upload(&files, &[("a.txt", b"1234567890"), ("b.txt", b"123456")], false).await.unwrap_err();
    assert!(matches!(error, FileError::UploadTooLarge { limit: 15 }), "{error}");
    assert!(listing(files.dir()).is_empty(), "{:?}", listing(files.dir()));
    upload(&files, &[("a.txt", b"1234567890"), ("b.txt", b"12345")], false).await.unwrap();
    assert_eq!(listing(files.dir()), ["a.txt", "b.txt"]);
    store.close();
}

#[tokio::test]
async fn stale_partials_are_swept_and_never_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (files, store) = files(dir.path(), 10, 10);
    std::fs::create_dir_all(files.dir()).unwrap();
    std::fs::write(files.dir().join(".partial-dead"), b"x").unwrap();
    std::fs::write(files.dir().join("by-hand.txt"), b"xy").unwrap();
    let listed = files.list(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].size, &listed[0].sha256), ("by-hand.txt", 2, &None));
    assert_eq!(files.prepare().unwrap(), 1);
    assert_eq!(listing(files.dir()), ["by-hand.txt"]);
    store.close();
}

#[tokio::test]
async fn uploads_fill_the_quota_exactly_and_not_a_byte_more_and_deleting_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let (files, store) = files_within(dir.path(), 100, 100, 20);
    std::fs::create_dir_all(files.dir()).unwrap();
    std::fs::write(files.dir().join("by-hand.txt"), b"12345").unwrap();
    files.prepare().unwrap();
    assert_eq!(files.upload_usage(), 5, "what was there at start counts");

    let error = upload(&files, &[("a.txt", b"1234567890"), ("b.txt", b"123456")], false).await.unwrap_err();
    assert!(matches!(error, FileError::QuotaExceeded { limit: 20, taken: 5 }), "{error}");
    assert_eq!(listing(files.dir()), ["by-hand.txt"], "neither file nor a partial is kept");
    assert_eq!(files.upload_usage(), 5, "the refused upload's bytes are given back");

    upload(&files, &[("a.txt", b"1234567890"), ("b.txt", b"12345")], false).await.unwrap();
    assert_eq!(files.upload_usage(), 20, "exactly at the quota");
    let error = upload(&files, &[("c.txt", b"1")], false).await.unwrap_err();
    assert!(matches!(error, FileError::QuotaExceeded { .. }), "one byte over: {error}");

    // Replacing a file frees what it held once the new one is in, so it needs room for both.
    assert!(upload(&files, &[("a.txt", b"123")], true).await.is_err());
    files.delete(&FileName::parse("b.txt").unwrap(), None).await.unwrap();
    assert_eq!(files.upload_usage(), 15);
    upload(&files, &[("a.txt", b"123")], true).await.unwrap();
    assert_eq!(files.upload_usage(), 8, "the replaced file's 10 bytes are free");
    assert_eq!(files.prepare().map(|_| files.upload_usage()).unwrap(), 8, "a restart counts the same");
    store.close();
}

#[tokio::test]
async fn uploads_received_at_once_cannot_pass_the_quota_together() {
    let dir = tempfile::tempdir().unwrap();
    let (files, store) = files_within(dir.path(), 100, 100, 10);
    let (mut first, mut second) = (files.upload(None, None), files.upload(None, None));
    first.begin_file(FileName::parse("a").unwrap()).await.unwrap();
    second.begin_file(FileName::parse("b").unwrap()).await.unwrap();
    first.write(b"123456").await.unwrap();
    let error = second.write(b"123456").await.unwrap_err();
    assert!(matches!(error, FileError::QuotaExceeded { limit: 10, taken: 6 }), "{error}");
    drop(first);
    assert_eq!(files.upload_usage(), 0, "a dropped upload gives its bytes back");
    second.write(b"123456").await.unwrap();
    store.close();
}
