//! The Network provider on nimbus's side (SPEC §11): each `Network/NAME@HOST` is configured by
//! the agent on that host, reached through the host's SSH connection. The planner gives each
//! member its interface, overlay address and peers (`nimbus_planner::mesh`); this side adds
//! the peers' public keys, asked live from the peers' own agents (each key is made on its host
//! and never leaves it), and turns what an agent reports into the planner's form: peers named
//! by their keys, a peer with a key nobody has shown as `unknown <key>`.
//!
//! Changes marked `confirm` (a member nimbus reaches through the network) are armed with a
//! timer on their host; they are confirmed once every such member answers again through a new
//! connection, else the hosts restore their previous configuration by themselves and the run
//! says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_planner::plan::{Action, Change, KindSchema, Observed, ProviderSchema};
use nimbus_schemas::Kind;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::agent::{Installer, NetworkOperation};
use crate::protocol::{ApplyParams, Call, Observations, ObserveParams};
use crate::ssh::{Pool, SshSession};
use crate::wireguard::{Arm, InterfaceConfig, PeerConfig};
use crate::{Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError};

/// The provider's id: Networks go to the agent.
pub const PROVIDER: &str = nimbus_planner::rules::AGENT;

/// How long a public key asked of a peer's agent is reused.
const KEY_FRESH: Duration = Duration::from_secs(5);

/// The fields compared; the rest of what an agent reports (handshakes, backend) is shown only.
pub fn kind_schema() -> KindSchema {
    KindSchema {
        compare_fields: Some(
            [
                "interface",
                "address",
                "listenPort",
                "key",
                "boot",
                "up",
                "peers",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        replace_fields: vec!["interface".into()],
        ..KindSchema::default_for(Kind::Network)
    }
}

type KeyCell = Arc<OnceCell<Option<String>>>;

/// A change armed on its host: the instance, the host, the token that confirms it.
#[derive(Clone, Debug)]
struct Armed {
    address: String,
    host: String,
    token: String,
}

/// What the last change of a group to finish does: confirm those armed (from about when the
/// first was armed), or say which failed.
type GroupOutcome = Result<Option<(Instant, Vec<Armed>)>, Vec<String>>;

/// The changes of one group so far: those armed (address, host, token), those that failed,
/// and when the first was armed (the hosts' timers run from about then).
#[derive(Debug, Default)]
struct Group {
    armed: Vec<Armed>,
    failed: Vec<String>,
    first_armed: Option<Instant>,
}

pub struct MeshProvider {
    pool: Arc<Pool>,
    installer: Installer,
    installed: tokio::sync::Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// Public keys by (host, interface), asked once per few seconds.
    keys: Mutex<HashMap<(String, String), (Instant, KeyCell)>>,
    /// Changes made together under one confirm-or-revert timer, by their group.
    groups: Mutex<HashMap<Vec<String>, Group>>,
}

impl std::fmt::Debug for MeshProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshProvider").finish_non_exhaustive()
    }
}

/// A Network member's address, parsed: its Network's name and its host.
fn member(address: &str) -> Result<nimbus_schemas::Address, ProviderError> {
    address
        .parse::<nimbus_schemas::Address>()
        .ok()
        .filter(|a| a.kind == Kind::Network && a.host.is_some())
        .ok_or_else(|| ProviderError::Bug(format!("{address} is not a per-host instance")))
}

fn host_of(address: &str) -> Result<String, ProviderError> {
    Ok(member(address)?.host.unwrap_or_default())
}

/// A change carrying one agent operation.
fn operation_change(address: &str, operation: &NetworkOperation) -> Result<Change, ProviderError> {
    let after = serde_json::to_value(operation).map_err(|e| ProviderError::Bug(e.to_string()))?;
    let resource = nimbus_schemas::Address::resource_of(address);
    let host = address
        .parse::<nimbus_schemas::Address>()
        .ok()
        .and_then(|a| a.host);
    Ok(Change {
        provider: PROVIDER.to_owned(),
        ..Change::of(
            Kind::Network,
            &resource,
            host.as_deref(),
            Action::Update,
            None,
            Some(&after),
        )
    })
}

