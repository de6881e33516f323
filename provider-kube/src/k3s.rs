//! The `k3s` Cluster, installed over each node's SSH connection (SPEC §11): the pinned
//! binary copied to `/usr/local/bin/k3s` and checked by its SHA-256 on the node, a systemd
//! unit per node (`k3s.service` on servers, `k3s-agent.service` on agents) with flags from
//! the manifests (node name, node labels from the Host's labels, node IP = the overlay
//! address when the Cluster names a Network), servers first (the one that initialised the
//! cluster, then the others joining it), then agents; each node waited for until the API
//! lists it Ready, one after the other, so that a new binary rolls node by node.
//!
//! The node token and the kubeconfig are read live from a server over SSH, kept in memory,
//! and never stored, logged or shown: the token travels to the other nodes on the SSH
//! channel's standard input into a root-only environment file of their unit (where k3s's own
//! installer puts it too), and the kubeconfig becomes a kube client over the server's SSH
//! connection ([`crate::tunnel`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_planner::topology::ClusterNode;
use nimbus_providers::ProviderError;
use nimbus_providers::hosts::{remove_service_script, service_script};
use nimbus_providers::quote::{shell_quote, systemd_quote};
use nimbus_providers::sha256_hex;

pub use crate::nodes::{Node, nodes_of};
use crate::nodes::{api_nodes, label, shown};
use nimbus_providers::ssh::{Pool, SshSession};
use serde_json::{Value, json};

/// Where the binary goes on every node.
pub const BINARY: &str = "/usr/local/bin/k3s";
/// Where a k3s server writes its admin kubeconfig.
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// Where a k3s server keeps the token further nodes join with.
pub const TOKEN: &str = "/var/lib/rancher/k3s/server/node-token";
/// The API's port on a server.
pub const API_PORT: u16 = 6443;
/// How long a node may take to be listed Ready, in seconds (default 180).
pub const READY_TIMEOUT_ENV: &str = "NIMBUS_K3S_READY_TIMEOUT";
/// The first line of every unit nimbus writes: what it was written for, as JSON.
const MARKER: &str = "# nimbus k3s node: ";

/// The unit file of a k3s role.
fn unit_path(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}.service")
}

fn failed(address: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(format!("{address}: {message}"))
}

/// Where a Cluster's binary comes from: `k3s.source` and `k3s.sha256`.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub source: String,
    pub sha256: String,
}

impl Source {
    pub fn of(spec: &Value) -> Option<Source> {
        Some(Source {
            source: spec["k3s"]["source"].as_str()?.to_owned(),
            sha256: spec["k3s"]["sha256"].as_str()?.to_ascii_lowercase(),
        })
    }

    fn is_url(&self) -> bool {
        self.source.starts_with("http://") || self.source.starts_with("https://")
    }
}

