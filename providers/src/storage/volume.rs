//! Volumes over SSH (SPEC §11), `btrfs` in this release: a subvolume
//! `POOL/TENANT/NAME` on the host with a qgroup limit of `size` (a new size is a new limit).
//! `pool` is the Volume's pool path (default [`DEFAULT_POOL`]), which must be on btrfs.
//! nimbus marks what it created (`POOL/.nimbus/TENANT/NAME`) and deletes only that; a
//! non-empty volume is deleted only with `--allow-deletes` (the planner's rule, from what is
//! observed here: `empty`). `nfs` Volumes are exports ([`crate::nfs`]); `s3` Volumes are
//! buckets, served by the S3 provider ([`crate::s3`]).

use nimbus_planner::plan::{Action, Change, KindSchema, Observed};
use nimbus_schemas::{Bytes, Kind, VolumeType};
use serde_json::{Value, json};

use crate::quote::shell_quote;
use crate::ssh::SshSession;
use crate::{Applied, ProviderError};

/// Where volumes go when a Volume names no `pool`.
pub const DEFAULT_POOL: &str = nimbus_planner::fields::DEFAULT_BTRFS_POOL;

/// What is compared: the type, the size (the qgroup limit), where it lives.
pub fn kind_schema() -> KindSchema {
    KindSchema {
        compare_fields: Some(
            ["type", "size", "host", "pool", "tenant", "clients"]
                .map(str::to_owned)
                .to_vec(),
        ),
        replace_fields: ["type", "host", "tenant", "pool"]
            .map(str::to_owned)
            .to_vec(),
        ..KindSchema::default_for(Kind::Volume)
    }
}

/// `(tenant, name)` of `Volume/TENANT/NAME`.
fn parts(address: &str) -> Option<(String, String)> {
    let address = address.parse::<nimbus_schemas::Address>().ok()?;
    Some((address.tenant?, address.name)).filter(|_| address.kind == Kind::Volume)
}

fn pool_of(spec: &Value) -> String {
    spec.get("pool")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_POOL)
        .trim_end_matches('/')
        .to_owned()
}

/// The host a Volume lives on: the one it names.
pub fn host_in(spec: &Value) -> Option<&str> {
    spec.get("host").and_then(Value::as_str)
}

fn failed(address: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(format!("{address}: {message}"))
}

