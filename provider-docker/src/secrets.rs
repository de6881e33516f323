//! Secrets a Workload's env refers to, as Docker secrets: never a plain value in the service
//! spec. Each is created under a content-derived name (`<service>_<KEY>_<8 hex of its keyed
//! fingerprint>`), mounted at `/run/secrets/<KEY>`, and the env says where:
//! `<KEY>_FILE=/run/secrets/<KEY>`. A new value is a new secret: the service is updated to it
//! and the old one removed.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{SecretSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets};
use bollard::query_parameters::ListSecretsOptionsBuilder;
use nimbus_providers::ProviderError;
use serde_json::Value;

use crate::engine::failed;
use crate::labels::{ADDRESS_LABEL, MANAGED_LABEL};

/// The label that records which value a Docker secret holds: the keyed fingerprint, as state
/// records it (never the value, nor a plain hash of it).
pub const FINGERPRINT_LABEL: &str = "dev.nimbus.fingerprint";

/// A Docker secret nimbus made.
#[derive(Clone, Debug)]
pub struct Made {
    pub id: String,
    pub fingerprint: String,
}

/// One env secret of a Workload.
#[derive(Clone, Debug)]
pub struct EnvSecret {
    pub key: String,
    pub reference: String,
    pub fingerprint: String,
    /// The value, when the executor delivered it (apply only).
    pub value: Option<String>,
}

impl EnvSecret {
    pub fn docker_name(&self, service: &str) -> String {
        let digest: String = self
            .fingerprint
            .trim_start_matches("hmac-sha256:")
            .chars()
            .take(8)
            .collect();
        format!("{service}_{}_{digest}", self.key)
    }

    pub fn path(&self) -> String {
        format!("/run/secrets/{}", self.key)
    }
}

/// Takes the secrets out of a Workload's desired spec (leaving `{secret: NAME}`, which the
/// schema types read), in key order.
pub fn take(spec: &mut Value) -> Vec<EnvSecret> {
    let mut out = Vec::new();
    let Some(Value::Object(env)) = spec.get_mut("env") else {
        return out;
    };
    for (key, entry) in env.iter_mut() {
        let Value::Object(map) = entry else { continue };
        let Some(reference) = map.get("secret").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        out.push(EnvSecret {
            key: key.clone(),
            reference: reference.clone(),
            fingerprint: map
                .get("fingerprint")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            value: map.get("value").and_then(Value::as_str).map(str::to_owned),
        });
        *entry = serde_json::json!({ "secret": reference });
    }
    out
}

/// The service's references to its secrets.
pub fn references(
    service: &str,
    secrets: &[EnvSecret],
    ids: &HashMap<String, String>,
) -> Vec<TaskSpecContainerSpecSecrets> {
    secrets
        .iter()
        .map(|s| {
            let name = s.docker_name(service);
            TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(s.key.clone()),
                    uid: Some("0".to_owned()),
                    gid: Some("0".to_owned()),
                    mode: Some(0o444),
                }),
                secret_id: ids.get(&name).cloned(),
                secret_name: Some(name),
            }
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The secrets nimbus made for `address`, by name.
pub async fn existing(
    docker: &Docker,
    manager: &str,
    address: &str,
) -> Result<HashMap<String, Made>, ProviderError> {
    let label = format!("{ADDRESS_LABEL}={address}");
    let listed = docker
        .list_secrets(Some(
            ListSecretsOptionsBuilder::new()
                .filters(&HashMap::from([("label", vec![label.as_str()])]))
                .build(),
        ))
        .await
        .map_err(|e| failed(manager, "cannot list secrets", &e))?;
    Ok(listed
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let fingerprint = spec
                .labels
                .as_ref()
                .and_then(|l| l.get(FINGERPRINT_LABEL).cloned())
                .unwrap_or_default();
            Some((
                spec.name?,
                Made {
                    id: s.id?,
                    fingerprint,
                },
            ))
        })
        .collect())
}

/// Creates the secrets that do not exist yet; returns every one's id by name.
pub async fn ensure(
    docker: &Docker,
    manager: &str,
    address: &str,
    service: &str,
    secrets: &[EnvSecret],
) -> Result<HashMap<String, String>, ProviderError> {
    let mut ids: HashMap<String, String> = existing(docker, manager, address)
        .await?
        .into_iter()
        .map(|(name, made)| (name, made.id))
        .collect();
    for secret in secrets {
        let name = secret.docker_name(service);
        if ids.contains_key(&name) {
            continue;
        }
        let value = secret.value.as_deref().ok_or_else(|| {
            ProviderError::Bug(format!(
                "{address}: the value of secret `{}` was not delivered",
                secret.reference
            ))
        })?;
        let created = docker
            .create_secret(SecretSpec {
                name: Some(name.clone()),
                labels: Some(HashMap::from([
                    (ADDRESS_LABEL.to_owned(), address.to_owned()),
                    (MANAGED_LABEL.to_owned(), "nimbus".to_owned()),
                    (FINGERPRINT_LABEL.to_owned(), secret.fingerprint.clone()),
                ])),
                data: Some(base64(value.as_bytes())),
                ..SecretSpec::default()
            })
            .await
            .map_err(|e| failed(manager, &format!("cannot create Docker secret {name}"), &e))?;
        ids.insert(name, created.id);
    }
    Ok(ids)
}

/// Removes the secrets of `address` that `keep` does not name (rotated away, or all of them
/// once the service is gone).
pub async fn prune(
    docker: &Docker,
    manager: &str,
    address: &str,
    keep: &[String],
) -> Result<(), ProviderError> {
    for (name, made) in existing(docker, manager, address).await? {
        if !keep.contains(&name) {
            docker
                .delete_secret(&made.id)
                .await
                .map_err(|e| failed(manager, &format!("cannot remove Docker secret {name}"), &e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_as_rfc_4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
