//! Observing Tenants and Workloads on one API: each kind listed once, across namespaces.

use nimbus_planner::plan::Observed;
use nimbus_provider_core::{ObserveRequest, ProviderError};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

use crate::{ByName, KubeProvider, objects, parts};

impl KubeProvider {
    /// Tenants and Workloads of one API: each kind listed once, across namespaces.
    pub(crate) async fn observe_on(
        &self,
        client: &kube::Client,
        batch: &[&ObserveRequest],
        cluster: Option<&str>,
    ) -> Result<Vec<(String, Observed)>, ProviderError> {
        let wants = |kind: Kind| batch.iter().any(|r| r.kind == kind);
        let by_name = |items: Vec<Value>| -> ByName {
            items
                .into_iter()
                .map(|o| {
                    let key = (
                        o["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        o["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    (key, o)
                })
                .collect()
        };
        let (mut namespaces, mut quotas, mut bindings) =
            (ByName::new(), ByName::new(), ByName::new());
        // Namespaces and Deployments whoever made them: one nimbus did not make, under a
        // declared name, is refused by the plan ("exists, not managed") unless imported.
        if wants(Kind::Tenant) {
            namespaces = by_name(self.listed(client, objects::NAMESPACE, "").await?);
            quotas = by_name(self.managed(client, objects::RESOURCE_QUOTA).await?);
            bindings = by_name(self.managed(client, objects::ROLE_BINDING).await?);
        }
        let (mut deployments, mut secrets) = (ByName::new(), ByName::new());
        if wants(Kind::Workload) {
            deployments = by_name(self.listed(client, objects::DEPLOYMENT, "").await?);
            secrets = by_name(self.managed(client, objects::SECRET).await?);
        }

        let mut seen = Vec::new();
        for request in batch {
            let desired = request.desired.clone().unwrap_or(Value::Null);
            let observed = match request.kind {
                Kind::Tenant => {
                    let name = &parts(&request.address).0;
                    match namespaces.get(&(String::new(), name.to_owned())) {
                        None => Observed::Absent,
                        Some(_) => {
                            let mut spec = desired.clone();
                            let hard = &quotas
                                .get(&(name.to_owned(), "nimbus-quota".to_owned()))
                                .map(|q| q["spec"]["hard"].clone())
                                .unwrap_or(Value::Null);
                            let mut quota = serde_json::Map::new();
                            for (field, key) in [
                                ("cpu", "requests.cpu"),
                                ("memory", "requests.memory"),
                                ("pods", "pods"),
                            ] {
                                if let Some(value) = hard.get(key) {
                                    // As the manifest writes it: pods as a number.
                                    let value = match (
                                        field,
                                        value.as_str().and_then(|t| t.parse::<u64>().ok()),
                                    ) {
                                        ("pods", Some(n)) => json!(n),
                                        _ => value.clone(),
                                    };
                                    quota.insert(field.to_owned(), value);
                                }
                            }
                            spec["quota"] = Value::Object(quota);
                            let members: Vec<Value> = bindings
                                .get(&(name.to_owned(), "nimbus-members".to_owned()))
                                .and_then(|b| b["subjects"].as_array().cloned())
                                .unwrap_or_default()
                                .iter()
                                .map(|s| s["name"].clone())
                                .collect();
                            if let Value::Object(map) = &mut spec {
                                if members.is_empty() {
                                    map.remove("members");
                                } else {
                                    map.insert("members".into(), Value::Array(members));
                                }
                            }
                            Observed::Present(spec)
                        }
                    }
                }
                Kind::Workload => {
                    let (tenant, name) = parts(&request.address);
                    let (tenant, name) = (tenant.as_str(), name.as_str());
                    match deployments.get(&(tenant.to_owned(), name.to_owned())) {
                        None => Observed::Absent,
                        Some(deployment) => {
                            let mut live = objects::observed_workload(
                                &desired,
                                deployment,
                                secrets.get(&(tenant.to_owned(), format!("{name}-env"))),
                            );
                            // Its Cluster, for its removal once its Tenant is gone.
                            if let (Some(cluster), Value::Object(map)) = (cluster, &mut live) {
                                map.insert("cluster".into(), json!(cluster));
                            }
                            Observed::Present(live)
                        }
                    }
                }
                other => {
                    return Err(ProviderError::Bug(format!(
                        "the kubernetes provider does not serve {other}"
                    )));
                }
            };
            seen.push((request.address.clone(), observed));
        }
        Ok(seen)
    }
}
