//! Cluster `docker-swarm`: the swarm initialised on the first manager (by name order), the
//! other managers and the workers joined with tokens read live from a manager (never stored,
//! planned or logged), node roles and labels following the manifests (each node also carries
//! `dev.nimbus.host`, the Host it is), and a host that left the selectors drained, then leaving,
//! then removed.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{
    LocalNodeState, Node, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState,
    SwarmInitRequest, SwarmJoinRequest,
};
use bollard::query_parameters::{
    DeleteNodeOptionsBuilder, LeaveSwarmOptionsBuilder, UpdateNodeOptionsBuilder,
};
use nimbus_planner::topology::ClusterNode;
use nimbus_providers::ProviderError;
use serde_json::{Map, Value, json};

use crate::engine::{Engines, failed};

use crate::labels::HOST_LABEL;

/// What a host's engine says of its own swarm membership.
struct Membership {
    active: bool,
    /// In a swarm in any state but `inactive`: also `pending` (joining, or recovering its
    /// managers' quorum after a restart), `error` and `locked`. Such a node has a swarm,
    /// even when it cannot act in it now.
    joined: bool,
    manager: bool,
    /// Its node's id in the swarm, as the engine itself says.
    node_id: Option<String>,
}

async fn membership(docker: &Docker, host: &str) -> Result<Membership, ProviderError> {
    let info = docker
        .info()
        .await
        .map_err(|e| failed(host, "cannot read the engine's state", &e))?;
    let swarm = info.swarm.unwrap_or_default();
    Ok(Membership {
        active: swarm.local_node_state == Some(LocalNodeState::ACTIVE),
        joined: !matches!(
            swarm.local_node_state,
            None | Some(LocalNodeState::INACTIVE | LocalNodeState::EMPTY)
        ),
        manager: swarm.control_available.unwrap_or(false),
        node_id: swarm.node_id.filter(|id| !id.is_empty()),
    })
}

/// Whether the host's own engine says it is in a swarm (a node that left by hand still looks
/// ready to the managers for a while). A node that is pending (recovering after a restart)
/// is in it.
pub async fn is_member(engines: &Engines, host: &str) -> Option<bool> {
    let docker = engines.engine(host).await.ok()?;
    membership(&docker, host).await.ok().map(|m| m.joined)
}

