//! The secrets of a run: decrypted once, fingerprints for plans, values for providers.

use super::load::Loaded;
use super::lock::open_state;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use miette::Result;
use nimbus_planner::plan::Observed;
use nimbus_schemas::Spec;
use sha2::{Digest, Sha256};

/// The secrets of a run: every reference the repository makes, decrypted once; what plans
/// see of them (keyed fingerprints) and what providers are given (values, in memory).
#[derive(Default)]
pub struct RunSecrets {
    pub fingerprints: HashMap<String, Result<String, String>>,
    pub values: Arc<crate::executor::SecretValues>,
}

/// Decrypts every secret the repository refers to, with the identity from `--identity`,
/// `NIMBUS_AGE_IDENTITY` or the Repository's `secrets.identityFile`. A secret that cannot be
/// decrypted is an error only for the instances that use it; without references, nothing is
/// read at all.
pub fn resolve_secrets(loaded: &Loaded, identity: Option<&Path>) -> Result<RunSecrets> {
    if secret_references(loaded).is_empty() {
        return Ok(RunSecrets::default());
    }
    let key = open_state(&loaded.state_location()?)?.secret_key()?;
    resolve_secrets_with_key(loaded, identity, &key)
}

/// Every secret reference the repository makes, sorted, once each.
fn secret_references(loaded: &Loaded) -> Vec<String> {
    let mut references: Vec<String> = loaded
        .checked
        .model
        .documents
        .iter()
        .flat_map(|d| {
            nimbus_planner::plan::secret_references(
                d.resource.kind,
                &nimbus_planner::plan::desired_spec(&d.resource.spec),
            )
        })
        .map(|(_, reference)| reference)
        .collect();
    references.sort();
    references.dedup();
    references
}

/// As [`resolve_secrets`], with the fingerprints keyed by `key` (a preview makes its own, so
/// that it writes no state).
pub fn resolve_secrets_with_key(
    loaded: &Loaded,
    identity: Option<&Path>,
    key: &[u8],
) -> Result<RunSecrets> {
    let references = secret_references(loaded);
    if references.is_empty() {
        return Ok(RunSecrets::default());
    }
    let identity = crate::secrets::identity_path(
        identity,
        &loaded.root,
        loaded
            .repository()
            .and_then(|r| r.secrets.identity_file.as_deref()),
    );
    let mut secrets =
        crate::secrets::Secrets::new(Box::new(|path| loaded.read_file(path)), identity);
    let mut fingerprints = HashMap::new();
    let mut values = HashMap::new();
    for reference in references {
        match secrets.value(&reference) {
            Ok(value) => {
                fingerprints.insert(
                    reference.clone(),
                    Ok(crate::secrets::fingerprint(key, value.bytes())),
                );
                values.insert(
                    reference,
                    Ok(crate::secrets::Plaintext::new(value.bytes().to_vec())),
                );
            }
            Err(e) => {
                tracing::warn!(secret = %reference, "a secret cannot be decrypted");
                fingerprints.insert(reference.clone(), Err(e.clone()));
                values.insert(reference, Err(e));
            }
        }
    }
    Ok(RunSecrets {
        fingerprints,
        values: Arc::new(values),
    })
}

/// What the host shows of a File whose content is a secret, as its fingerprint: the host's
/// SHA-256 is compared with the value's, in memory, and neither goes further.
pub fn observed_secret_files(
    loaded: &Loaded,
    secrets: &RunSecrets,
    observed: &mut HashMap<String, Observed>,
) {
    for instance in &loaded.graph.instances {
        let Spec::File(file) = &loaded.checked.model.documents[instance.document]
            .resource
            .spec
        else {
            continue;
        };
        let Some(reference) = &file.secret else {
            continue;
        };
        let Some(Observed::Present(value)) = observed.get_mut(&instance.address) else {
            continue;
        };
        let Some(host_digest) = value["content"]["sha256"].as_str() else {
            continue;
        };
        let fingerprint = match (
            secrets.values.get(&reference.0),
            secrets.fingerprints.get(&reference.0),
        ) {
            (Some(Ok(plaintext)), Some(Ok(fingerprint))) => {
                let digest: String = Sha256::digest(plaintext.bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if digest == host_digest {
                    fingerprint.clone()
                } else {
                    "(another value)".to_owned()
                }
            }
            _ => nimbus_planner::plan::UNRESOLVED_SECRET.to_owned(),
        };
        value["content"] = serde_json::json!({ "fingerprint": fingerprint });
    }
}