/// Observes the Volumes of one host in one command.
pub async fn observe(
    session: &SshSession,
    batch: &[crate::ObserveRequest],
) -> Result<Vec<(String, Observed)>, ProviderError> {
    let mut script = String::new();
    for (i, request) in batch.iter().enumerate() {
        let Some((tenant, name)) = parts(&request.address) else {
            continue;
        };
        let (tenant, name) = (tenant.as_str(), name.as_str());
        let desired = request.desired.clone().unwrap_or(Value::Null);
        if is_nfs(&desired) {
            script.push_str(&crate::nfs::observe_script(
                i,
                &crate::nfs::Paths::new(&desired, tenant, name),
            ));
            continue;
        }
        let pool = pool_of(&desired);
        let path = shell_quote(&format!("{pool}/{tenant}/{name}"));
        let marker = shell_quote(&format!("{pool}/.nimbus/{tenant}/{name}"));
        script.push_str(&format!(
            "if btrfs subvolume show {path} >/dev/null 2>&1; then \
               limit=$(btrfs qgroup show -rf --raw {path} 2>/dev/null | awk 'NR>2 {{print $4; exit}}'); \
               used=$(btrfs qgroup show -rf --raw {path} 2>/dev/null | awk 'NR>2 {{print $2; exit}}'); \
               empty=$( [ -z \"$(ls -A {path})\" ] && echo yes || echo no); \
               owned=$( [ -e {marker} ] && echo yes || echo no); \
               printf 'V\\t{i}\\t%s\\t%s\\t%s\\t%s\\n' \"${{limit:-none}}\" \"${{used:-0}}\" \"$empty\" \"$owned\"; \
             fi; "
        ));
    }
    let output = session.exec(&script, None).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut seen: Vec<(String, Observed)> = batch
        .iter()
        .map(|r| (r.address.clone(), Observed::Absent))
        .collect();
    let mut exports: Vec<(Vec<&str>, Vec<&str>)> = vec![(Vec::new(), Vec::new()); batch.len()];
    for line in text.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(tag @ ("N" | "E")), Some(Ok(i)), Some(rest)) = (
            fields.next(),
            fields.next().map(str::parse::<usize>),
            fields.next(),
        ) else {
            continue;
        };
        if let Some(entry) = exports.get_mut(i) {
            match tag {
                "N" => entry.0 = rest.split('\t').collect(),
                _ => entry.1.push(rest),
            }
        }
    }
    for (i, (header, export)) in exports.iter().enumerate() {
        if !header.is_empty() {
            let desired = batch[i].desired.clone().unwrap_or(Value::Null);
            seen[i].1 = crate::nfs::observed(&desired, header, export);
        }
    }
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let ["V", index, limit, used, empty, owned] = fields.as_slice() else {
            continue;
        };
        let Some(i) = index.parse::<usize>().ok().filter(|i| *i < batch.len()) else {
            continue;
        };
        let mut observed = batch[i].desired.clone().unwrap_or(Value::Null);
        if let Value::Object(map) = &mut observed {
            map.insert(
                "size".into(),
                match limit.parse::<u64>() {
                    Ok(bytes) => json!(Bytes::from_bytes(bytes).to_string()),
                    Err(_) => json!("no limit"),
                },
            );
            map.insert("used".into(), json!(used.parse::<u64>().unwrap_or(0)));
            map.insert("empty".into(), json!(*empty == "yes"));
            map.insert("createdByNimbus".into(), json!(*owned == "yes"));
        }
        seen[i].1 = Observed::Present(observed);
    }
    Ok(seen)
}

/// Creates a Volume, sets its size (the qgroup limit), or deletes what nimbus made.
pub async fn apply(session: &SshSession, change: &Change) -> Result<Applied, ProviderError> {
    let address = &change.address;
    let (tenant, name) = parts(address).ok_or_else(|| failed(address, "not a Volume's address"))?;
    let (tenant, name) = (tenant.as_str(), name.as_str());
    let spec = change
        .after
        .clone()
        .or_else(|| change.before.clone())
        .unwrap_or(Value::Null);
    if change.action == Action::Delete {
        return delete(session, address, &spec, tenant, name).await;
    }
    // A replace (another pool, host or type) removes the old one first, when nimbus made it.
    if change.action == Action::Replace
        && let Some(before) = &change.before
    {
        delete(session, address, before, tenant, name).await?;
    }
    refuse_unsafe(address, &spec)?;
    if is_nfs(&spec) {
        return export(session, address, &spec, tenant, name).await;
    }
    let pool = pool_of(&spec);
    let path = format!("{pool}/{tenant}/{name}");
    let marker = format!("{pool}/.nimbus/{tenant}/{name}");
    create(session, address, &spec, tenant, (&pool, &path, &marker)).await
}

/// The second guard (docs/security.md): a pool that validation would refuse is refused here
/// too, before anything reaches the host. An nfs Volume's clients are checked where they are
/// written ([`crate::nfs::apply_script`]).
fn refuse_unsafe(address: &str, spec: &Value) -> Result<(), ProviderError> {
    let pool = pool_of(spec);
    match nimbus_planner::fields::config_path_problem(&pool) {
        Some(problem) => Err(failed(
            address,
            format!("pool `{}` {problem}", pool.escape_default()),
        )),
        None => Ok(()),
    }
}

fn is_nfs(spec: &Value) -> bool {
    spec.get("type").and_then(Value::as_str) == Some("nfs")
}