/// A manager of the swarm the nodes are in: `Ok(None)` when the nodes answer and none is in
/// a swarm (there is none yet); an error when it cannot be told (no node answers, or nodes
/// are in a swarm whose managers do not answer).
pub async fn find_manager(
    engines: &Engines,
    nodes: &[ClusterNode],
) -> Result<Option<(String, Docker)>, ProviderError> {
    let mut last_error = None;
    let mut answered = false;
    let mut member = false;
    for node in nodes
        .iter()
        .filter(|n| n.manager)
        .chain(nodes.iter().filter(|n| !n.manager))
    {
        let found = match engines.engine(&node.host).await {
            Ok(docker) => membership(&docker, &node.host).await.map(|m| (docker, m)),
            Err(e) => Err(e),
        };
        match found {
            Ok((docker, m)) if m.active && m.manager => {
                return Ok(Some((node.host.clone(), docker)));
            }
            Ok((_, m)) => {
                answered = true;
                member |= m.joined;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let why = last_error.map_or_else(String::new, |e| format!(" ({e})"));
    if member {
        // The swarm is there; its managers are not active now (a reconfiguration, a busy
        // engine): worth asking again.
        return Err(ProviderError::Transient(format!(
            "no swarm manager that answers: its nodes are in a swarm whose managers do not{why}"
        )));
    }
    if !answered {
        return Err(ProviderError::Failed(format!(
            "no swarm manager that answers: no node's engine answers{why}"
        )));
    }
    Ok(None)
}

fn host_of(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    spec.labels
        .as_ref()
        .and_then(|l| l.get(HOST_LABEL).cloned())
        .or_else(|| node.description.as_ref()?.hostname.clone())
}

/// The swarm's nodes as the Cluster's spec carries them: `{host: {role, labels}}`, for the
/// nodes that are up and not draining (a node that left by hand is not there).
pub async fn observed_nodes(
    docker: &Docker,
    manager: &str,
    with_address: bool,
) -> Result<Value, ProviderError> {
    let nodes = docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .map_err(|e| failed(manager, "cannot list the swarm's nodes", &e))?;
    let mut out = Map::new();
    for node in &nodes {
        let Some(host) = host_of(node) else { continue };
        let spec = node.spec.clone().unwrap_or_default();
        let ready = node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
        let active = spec.availability == Some(NodeSpecAvailabilityEnum::ACTIVE);
        if !ready || !active {
            continue;
        }
        let mut labels: BTreeMap<String, String> =
            spec.labels.unwrap_or_default().into_iter().collect();
        labels.remove(HOST_LABEL);
        let role = match spec.role {
            Some(NodeSpecRoleEnum::MANAGER) => "manager",
            _ => "worker",
        };
        let mut seen = json!({"role": role, "labels": labels});
        if with_address {
            // The address it advertises to the other nodes.
            seen["address"] = json!(node.status.as_ref().and_then(|s| s.addr.clone()));
        }
        out.insert(host, seen);
    }
    Ok(Value::Object(out))
}

/// Brings the swarm to `nodes`: init, joins, roles and labels, and removal of the nodes no
/// selector chooses any more.
pub async fn converge(engines: &Engines, nodes: &[ClusterNode]) -> Result<(), ProviderError> {
    let Some(first) = nodes.iter().find(|n| n.manager) else {
        return Err(ProviderError::Failed(
            "a docker-swarm Cluster needs at least one manager: no Host matches `managers`"
                .to_owned(),
        ));
    };
    let (leader, docker) = match find_manager(engines, nodes).await? {
        Some(found) => found,
        None => {
            let docker = engines.engine(&first.host).await?;
            docker
                .init_swarm(SwarmInitRequest {
                    listen_addr: Some("0.0.0.0:2377".to_owned()),
                    advertise_addr: Some(first.address.clone()),
                    ..SwarmInitRequest::default()
                })
                .await
                .map_err(|e| failed(&first.host, "docker swarm init failed", &e))?;
            (first.host.clone(), docker)
        }
    };
    let leader_address = nodes
        .iter()
        .find(|n| n.host == leader)
        .map(|n| n.address.clone())
        .unwrap_or_default();
    // What each node advertises now: a node that advertises another address than it should
    // (the cluster moved onto a Network) leaves and joins again.
    let advertised: HashMap<String, String> = docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .map_err(|e| failed(&leader, "cannot list the swarm's nodes", &e))?
        .iter()
        .filter(|n| n.status.as_ref().and_then(|s| s.state) != Some(NodeState::DOWN))
        .filter_map(|n| Some((host_of(n)?, n.status.as_ref()?.addr.clone()?)))
        .collect();
    if let Some(wrong) = advertised
        .get(&leader)
        .filter(|addr| **addr != leader_address)
    {
        return Err(ProviderError::Failed(format!(
            "Host/{leader}: the swarm was made with its manager advertising {wrong}, not {leader_address}; a swarm's first manager cannot move: remove the Cluster, apply, and add it again to make it on the new addresses"
        )));
    }
    // Joins, with tokens read now and kept in memory only.
    let mut tokens = None;
    for node in nodes.iter().filter(|n| n.host != leader) {
        let engine = engines.engine(&node.host).await?;
        // In a swarm already, or on its way back into it (pending after a restart).
        if membership(&engine, &node.host).await?.joined {
            match advertised.get(&node.host) {
                Some(addr) if *addr != node.address => {
                    engine
                        .leave_swarm(Some(LeaveSwarmOptionsBuilder::new().force(true).build()))
                        .await
                        .map_err(|e| failed(&node.host, "docker swarm leave failed", &e))?;
                }
                _ => continue,
            }
        }
        if tokens.is_none() {
            let swarm = docker
                .inspect_swarm()
                .await
                .map_err(|e| failed(&leader, "cannot read the swarm's join tokens", &e))?;
            tokens = swarm.join_tokens;
        }
        let token = tokens.as_ref().and_then(|t| {
            if node.manager {
                t.manager.clone()
            } else {
                t.worker.clone()
            }
        });
        engine
            .join_swarm(SwarmJoinRequest {
                listen_addr: Some("0.0.0.0:2377".to_owned()),
                advertise_addr: Some(node.address.clone()),
                remote_addrs: Some(vec![format!("{leader_address}:2377")]),
                join_token: token,
                ..SwarmJoinRequest::default()
            })
            .await
            .map_err(|e| failed(&node.host, "docker swarm join failed", &e))?;
    }
    // Each wanted host's own node id: an older entry of the same host (it left and joined
    // again) is stale.
    let mut own_ids: HashMap<String, String> = HashMap::new();
    for node in nodes {
        let engine = engines.engine(&node.host).await?;
        if let Some(id) = membership(&engine, &node.host).await?.node_id {
            own_ids.insert(node.host.clone(), id);
        }
    }
    // Roles and labels; nodes no longer chosen drained, then gone.
    let wanted: HashMap<&str, &ClusterNode> = nodes.iter().map(|n| (n.host.as_str(), n)).collect();
    let listed = docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .map_err(|e| failed(&leader, "cannot list the swarm's nodes", &e))?;
    let mut leaving = Vec::new();
    for node in &listed {
        let (Some(id), Some(version)) =
            (node.id.clone(), node.version.as_ref().and_then(|v| v.index))
        else {
            continue;
        };
        let hostname = node.description.as_ref().and_then(|d| d.hostname.clone());
        let host = node
            .spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get(HOST_LABEL).cloned())
            .or(hostname);
        let stale = host
            .as_deref()
            .and_then(|h| own_ids.get(h))
            .is_some_and(|own| *own != id);
        let down = stale || node.status.as_ref().and_then(|s| s.state) == Some(NodeState::DOWN);
        match host.as_deref().and_then(|h| wanted.get(h)) {
            Some(want) if !down => {
                let mut labels: HashMap<String, String> = want.labels.clone().into_iter().collect();
                labels.insert(HOST_LABEL.to_owned(), want.host.clone());
                let spec = NodeSpec {
                    name: None,
                    labels: Some(labels),
                    role: Some(if want.manager {
                        NodeSpecRoleEnum::MANAGER
                    } else {
                        NodeSpecRoleEnum::WORKER
                    }),
                    availability: Some(NodeSpecAvailabilityEnum::ACTIVE),
                };
                if node.spec.as_ref() != Some(&spec) {
                    update_node(&docker, &id, version, spec)
                        .await
                        .map_err(|e| {
                            failed(&want.host, "cannot set the node's role and labels", &e)
                        })?;
                }
            }
            // A stale entry of a host that joined again: removed.
            Some(_) => {
                let _ = docker
                    .delete_node(
                        &id,
                        Some(DeleteNodeOptionsBuilder::new().force(true).build()),
                    )
                    .await;
            }
            None => leaving.push((id, version, host)),
        }
    }
    for (id, version, host) in leaving {
        remove_node(engines, &docker, &leader, &id, version, host.as_deref()).await?;
    }
    Ok(())
}

/// Sets a node's spec. The swarm bumps a node's version on its own as well (a node that has
/// just joined reports its description and status a moment later), so an update of the
/// version read a moment ago can be refused as "update out of sequence": the node is read
/// again and the update made on its new version, a few times at most.
async fn update_node(
    docker: &Docker,
    id: &str,
    mut version: u64,
    spec: NodeSpec,
) -> Result<(), bollard::errors::Error> {
    let mut attempt = 0;
    loop {
        let options = UpdateNodeOptionsBuilder::new()
            .version(version as i64)
            .build();
        match docker.update_node(id, spec.clone(), options).await {
            Err(e) if attempt < 5 && e.to_string().contains("update out of sequence") => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                let node = docker.inspect_node(id).await?;
                version = node.version.and_then(|v| v.index).unwrap_or(version);
            }
            result => return result,
        }
    }
}

/// Drains a node, makes its host leave, and removes it from the swarm.
async fn remove_node(
    engines: &Engines,
    docker: &Docker,
    leader: &str,
    id: &str,
    version: u64,
    host: Option<&str>,
) -> Result<(), ProviderError> {
    let node = docker
        .inspect_node(id)
        .await
        .map_err(|e| failed(leader, "cannot read a leaving node", &e))?;
    let mut spec = node.spec.unwrap_or_default();
    if spec.role == Some(NodeSpecRoleEnum::MANAGER) {
        spec.role = Some(NodeSpecRoleEnum::WORKER);
    }
    spec.availability = Some(NodeSpecAvailabilityEnum::DRAIN);
    update_node(docker, id, version, spec)
        .await
        .map_err(|e| failed(leader, "cannot drain a leaving node", &e))?;
    if let Some(host) = host
        && engines.pool().target(host).is_some()
        && let Ok(engine) = engines.engine(host).await
    {
        let _ = engine
            .leave_swarm(Some(LeaveSwarmOptionsBuilder::new().force(true).build()))
            .await;
    }
    // The manager sees it down a moment later; removed by force either way.
    docker
        .delete_node(
            id,
            Some(DeleteNodeOptionsBuilder::new().force(true).build()),
        )
        .await
        .map_err(|e| failed(leader, "cannot remove a leaving node", &e))
}

/// Every node leaves: workers first, managers last.
pub async fn dissolve(engines: &Engines, nodes: &[ClusterNode]) -> Result<(), ProviderError> {
    // The nodes given (as last applied or observed), and every node the swarm itself lists
    // that nimbus can reach: a node that was down or recovering when it was last observed
    // is a node of the swarm all the same.
    let mut all: Vec<ClusterNode> = nodes.to_vec();
    if let Ok(Some((manager, docker))) = find_manager(engines, nodes).await
        && let Ok(listed) = docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
    {
        for node in &listed {
            let Some(host) = host_of(node) else { continue };
            if all.iter().any(|n| n.host == host) || engines.pool().target(&host).is_none() {
                continue;
            }
            let role = node.spec.as_ref().and_then(|s| s.role);
            all.push(ClusterNode {
                host,
                address: String::new(),
                manager: role == Some(bollard::models::NodeSpecRoleEnum::MANAGER),
                labels: BTreeMap::new(),
            });
        }
        tracing::debug!(manager, nodes = all.len(), "dissolving the swarm");
    }
    let mut order: Vec<&ClusterNode> = all.iter().filter(|n| !n.manager).collect();
    order.extend(all.iter().filter(|n| n.manager));
    for node in order {
        let engine = engines.engine(&node.host).await?;
        // Also a node that is pending: a manager whose quorum went with the managers that
        // left before it.
        if membership(&engine, &node.host).await?.joined {
            engine
                .leave_swarm(Some(LeaveSwarmOptionsBuilder::new().force(true).build()))
                .await
                .map_err(|e| failed(&node.host, "docker swarm leave failed", &e))?;
        }
    }
    Ok(())
}