impl MeshProvider {
    pub fn new(pool: Arc<Pool>, installer: Installer) -> Self {
        MeshProvider {
            pool,
            installer,
            installed: tokio::sync::Mutex::default(),
            keys: Mutex::default(),
            groups: Mutex::default(),
        }
    }

    /// The host's connection, with this build's agent running there (installed once per run).
    async fn session(&self, host: &str) -> Result<Arc<SshSession>, ProviderError> {
        let session = self.pool.session(host).await?;
        let cell = Arc::clone(
            self.installed
                .lock()
                .await
                .entry(host.to_owned())
                .or_default(),
        );
        cell.get_or_try_init(|| async { self.installer.ensure(&session).await.map(drop) })
            .await?;
        Ok(session)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        session: &SshSession,
        call: Call,
    ) -> Result<T, ProviderError> {
        self.installer.connect(session).await?.call(call).await
    }

    /// What the agent on `host` reports of `interface`, `None` when it has nothing of it.
    async fn raw(
        &self,
        session: &SshSession,
        address: &str,
        interface: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let found: Observations = self
            .call(
                session,
                Call::Observe(ObserveParams {
                    target: Some(session.name().to_owned()),
                    batch: vec![ObserveRequest {
                        address: address.to_owned(),
                        kind: Kind::Network,
                        desired: Some(json!({ "interface": interface })),
                    }],
                }),
            )
            .await?;
        Ok(found
            .observations
            .into_iter()
            .next()
            .and_then(|o| match o.into_observed().1 {
                Observed::Present(value) => Some(value),
                _ => None,
            }))
    }

    async fn operation(
        &self,
        session: &SshSession,
        address: &str,
        operation: &NetworkOperation,
    ) -> Result<Applied, ProviderError> {
        let change = operation_change(address, operation)?;
        self.call(session, Call::Apply(Box::new(ApplyParams { change })))
            .await
    }

    /// `peer`'s public key for `interface`: made there first when `make` (an apply), else
    /// `None` when it has none or cannot be asked.
    async fn public_key(
        &self,
        peer: &str,
        network: &str,
        interface: &str,
        make: bool,
    ) -> Option<String> {
        let cell = {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let key = (peer.to_owned(), interface.to_owned());
            match keys.get(&key) {
                Some((at, cell))
                    if at.elapsed() < KEY_FRESH
                        && (!make || cell.get().is_none_or(Option::is_some)) =>
                {
                    Arc::clone(cell)
                }
                _ => {
                    let cell = KeyCell::default();
                    keys.insert(key, (Instant::now(), Arc::clone(&cell)));
                    cell
                }
            }
        };
        let address = format!("Network/{network}@{peer}");
        cell.get_or_init(|| async {
            let session = self.session(peer).await.ok()?;
            let applied = self
                .operation(
                    &session,
                    &address,
                    &NetworkOperation::Key {
                        interface: interface.to_owned(),
                        read_only: !make,
                    },
                )
                .await
                .ok()?;
            applied.outputs["publicKey"].as_str().map(str::to_owned)
        })
        .await
        .clone()
    }

    /// The keys of `desired`'s peers, by name (those that could be had).
    async fn peer_keys(
        &self,
        network: &str,
        desired: &Value,
        make: bool,
    ) -> HashMap<String, String> {
        let interface = desired["interface"].as_str().unwrap_or_default();
        let names: Vec<&String> = desired["peers"]
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        let mut keys = HashMap::new();
        // All at once: each is a round trip to another host.
        let asked = names
            .iter()
            .map(|name| self.public_key(name, network, interface, make));
        let answers = futures_util::future::join_all(asked).await;
        for (name, key) in names.into_iter().zip(answers) {
            if let Some(key) = key {
                keys.insert(name.clone(), key);
            }
        }
        keys
    }