/// A Volume's `size` (`1Gi`, or bytes), or the failure that names the instance.
pub(crate) fn size_of(address: &str, spec: &Value) -> Result<Bytes, ProviderError> {
    spec["size"]
        .as_str()
        .map(Bytes::parse)
        .and_then(Result::ok)
        .or_else(|| spec["size"].as_u64().map(Bytes::from_bytes))
        .ok_or_else(|| failed(address, "a size such as 1Gi is needed"))
}

/// Makes (or updates) an nfs Volume's export.
async fn export(
    session: &SshSession,
    address: &str,
    spec: &Value,
    tenant: &str,
    name: &str,
) -> Result<Applied, ProviderError> {
    let size = size_of(address, spec)?;
    let paths = crate::nfs::Paths::new(spec, tenant, name);
    let script = crate::nfs::apply_script(&paths, spec, &size.to_string())
        .map_err(|reason| failed(address, reason))?;
    let output = session.exec(&script, None).await?;
    if output.status != 0 {
        return Err(failed(
            address,
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    Ok(Applied {
        observed: spec.clone(),
        outputs: json!({"path": paths.dir}),
    })
}

/// Deletes what nimbus made of a Volume: the btrfs subvolume, or the nfs export and its
/// directory.
async fn delete(
    session: &SshSession,
    address: &str,
    spec: &Value,
    tenant: &str,
    name: &str,
) -> Result<Applied, ProviderError> {
    let script = if is_nfs(spec) {
        crate::nfs::delete_script(&crate::nfs::Paths::new(spec, tenant, name))
    } else {
        let pool = pool_of(spec);
        format!(
            "set -e; if [ -e {marker} ]; then \
               if btrfs subvolume show {path} >/dev/null 2>&1; then btrfs subvolume delete {path} >/dev/null; fi; \
               rm -f {marker}; \
             fi",
            marker = shell_quote(&format!("{pool}/.nimbus/{tenant}/{name}")),
            path = shell_quote(&format!("{pool}/{tenant}/{name}"))
        )
    };
    let output = session.exec(&script, None).await?;
    if output.status != 0 {
        return Err(failed(
            address,
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    Ok(Applied::default())
}

/// Makes the subvolume (when missing) and sets its limit.
async fn create(
    session: &SshSession,
    address: &str,
    spec: &Value,
    tenant: &str,
    (pool, path, marker): (&str, &str, &str),
) -> Result<Applied, ProviderError> {
    let volume_type: VolumeType = serde_json::from_value(spec["type"].clone())
        .map_err(|e| failed(address, format!("not a volume type: {e}")))?;
    if volume_type != VolumeType::Btrfs {
        return Err(failed(
            address,
            "an s3 Volume is a bucket on the Repository's S3 endpoint, not on a host",
        ));
    }
    let size = size_of(address, spec)?;
    let script = format!(
        "set -e; command -v btrfs >/dev/null || {{ echo 'btrfs-progs is not installed on this host (Debian: apt install btrfs-progs)' >&2; exit 3; }}; \
         fs=$(stat -f -c %T {pool} 2>/dev/null || echo missing); \
         if [ \"$fs\" != btrfs ]; then echo \"the pool path {pool_text} is not on btrfs (it is $fs): mount a btrfs file system there, or give the Volume another pool\" >&2; exit 3; fi; \
         btrfs quota enable {pool} 2>/dev/null || true; \
         mkdir -p {parent} {marker_dir}; \
         if ! btrfs subvolume show {path} >/dev/null 2>&1; then btrfs subvolume create {path} >/dev/null; touch {marker}; fi; \
         btrfs qgroup limit {bytes} {path}",
        pool = shell_quote(pool),
        pool_text = pool.replace('\'', ""),
        parent = shell_quote(&format!("{pool}/{tenant}")),
        marker_dir = shell_quote(&format!("{pool}/.nimbus/{tenant}")),
        path = shell_quote(path),
        marker = shell_quote(marker),
        bytes = size.bytes,
    );
    let output = session.exec(&script, None).await?;
    if output.status != 0 {
        return Err(failed(
            address,
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    Ok(Applied {
        observed: spec.clone(),
        outputs: json!({"path": path}),
    })
}
