//! Unit tests of the state store.

use super::*;

#[test]
fn the_state_folder_and_database_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let folder = dir.path().join(".nimbus");
    // A folder and database left readable by an older nimbus under umask 022.
    std::fs::create_dir(&folder).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = folder.join("state.db");
    std::fs::write(&path, b"").unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = StateStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&path), 0o600);
    // A new one, in a folder made on the way.
    let fresh = dir.path().join("deep/.nimbus/state.db");
    drop(StateStore::open(&fresh).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(mode(fresh.parent().unwrap_or(dir.path())), 0o700);
    assert_eq!(mode(&fresh), 0o600);
}

#[test]
fn a_state_of_the_previous_schema_is_upgraded_and_keeps_its_instances() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("state.db");
    {
        // Written by the nimbus before `tainted`: the first two migrations, one instance.
        let connection = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        for (i, migration) in MIGRATIONS[..2].iter().enumerate() {
            connection
                .execute_batch(&format!(
                    "BEGIN; {migration}; PRAGMA user_version = {}; COMMIT;",
                    i + 1
                ))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        connection
            .execute(
                "INSERT INTO resources (address, kind, provider, applied, owned, protected, keep_on_removal, updated_at)
                 VALUES ('Host/a', 'Host', 'ssh', '{}', 1, 0, 0, 0)",
                [],
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = StateStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let records = store.records().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].address, "Host/a");
    assert_eq!(records[0].tainted, None);
}

#[test]
fn times_render_as_utc() {
    assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_time(1_795_312_800), "2026-11-22T02:00:00Z");
    assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
}
