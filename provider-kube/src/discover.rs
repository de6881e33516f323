//! `nimbus discover` on a Kubernetes API: what nimbus did not label as its own.

use kube::api::ListParams;
use nimbus_provider_core::{Discovered, ProviderError};

use crate::objects::{self, MANAGED_BY};
use crate::{KubeProvider, api_error};

/// What one API has that nimbus did not label as its own: namespaces (but the system's),
/// Deployments and Services (but the API's own `kubernetes`), one list call each.
pub(crate) async fn on(
    provider: &KubeProvider,
    client: &kube::Client,
    cluster: &str,
) -> Result<Vec<Discovered>, ProviderError> {
    const SYSTEM: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", "default"];
    let mut found = Vec::new();
    for (kind, what) in [
        (objects::NAMESPACE, "Tenant"),
        (objects::DEPLOYMENT, "Workload"),
        (objects::SERVICE, "Workload"),
    ] {
        let listed = provider
            .api(client, kind, None)
            .list(&ListParams::default().labels(&format!("{MANAGED_BY}!=nimbus")))
            .await
            .map_err(|e| api_error(&format!("listing {}", kind.plural), e))?;
        for object in listed.items {
            let name = object.metadata.name.clone().unwrap_or_default();
            let namespace = object.metadata.namespace.clone().unwrap_or_default();
            let (identity, address) = if kind.namespaced {
                if SYSTEM.contains(&namespace.as_str()) {
                    continue;
                }
                (
                    format!("{namespace}/{name}"),
                    format!("Workload/{namespace}/{name}"),
                )
            } else {
                if SYSTEM.contains(&name.as_str()) {
                    continue;
                }
                (name.clone(), format!("Tenant/{name}"))
            };
            found.push(Discovered {
                kind: what.to_owned(),
                identity,
                detail: format!("Kubernetes {} on Cluster/{cluster}", kind.kind),
                name: nimbus_provider_core::label_of(&name),
                address: Some(address),
                spec: None,
                secret: None,
            });
        }
    }
    Ok(found)
}