/// The k3s clusters of a run: their nodes, where their binaries come from, and a kube client
/// per cluster, made once from the kubeconfig a server hands over.
pub struct Clusters {
    pool: Arc<Pool>,
    /// Each k3s Cluster's nodes, as the manifests resolve them (to find its API, and to
    /// observe it when asked with the manifest's spec alone).
    nodes: BTreeMap<String, Vec<ClusterNode>>,
    /// Each k3s Cluster's binary: its own `k3s`, else the Repository's.
    sources: BTreeMap<String, Source>,
    /// Each Tenant's Cluster.
    tenants: BTreeMap<String, String>,
    /// Binaries from repository files, read when the run was configured, by path.
    files: BTreeMap<String, Result<Arc<Vec<u8>>, String>>,
    /// Binaries fetched from URLs in this run, by URL.
    fetched: tokio::sync::Mutex<BTreeMap<String, Arc<Vec<u8>>>>,
    clients: tokio::sync::Mutex<BTreeMap<String, kube::Client>>,
    /// Each Network's WireGuard interface, by Network name.
    interfaces: BTreeMap<String, String>,
    /// How long a node may take to be listed Ready.
    pub ready_timeout: Duration,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters")
            .field("clusters", &self.nodes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What one node's observation found.
#[derive(Debug, Default)]
struct Seen {
    unit: Option<String>,
    active: bool,
    written: Option<Value>,
    sha256: String,
    version: String,
}

impl Clusters {
    pub fn new(
        pool: Arc<Pool>,
        nodes: BTreeMap<String, Vec<ClusterNode>>,
        sources: BTreeMap<String, Source>,
        tenants: BTreeMap<String, String>,
        files: BTreeMap<String, Result<Arc<Vec<u8>>, String>>,
    ) -> Clusters {
        Clusters {
            pool,
            nodes,
            sources,
            tenants,
            files,
            fetched: tokio::sync::Mutex::new(BTreeMap::new()),
            clients: tokio::sync::Mutex::new(BTreeMap::new()),
            interfaces: BTreeMap::new(),
            ready_timeout: Duration::from_secs(180),
        }
    }

    /// The Networks' WireGuard interfaces (by Network name), for flannel on a Cluster that
    /// names one.
    pub fn with_interfaces(mut self, interfaces: BTreeMap<String, String>) -> Clusters {
        self.interfaces = interfaces;
        self
    }

    /// The declared k3s Clusters, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// The Cluster of the Tenant called `tenant`.
    pub fn cluster_of_tenant(&self, tenant: &str) -> Option<&str> {
        self.tenants.get(tenant).map(String::as_str)
    }

    /// The name of a k3s Cluster this run knows, as `self` keeps it.
    pub fn cluster_named(&self, cluster: &str) -> Option<&str> {
        self.nodes.get_key_value(cluster).map(|(k, _)| k.as_str())
    }

    /// The cluster's API, through the first server that hands over a kubeconfig; none when
    /// no server has one (k3s is not installed yet).
    pub async fn client(&self, cluster: &str) -> Result<Option<kube::Client>, ProviderError> {
        let servers: Vec<String> = self
            .nodes
            .get(cluster)
            .map(|nodes| {
                nodes
                    .iter()
                    .filter(|n| n.manager)
                    .map(|n| n.host.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.client_via(cluster, &servers).await
    }

    /// The cluster's API through the first of `servers` that has a kubeconfig.
    async fn client_via(
        &self,
        cluster: &str,
        servers: &[String],
    ) -> Result<Option<kube::Client>, ProviderError> {
        if let Some(client) = self.clients.lock().await.get(cluster) {
            return Ok(Some(client.clone()));
        }
        let mut trouble = None;
        for host in servers {
            match self.client_through(cluster, host).await {
                Ok(Some(client)) => {
                    self.clients
                        .lock()
                        .await
                        .insert(cluster.to_owned(), client.clone());
                    return Ok(Some(client));
                }
                Ok(None) => {}
                Err(e) => trouble = trouble.or(Some(e)),
            }
        }
        match trouble {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    async fn client_through(
        &self,
        cluster: &str,
        host: &str,
    ) -> Result<Option<kube::Client>, ProviderError> {
        let session = self.pool.session(host).await?;
        let read = session
            .exec(&format!("cat {KUBECONFIG} 2>/dev/null"), None)
            .await?;
        if read.status != 0 || read.stdout.is_empty() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&read.stdout).into_owned();
        crate::tunnel::Tunnel::new(session)
            .client(&text)
            .await
            .map(Some)
            .map_err(|e| {
                ProviderError::Failed(format!(
                    "Cluster/{cluster}: Host/{host} has a k3s kubeconfig, but {e}"
                ))
            })
    }

    /// Forgets the cluster's client: its servers changed.
    async fn forget(&self, cluster: &str) {
        self.clients.lock().await.remove(cluster);
    }

    /// The binary a Cluster pins, checked against its SHA-256 here before it goes anywhere.
    async fn binary(&self, address: &str, source: &Source) -> Result<Arc<Vec<u8>>, ProviderError> {
        let bytes = if source.is_url() {
            let mut fetched = self.fetched.lock().await;
            match fetched.get(&source.source) {
                Some(bytes) => Arc::clone(bytes),
                None => {
                    let bytes = fetch(&source.source).await.map_err(|e| {
                        failed(
                            address,
                            format!("cannot fetch k3s from {}: {e}", source.source),
                        )
                    })?;
                    let bytes = Arc::new(bytes);
                    fetched.insert(source.source.clone(), Arc::clone(&bytes));
                    bytes
                }
            }
        } else {
            let path = source.source.trim_start_matches("./");
            match self.files.get(path) {
                Some(Ok(bytes)) => Arc::clone(bytes),
                Some(Err(e)) => {
                    return Err(failed(
                        address,
                        format!("cannot read k3s.source {path}: {e}"),
                    ));
                }
                None => {
                    return Err(failed(
                        address,
                        format!("k3s.source {path} was not read from the repository"),
                    ));
                }
            }
        };
        let got = sha256_hex(&bytes);
        if got != source.sha256 {
            return Err(failed(
                address,
                format!(
                    "the k3s binary at {} has sha256 {got}, not {} (k3s.sha256): it is not installed anywhere",
                    source.source, source.sha256
                ),
            ));
        }
        Ok(bytes)
    }

    async fn look(&self, host: &str) -> Result<Seen, ProviderError> {
        let session = self.pool.session(host).await?;
        let script = format!(
            "for u in k3s k3s-agent; do f=/etc/systemd/system/$u.service; \
               if [ -e $f ]; then echo \"unit $u\"; echo \"active $(systemctl is-active $u)\"; head -n1 $f; fi; done; \
             echo \"sha $(sha256sum {BINARY} 2>/dev/null | cut -d' ' -f1)\"; \
             echo \"version $({BINARY} --version 2>/dev/null | head -n1)\""
        );
        let output = session.exec(&script, None).await?;
        let mut seen = Seen::default();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(unit) = line.strip_prefix("unit ") {
                seen.unit = Some(unit.to_owned());
            } else if let Some(state) = line.strip_prefix("active ") {
                seen.active = state == "active";
            } else if let Some(written) = line.strip_prefix(MARKER) {
                seen.written = serde_json::from_str(written).ok();
            } else if let Some(sha) = line.strip_prefix("sha ") {
                seen.sha256 = sha.trim().to_owned();
            } else if let Some(version) = line.strip_prefix("version ") {
                seen.version = version_of(version);
            }
        }
        Ok(seen)
    }

    /// The Cluster as its nodes and API show it: absent when no node has a unit of nimbus's;
    /// a node whose service is not active or that the API does not list Ready is left out of
    /// `nodes` (so the plan puts it back), and `status` says why.
    pub async fn observe(
        &self,
        address: &str,
        desired: &Value,
    ) -> Result<Option<Value>, ProviderError> {
        let cluster = address.trim_start_matches("Cluster/");
        // The manifest's spec alone (a check of its own): its nodes and binary as the plan has
        // them, on a Network with their overlay addresses.
        let mut desired = desired.clone();
        if desired.get("nodes").is_none_or(Value::is_null)
            && let Some(nodes) = self.nodes.get(cluster)
        {
            let on_network = desired.get("network").is_some_and(Value::is_string);
            desired["nodes"] = nimbus_planner::topology::nodes_value(nodes, on_network);
        }
        if desired.get("k3s").is_none_or(Value::is_null)
            && let Some(source) = self.sources.get(cluster)
        {
            desired["k3s"] = json!({"source": source.source, "sha256": source.sha256});
        }
        let desired = &desired;
        let wanted = nodes_of(desired);
        // What each node shows, in the order of `wanted`.
        let seen: Vec<Seen> =
            futures_util::future::join_all(wanted.iter().map(|n| self.look(&n.host)))
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
        if seen.iter().all(|s| s.unit.is_none()) {
            return Ok(None);
        }
        // Readiness and labels as the API has them, through the servers the spec names (a
        // Cluster gone from the manifests has only its recorded spec). Units running and an
        // API that cannot be asked: not observed.
        let servers: Vec<String> = wanted
            .iter()
            .filter(|n| n.server)
            .map(|n| n.host.clone())
            .collect();
        // The API answers only through a server: with no server's unit active, the units
        // are what can be observed (over SSH), and the servers are put back.
        let running = wanted.iter().zip(&seen).any(|(n, s)| n.server && s.active);
        let listed = match self.client_via(cluster, &servers).await {
            Ok(Some(client)) => match api_nodes(&client).await {
                Ok(listed) => Ok(listed),
                Err(e) if running => {
                    return Err(ProviderError::Transient(format!(
                        "{address}: its API does not answer: {}",
                        crate::with_causes(&e)
                    )));
                }
                Err(e) => Err(crate::with_causes(&e)),
            },
            Ok(None) => Err("no server has a kubeconfig yet".to_owned()),
            Err(e) if running => return Err(e),
            Err(e) => Err(e.to_string()),
        };
        let mut nodes = serde_json::Map::new();
        let mut status = serde_json::Map::new();
        let source = Source::of(desired);
        let mut binary = None;
        let mut version = None;
        for (node, look) in wanted.iter().zip(&seen) {
            // The pinned binary, unless a node runs another one.
            if binary.is_none() || source.as_ref().is_some_and(|s| s.sha256 != look.sha256) {
                binary = Some(look.sha256.clone());
            }
            if version.is_none() && !look.version.is_empty() {
                version = Some(look.version.clone());
            }
            let state = match (&look.unit, look.active, &listed) {
                (None, _, _) => "not installed".to_owned(),
                (Some(_), false, _) => "service not active".to_owned(),
                // An active agent while no server runs: as its unit says, until a server
                // answers again (only the servers are started).
                (Some(_), true, Err(_)) if !running && !node.server => {
                    "active (no server runs to ask)".to_owned()
                }
                (Some(_), true, Err(e)) => format!("API not reachable: {e}"),
                (Some(_), true, Ok(listed)) => match listed.get(&node.host) {
                    None => "not listed by the API".to_owned(),
                    Some((false, _)) => "NotReady".to_owned(),
                    Some((true, _)) => "Ready".to_owned(),
                },
            };
            if (state == "Ready" || state.starts_with("active (no server"))
                && let Some(written) = &look.written
            {
                nodes.insert(node.host.clone(), shown(written, &listed, &node.host));
            }
            status.insert(node.host.clone(), json!(state));
        }
        // Nodes the API lists that the spec no longer selects, on Hosts nimbus reaches, running
        // a unit nimbus wrote: still members, so that the plan shows them leaving.
        if let Ok(api) = &listed {
            let others: Vec<&String> = api
                .keys()
                .filter(|h| !wanted.iter().any(|n| &n.host == *h))
                .filter(|h| self.pool.target(h).is_some())
                .collect();
            let looks = futures_util::future::join_all(others.iter().map(|h| self.look(h))).await;
            for (host, look) in others.into_iter().zip(looks) {
                if let Ok(Seen {
                    unit: Some(_),
                    written: Some(written),
                    ..
                }) = look
                {
                    nodes.insert(host.clone(), shown(&written, &listed, host));
                    status.insert(host.clone(), json!("not selected"));
                }
            }
        }
        let mut observed = desired.clone();
        observed["nodes"] = Value::Object(nodes);
        observed["status"] = Value::Object(status);
        if let (Some(source), Some(binary)) = (&source, binary) {
            observed["k3s"] = json!({"source": source.source, "sha256": binary});
        }
        if let Some(declared) = desired["version"].as_str() {
            let running = version.unwrap_or_default();
            observed["version"] = if running.contains(declared) {
                json!(declared)
            } else {
                json!(running)
            };
        }
        Ok(Some(observed))
    }

    /// Installs or updates the cluster: servers, then agents, one node at a time; nodes no
    /// longer declared leave it.
    pub async fn converge(
        &self,
        address: &str,
        before: Option<&Value>,
        after: &Value,
    ) -> Result<Value, ProviderError> {
        let cluster = address.trim_start_matches("Cluster/");
        let source = Source::of(after).ok_or_else(|| {
            failed(
                address,
                "has no k3s: {source, sha256}: give it on the Cluster or the Repository",
            )
        })?;
        let nodes = nodes_of(after);
        let Some(first) = nodes.iter().find(|n| n.server) else {
            return Err(failed(
                address,
                "selects no server: its `servers` match no Host",
            ));
        };
        let binary = self.binary(address, &source).await?;
        // The server that initialised the cluster stays its first: the one that already has a
        // kubeconfig, else the first declared.
        let mut init = first.clone();
        for node in nodes.iter().filter(|n| n.server) {
            let session = self.pool.session(&node.host).await?;
            let has = session
                .exec(
                    &format!("test -s {KUBECONFIG} && test -e {}", unit_path("k3s")),
                    None,
                )
                .await?;
            if has.status == 0 {
                init = node.clone();
                break;
            }
        }
        let join_at = init.address.clone().unwrap_or_else(|| {
            self.pool
                .target(&init.host)
                .map_or_else(|| init.host.clone(), |t| t.address.clone())
        });
        let join_url = format!("https://{join_at}:{API_PORT}");
        let version = after["version"].as_str();
        let interface = after["network"]
            .as_str()
            .and_then(|network| self.interfaces.get(network))
            .map(String::as_str);
        let servers: Vec<String> = nodes
            .iter()
            .filter(|n| n.server)
            .map(|n| n.host.clone())
            .collect();
        let mut order = vec![init.clone()];
        order.extend(nodes.iter().filter(|n| n.host != init.host).cloned());
        let mut token: Option<String> = None;
        for node in &order {
            let joins = node.host != init.host;
            if joins && token.is_none() {
                token = Some(self.read_token(address, &init.host).await?);
            }
            let flags = flags(node, joins.then_some(join_url.as_str()), interface);
            self.install_node(
                address,
                cluster,
                node,
                &flags,
                &binary,
                &source,
                version,
                if joins { token.as_deref() } else { None },
            )
            .await?;
            if !joins {
                self.forget(cluster).await;
            }
            self.wait_ready(address, cluster, node, &servers).await?;
        }
        // Nodes that were declared before and are not now leave the cluster.
        if let Some(before) = before {
            for gone in nodes_of(before)
                .into_iter()
                .filter(|n| !nodes.iter().any(|m| m.host == n.host))
            {
                self.remove_node(address, cluster, &gone, Some(&servers))
                    .await?;
            }
        }
        let mut applied = after.clone();
        if let Value::Object(map) = &mut applied {
            map.remove("status");
        }
        Ok(applied)
    }

    async fn read_token(&self, address: &str, host: &str) -> Result<String, ProviderError> {
        let session = self.pool.session(host).await?;
        let read = session.exec(&format!("cat {TOKEN}"), None).await?;
        let token = String::from_utf8_lossy(&read.stdout).trim().to_owned();
        if read.status != 0 || token.is_empty() {
            return Err(failed(
                address,
                format!("Host/{host} runs the k3s server but has no node token at {TOKEN} yet"),
            ));
        }
        Ok(token)
    }

    #[allow(clippy::too_many_arguments)]
    async fn install_node(
        &self,
        address: &str,
        cluster: &str,
        node: &Node,
        flags: &[String],
        binary: &[u8],
        source: &Source,
        version: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), ProviderError> {
        let host = &node.host;
        let session = self.pool.session(host).await?;
        let on = |message: String| failed(address, format!("Host/{host}: {message}"));
        // The binary: copied only when the node's differs, checked there before it is used.
        let present = session
            .exec(
                &format!("sha256sum {BINARY} 2>/dev/null | cut -d' ' -f1"),
                None,
            )
            .await?;
        let mut changed = false;
        if String::from_utf8_lossy(&present.stdout).trim() != source.sha256 {
            let check_version = version.map_or_else(String::new, |v| {
                format!(
                    "got=$($t --version 2>&1 | head -n1); case \"$got\" in *{v}*) ;; \
                       *) rm -f $t; echo \"the k3s at {shown} says '$got', not the version {v} the Cluster declares\" >&2; exit 4;; esac; ",
                    v = shell_quote(v),
                    shown = source.source.replace(['"', '\\', '$', '`', '\''], ""),
                )
            });
            let wrote = session
                .exec(
                    &format!(
                        "set -e; t={BINARY}.nimbus-new; mkdir -p /usr/local/bin; cat > $t; chmod 0755 $t; \
                         got=$(sha256sum $t | cut -d' ' -f1); \
                         if [ \"$got\" != {sha} ]; then rm -f $t; echo \"the copy has sha256 $got, not {sha}\" >&2; exit 3; fi; \
                         {check_version}mv $t {BINARY}",
                        sha = source.sha256
                    ),
                    Some(binary),
                )
                .await?;
            if wrote.status != 0 {
                return Err(on(format!(
                    "cannot install k3s at {BINARY}: {}",
                    String::from_utf8_lossy(&wrote.stderr).trim()
                )));
            }
            changed = true;
        }
        // The unit, and the token it joins with (read by systemd, root only).
        let unit = node.unit();
        let other = if node.server { "k3s-agent" } else { "k3s" };
        let marker = json!({
            "cluster": cluster,
            "role": if node.server { "server" } else { "agent" },
            "labels": node.labels,
            "address": node.address,
            "sha256": source.sha256,
        });
        let text = unit_text(&marker, unit, flags, token.is_some());
        // The token it joins with: read by systemd, root only.
        if let Some(token) = token {
            let env = format!("{}.env", unit_path(unit));
            let wrote = session
                .exec(
                    &format!(
                        "set -e; umask 077; cat > {env}.nimbus-new; \
                         if cmp -s {env}.nimbus-new {env}; then rm -f {env}.nimbus-new; else mv {env}.nimbus-new {env}; echo changed; fi"
                    ),
                    Some(format!("K3S_TOKEN={token}\n").as_bytes()),
                )
                .await?;
            if wrote.status != 0 {
                return Err(on(format!(
                    "cannot write {env}: {}",
                    String::from_utf8_lossy(&wrote.stderr).trim()
                )));
            }
            changed |= !wrote.stdout.is_empty();
        }
        // The unit, written, enabled and (re)started as any Service of nimbus's; the other
        // role's unit, when the host had it, goes first.
        let other_unit = unit_path(other);
        let script = format!(
            "if [ -e {other_unit} ]; then\n{remove}rm -f {other_unit}.env\nfi\nsystemctl reset-failed {unit} 2>/dev/null || true\n{service}",
            remove = remove_service_script(&format!("{other}.service"), true),
            service = service_script(
                &format!("{unit}.service"),
                &json!({ "unit": text }),
                changed
            ),
        );
        let started = session.exec(&script, Some(text.as_bytes())).await?;
        if started.status != 0 {
            return Err(on(format!(
                "{unit}.service does not start: {}{}",
                String::from_utf8_lossy(&started.stderr).trim(),
                journal(&session, unit).await
            )));
        }
        Ok(())
    }

    /// Waits until the API lists the node Ready, and gives it the Host's labels there (k3s
    /// sets `--node-label`s only when a node registers).
    async fn wait_ready(
        &self,
        address: &str,
        cluster: &str,
        node: &Node,
        servers: &[String],
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut last = String::from("no server has a kubeconfig yet");
        loop {
            match self.client_via(cluster, servers).await {
                Ok(Some(client)) => match api_nodes(&client).await {
                    Ok(listed) => match listed.get(&node.host) {
                        Some((true, labels)) => {
                            let differ = node.labels.iter().any(|(k, v)| labels.get(k) != Some(v));
                            if differ {
                                label(&client, node).await.map_err(|e| {
                                    failed(
                                        address,
                                        format!("Host/{}: cannot label its node: {e}", node.host),
                                    )
                                })?;
                            }
                            return Ok(());
                        }
                        Some((false, _)) => last = "the API lists it NotReady".to_owned(),
                        None => last = "the API does not list it".to_owned(),
                    },
                    Err(e) => last = format!("the API does not answer: {}", crate::with_causes(&e)),
                },
                Ok(None) => {}
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() > self.ready_timeout {
                let session = self.pool.session(&node.host).await?;
                return Err(failed(
                    address,
                    format!(
                        "Host/{}: k3s did not come up in {} s ({last}){}",
                        node.host,
                        self.ready_timeout.as_secs(),
                        journal(&session, node.unit()).await
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Takes a node out: its unit, binary and k3s's data on the host, then its Node object
    /// (through `servers`, the cluster's that stay).
    pub async fn remove_node(
        &self,
        address: &str,
        cluster: &str,
        node: &Node,
        servers: Option<&[String]>,
    ) -> Result<(), ProviderError> {
        let session = self.pool.session(&node.host).await?;
        let unit = node.unit();
        let stopped = session
            .exec(
                &format!(
                    "for u in k3s k3s-agent; do f=/etc/systemd/system/$u.service; \
                       if [ -e $f ] && head -n1 $f | grep -q '^{MARKER}'; then systemctl disable --now $u >/dev/null 2>&1; rm -f $f $f.env; fi; done; \
                     systemctl daemon-reload; rm -rf /var/lib/rancher/k3s /etc/rancher/k3s {BINARY}"
                ),
                None,
            )
            .await?;
        if stopped.status != 0 {
            return Err(failed(
                address,
                format!(
                    "Host/{}: cannot stop {unit}: {}",
                    node.host,
                    String::from_utf8_lossy(&stopped.stderr).trim()
                ),
            ));
        }
        if let Some(servers) = servers
            && let Ok(Some(client)) = self.client_via(cluster, servers).await
        {
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
            match nodes.delete(&node.host, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    return Err(failed(
                        address,
                        format!("Host/{}: cannot delete its Node: {e}", node.host),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Uninstalls the whole cluster: agents, then servers.
    pub async fn remove(&self, address: &str, spec: &Value) -> Result<(), ProviderError> {
        let cluster = address.trim_start_matches("Cluster/");
        let mut nodes = nodes_of(spec);
        nodes.reverse();
        for node in &nodes {
            self.remove_node(address, cluster, node, None).await?;
        }
        self.forget(cluster).await;
        Ok(())
    }
}

/// The k3s command line of a node: `server` or `agent`, its name, labels, address (and the
/// WireGuard interface flannel is to use, on a Network), and the server it joins (none for the
/// server that initialises the cluster).
pub fn flags(node: &Node, join: Option<&str>, interface: Option<&str>) -> Vec<String> {
    let mut flags = vec![
        if node.server { "server" } else { "agent" }.to_owned(),
        "--node-name".to_owned(),
        node.host.clone(),
    ];
    for (key, value) in &node.labels {
        flags.push("--node-label".to_owned());
        flags.push(format!("{key}={value}"));
    }
    if let Some(address) = &node.address {
        flags.push("--node-ip".to_owned());
        flags.push(address.clone());
        if let Some(interface) = interface {
            flags.push("--flannel-iface".to_owned());
            flags.push(interface.to_owned());
        }
    }
    match join {
        Some(url) => {
            flags.push("--server".to_owned());
            flags.push(url.to_owned());
        }
        // Embedded etcd from the start, so that servers can join later.
        None => flags.push("--cluster-init".to_owned()),
    }
    flags
}

/// A node's unit, as k3s's own installer writes it, with nimbus's marker on its first line.
fn unit_text(marker: &Value, unit: &str, flags: &[String], with_token: bool) -> String {
    let command: Vec<String> = std::iter::once(BINARY.to_owned())
        .chain(flags.iter().map(|f| systemd_quote(f)))
        .collect();
    let environment = if with_token {
        format!("EnvironmentFile=-{}.env\n", unit_path(unit))
    } else {
        String::new()
    };
    format!(
        "{MARKER}{marker}\n\
         [Unit]\n\
         Description=k3s ({unit}), managed by nimbus\n\
         Documentation=https://k3s.io\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=exec\n\
         {environment}\
         KillMode=process\n\
         Delegate=yes\n\
         LimitNOFILE=1048576\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         TasksMax=infinity\n\
         TimeoutStartSec=0\n\
         Restart=always\n\
         RestartSec=5s\n\
         ExecStartPre=-/sbin/modprobe br_netfilter\n\
         ExecStartPre=-/sbin/modprobe overlay\n\
         ExecStart={}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        command.join(" ")
    )
}

/// The last lines of a unit's journal, for a failure's message.
async fn journal(session: &SshSession, unit: &str) -> String {
    let lines = session.journal(unit, 5).await;
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last log lines: {}", lines.replace('\n', " | "))
    }
}

/// The version in the first line `k3s --version` prints (`k3s version v1.33.1+k3s1 (abc123)`),
/// else that line as it is.
fn version_of(line: &str) -> String {
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "version"
            && let Some(version) = words.next()
        {
            return version.to_owned();
        }
    }
    line.trim().to_owned()
}

/// A URL's body, fetched by nimbus (then copied to the nodes over SSH).
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "k3s_tests.rs"]
mod tests;