    /// An agent's report in the planner's form, peers named by the keys their hosts have.
    fn comparable(raw: &Value, desired: &Value, keys: &HashMap<String, String>) -> Value {
        let by_key: HashMap<&str, &str> = keys
            .iter()
            .map(|(name, key)| (key.as_str(), name.as_str()))
            .collect();
        let mut peers = Map::new();
        for peer in raw["peers"].as_array().into_iter().flatten() {
            let key = peer["publicKey"].as_str().unwrap_or_default();
            let name = by_key
                .get(key)
                .map(|n| (*n).to_owned())
                .unwrap_or_else(|| format!("unknown {key}"));
            let wanted = &desired["peers"][&name];
            let mut entry = Map::new();
            let allowed: Vec<&str> = peer["allowedIps"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match allowed.as_slice() {
                [one] if one.ends_with("/32") || one.ends_with("/128") => {
                    let ip = one.rsplit_once('/').map_or(*one, |(ip, _)| ip);
                    entry.insert("address".into(), json!(ip));
                }
                _ => {
                    entry.insert("address".into(), json!(allowed));
                }
            }
            // A member with no endpoint of its own is found where it writes from: where its
            // peers learnt it is is not compared.
            if (wanted.is_null() || wanted.get("endpoint").is_some())
                && let Some(endpoint) = peer["endpoint"].as_str()
            {
                entry.insert("endpoint".into(), json!(endpoint));
            }
            if let Some(seconds) = peer["keepalive"].as_u64() {
                entry.insert("keepalive".into(), json!(seconds));
            }
            peers.insert(name, Value::Object(entry));
        }
        let addresses: Vec<&str> = raw["addresses"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key = if !raw["exists"].as_bool().unwrap_or(false) {
            "no interface"
        } else if raw["keyKept"].as_bool().unwrap_or(false) {
            nimbus_planner::mesh::KEY_KEPT
        } else {
            "changed on the host"
        };
        json!({
            "interface": raw["interface"],
            "address": match addresses.as_slice() {
                [one] => json!(one),
                _ => json!(addresses),
            },
            "listenPort": raw["listenPort"],
            "key": key,
            "boot": raw["boot"],
            "up": raw["up"],
            "peers": peers,
            "publicKey": raw["publicKey"],
            "backend": raw["backend"],
            // The host restored its previous configuration: what state recorded of the last
            // change is not what it runs.
            "rolledBack": !raw["rolledBack"].is_null(),
            "handshakes": raw["peers"].as_array().map(|peers| peers.iter().map(|p| {
                let key = p["publicKey"].as_str().unwrap_or_default();
                let name = by_key.get(key).copied().unwrap_or(key);
                (name.to_owned(), p["latestHandshake"].clone())
            }).collect::<Map<String, Value>>()),
        })
    }

    async fn observe_one(&self, request: &ObserveRequest) -> Result<Observed, ProviderError> {
        let member = member(&request.address)?;
        let host = member.host.as_deref().unwrap_or_default();
        let network = member.name.as_str();
        let desired = request.desired.clone().unwrap_or(Value::Null);
        let Some(interface) = desired["interface"].as_str() else {
            return Err(ProviderError::Failed(format!(
                "{}: observing needs the Network's interface",
                request.address
            )));
        };
        let session = self.session(host).await?;
        let Some(raw) = self.raw(&session, &request.address, interface).await? else {
            return Ok(Observed::Absent);
        };
        // Its own key, for its peers' observations.
        if let Some(key) = raw["publicKey"].as_str() {
            self.keys
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((host.to_owned(), interface.to_owned()))
                .or_insert_with(|| {
                    (
                        Instant::now(),
                        Arc::new(OnceCell::new_with(Some(Some(key.to_owned())))),
                    )
                });
        }
        let keys = self.peer_keys(network, &desired, false).await;
        Ok(Observed::Present(Self::comparable(&raw, &desired, &keys)))
    }

    /// A new connection to `host` (through its bastion when it has one), with a deadline: the
    /// proof that the path still works after a change.
    async fn reach_anew(&self, host: &str) -> Result<SshSession, ProviderError> {
        let target = self
            .pool
            .target(host)
            .ok_or_else(|| ProviderError::Failed(format!("Host/{host} is not declared")))?
            .clone();
        let bastion = match &target.via {
            Some(via) => Some(self.pool.session(via).await?),
            None => None,
        };
        let attempt = SshSession::connect_via(&target, bastion.as_deref());
        let session = tokio::time::timeout(Duration::from_secs(3), attempt)
            .await
            .map_err(|_| {
                ProviderError::Transient(format!("Host/{host}: no answer within 3 s"))
            })??;
        let hello = tokio::time::timeout(Duration::from_secs(3), self.installer.connect(&session))
            .await
            .map_err(|_| {
                ProviderError::Transient(format!("Host/{host}: the agent does not answer"))
            })??;
        drop(hello);
        Ok(session)
    }

    /// Waits until every member in `through` answers through a new connection, then confirms
    /// every armed change of the group, each on its own host (a change not in effect yet is
    /// asked again). Else the hosts roll back by themselves: this waits for that and says
    /// whether the members answer again.
    async fn confirm(
        &self,
        change: &Change,
        confirm: &nimbus_planner::plan::Confirm,
        armed_at: Instant,
        tokens: Vec<Armed>,
    ) -> Result<(), ProviderError> {
        let timeout = Duration::from_secs(confirm.timeout_seconds);
        let deadline = armed_at + timeout.saturating_sub(Duration::from_secs(2));
        let mut fresh: HashMap<String, SshSession> = HashMap::new();
        let mut pending = tokens;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            for host in &confirm.through {
                if !fresh.contains_key(host) {
                    match self.reach_anew(host).await {
                        Ok(session) => {
                            fresh.insert(host.clone(), session);
                        }
                        Err(e) => last_error = e.to_string(),
                    }
                }
            }
            if fresh.len() == confirm.through.len() {
                let mut left = Vec::new();
                for armed in pending {
                    let Armed {
                        address,
                        host,
                        token,
                    } = &armed;
                    let operation = NetworkOperation::Confirm {
                        token: token.clone(),
                    };
                    let result = match fresh.get(host) {
                        Some(session) => self.operation(session, address, &operation).await,
                        None => match self.session(host).await {
                            Ok(session) => self.operation(&session, address, &operation).await,
                            Err(e) => Err(e),
                        },
                    };
                    match result {
                        Ok(_) => {}
                        Err(ProviderError::Transient(e)) => {
                            last_error = e;
                            left.push(armed);
                        }
                        Err(e) => {
                            return Err(ProviderError::Failed(format!(
                                "{address}: cannot confirm the change: {e}"
                            )));
                        }
                    }
                }
                pending = left;
                if pending.is_empty() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Not confirmed: the armed hosts restore their previous configuration. Wait for that,
        // and say whether the members answer again.
        let names = confirm
            .through
            .iter()
            .map(|h| format!("Host/{h}"))
            .collect::<Vec<_>>()
            .join(", ");
        tokio::time::sleep(
            (armed_at + timeout + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
        )
        .await;
        let mut back = Vec::new();
        for host in &confirm.through {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if self.reach_anew(host).await.is_ok() {
                    back.push(format!("Host/{host} answers again"));
                    break;
                }
                if Instant::now() > deadline {
                    back.push(format!("Host/{host} still does not answer"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Err(ProviderError::Failed(format!(
            "{}: rolled back: nimbus could not reach {names} through {} and confirm within {} s of the change ({last_error}), so the members changed with it restored their previous configuration by themselves; {}",
            change.address,
            change.resource,
            confirm.timeout_seconds,
            back.join(", ")
        )))
    }

    /// Notes a group member's outcome; the last one of the group to finish gets the group's
    /// armed changes to confirm (`Ok(Some)`), or the names of those that failed (`Err`).
    fn finish_in_group(
        &self,
        confirm: &nimbus_planner::plan::Confirm,
        outcome: Result<Armed, String>,
    ) -> GroupOutcome {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let group = groups.entry(confirm.group.clone()).or_default();
        match outcome {
            Ok(armed) => {
                group.first_armed.get_or_insert_with(Instant::now);
                group.armed.push(armed);
            }
            Err(address) => group.failed.push(address),
        }
        if group.armed.len() + group.failed.len() < confirm.group.len() {
            return Ok(None);
        }
        let group = groups.remove(&confirm.group).unwrap_or_default();
        if !group.failed.is_empty() {
            return Err(group.failed);
        }
        Ok(Some((
            group.first_armed.unwrap_or_else(Instant::now),
            group.armed,
        )))
    }

    async fn apply_change(&self, change: &Change) -> Result<Applied, ProviderError> {
        let host = host_of(&change.address)?;
        let network = change.resource.strip_prefix("Network/").unwrap_or_default();
        let session = self.session(&host).await?;
        let interface_of = |spec: &Option<Value>| {
            spec.as_ref()
                .and_then(|s| s["interface"].as_str())
                .map(str::to_owned)
        };
        if change.action == Action::Delete {
            let Some(interface) = interface_of(&change.before) else {
                return Err(ProviderError::Bug(format!(
                    "{}: a delete without the interface it removes",
                    change.address
                )));
            };
            self.operation(
                &session,
                &change.address,
                &NetworkOperation::Remove { interface },
            )
            .await?;
            return Ok(Applied::default());
        }
        let desired = change.after.clone().unwrap_or(Value::Null);
        let Some(interface) = interface_of(&change.after) else {
            return Err(ProviderError::Bug(format!(
                "{}: a Network change without its interface",
                change.address
            )));
        };
        // A renamed interface: the old one goes first.
        if let Some(old) = interface_of(&change.before).filter(|old| *old != interface) {
            self.operation(
                &session,
                &change.address,
                &NetworkOperation::Remove { interface: old },
            )
            .await?;
        }
        let keys = self.peer_keys(network, &desired, true).await;
        // A peer whose agent cannot be asked keeps the key this host has for its address.
        let current = self.raw(&session, &change.address, &interface).await?;
        let known = |address: &str| -> Option<String> {
            current.as_ref()?["peers"].as_array()?.iter().find_map(|p| {
                let allowed = p["allowedIps"].as_array()?;
                let matches =
                    allowed.len() == 1 && allowed[0].as_str()?.split('/').next()? == address;
                matches.then(|| p["publicKey"].as_str().map(str::to_owned))?
            })
        };
        let mut peers = Vec::new();
        let mut unknown = Vec::new();
        for (name, peer) in desired["peers"].as_object().into_iter().flatten() {
            let Some(address) = peer["address"]
                .as_str()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            else {
                continue;
            };
            let Some(public_key) = keys
                .get(name)
                .cloned()
                .or_else(|| known(&address.to_string()))
            else {
                unknown.push(name.clone());
                continue;
            };
            peers.push(PeerConfig {
                public_key,
                address,
                endpoint: peer["endpoint"].as_str().and_then(|e| e.parse().ok()),
                keepalive: peer["keepalive"]
                    .as_u64()
                    .and_then(|k| u16::try_from(k).ok()),
            });
        }
        let config = InterfaceConfig {
            interface: interface.clone(),
            address: desired["address"].as_str().unwrap_or_default().to_owned(),
            listen_port: desired["listenPort"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(nimbus_schemas::DEFAULT_WIREGUARD_PORT),
            peers,
        };
        let arm = change.confirm.as_ref().map(|confirm| Arm {
            token: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ),
            timeout_seconds: confirm.timeout_seconds,
        });
        let on_path = |address: &String| {
            change.confirm.as_ref().is_some_and(|confirm| {
                address
                    .parse::<nimbus_schemas::Address>()
                    .ok()
                    .and_then(|a| a.host)
                    .is_some_and(|h| confirm.through.contains(&h))
            })
        };
        let applied = self
            .operation(
                &session,
                &change.address,
                &NetworkOperation::Configure {
                    config,
                    arm: arm.clone(),
                    deferred: on_path(&change.address),
                },
            )
            .await;
        if let (Some(confirm), Some(arm)) = (&change.confirm, &arm) {
            // The group is confirmed by the last of it to be armed, once the members on the
            // path answer through it; a failure anywhere leaves every timer to fire.
            let outcome = match &applied {
                Ok(_) => Ok(Armed {
                    address: change.address.clone(),
                    host: host.to_owned(),
                    token: arm.token.clone(),
                }),
                Err(_) => Err(change.address.clone()),
            };
            let revert = |failed: Vec<String>| {
                ProviderError::Failed(format!(
                    "{}: not confirmed, because {} failed: the members of {} changed with it restore their previous configuration by themselves within {} s",
                    change.address,
                    failed.join(", "),
                    change.resource,
                    confirm.timeout_seconds
                ))
            };
            match self.finish_in_group(confirm, outcome) {
                Ok(Some((armed_at, tokens))) => {
                    applied.as_ref().map_err(Clone::clone)?;
                    self.confirm(change, confirm, armed_at, tokens).await?;
                }
                Ok(None) => {}
                Err(failed) => {
                    return Err(applied.err().unwrap_or_else(|| revert(failed)));
                }
            }
        }
        let applied = applied?;
        let public_key = applied.outputs["publicKey"].clone();
        let observed = Self::comparable(&applied.observed, &desired, &keys);
        let mut outputs = json!({
            "publicKey": public_key,
            "address": desired["address"],
            "interface": interface,
        });
        if !unknown.is_empty() {
            outputs["peersWithoutKey"] = json!(unknown);
        }
        Ok(Applied { observed, outputs })
    }
}

impl Provider for MeshProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn describe(&self) -> ProviderSchema {
        ProviderSchema {
            provider: PROVIDER.to_owned(),
            kinds: vec![kind_schema()],
        }
    }

    fn observe<'a>(
        &'a self,
        _target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            let mut seen = Vec::new();
            for request in batch {
                if request.kind != Kind::Network {
                    return Err(ProviderError::Failed(format!(
                        "{}: the agent provider serves Networks only",
                        request.address
                    )));
                }
                seen.push((request.address.clone(), self.observe_one(request).await?));
            }
            Ok(seen)
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        _cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            if change.kind != Kind::Network {
                return Err(ProviderError::Failed(format!(
                    "{}: the agent provider serves Networks only",
                    change.address
                )));
            }
            // Every failure names its instance.
            self.apply_change(change)
                .await
                .map_err(|e| e.naming(&change.address))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_named_by_their_hosts_keys_and_strangers_are_shown() {
        let desired = json!({
            "interface": "wg-mesh",
            "peers": {
                "b": {"address": "10.106.103.2", "endpoint": "10.0.0.2:51820", "keepalive": 25},
                "c": {"address": "10.106.103.3", "keepalive": 25},
            }
        });
        let raw = json!({
            "interface": "wg-mesh", "exists": true, "keyKept": true, "listenPort": 51820,
            "addresses": ["10.106.103.1/24"], "up": true, "boot": true, "publicKey": "A=",
            "peers": [
                {"publicKey": "B=", "endpoint": "10.0.0.2:51820", "allowedIps": ["10.106.103.2/32"], "keepalive": 25},
                {"publicKey": "C=", "endpoint": "10.0.0.3:40000", "allowedIps": ["10.106.103.3/32"], "keepalive": 25},
                {"publicKey": "X=", "endpoint": null, "allowedIps": ["10.106.103.9/32", "10.0.0.0/8"]},
            ]
        });
        let keys = HashMap::from([
            ("b".to_owned(), "B=".to_owned()),
            ("c".to_owned(), "C=".to_owned()),
        ]);
        let seen = MeshProvider::comparable(&raw, &desired, &keys);
        assert_eq!(
            seen["peers"],
            json!({
                "b": {"address": "10.106.103.2", "endpoint": "10.0.0.2:51820", "keepalive": 25},
                // c has no endpoint of its own: where b learnt it is is not compared
                "c": {"address": "10.106.103.3", "keepalive": 25},
                "unknown X=": {"address": ["10.106.103.9/32", "10.0.0.0/8"]},
            })
        );
        assert_eq!(seen["address"], "10.106.103.1/24");
        assert_eq!(seen["key"], nimbus_planner::mesh::KEY_KEPT);
        let changed = MeshProvider::comparable(
            &json!({"exists": true, "keyKept": false, "peers": []}),
            &desired,
            &keys,
        );
        assert_eq!(changed["key"], "changed on the host");
    }
}
