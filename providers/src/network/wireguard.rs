//! A Network's interface on the host the agent runs on (SPEC §11), with wireguard-control
//! (LGPL-2.1-or-later, see docs/network.md): the kernel's WireGuard when the host has it, else
//! wireguard-go in userspace, run in the foreground by a systemd unit of ours.
//!
//! What lives on the host, under [`DIR`]:
//! - `IFACE.key`: the private key, made here once (mode 0600); it never leaves the host: the
//!   agent answers with the public key only;
//! - `IFACE.json`: the configuration last applied (address, port, peers with their public
//!   keys), which `nimbus agent --network-up IFACE` applies again at boot;
//! - `/etc/systemd/system/nimbus-wg-IFACE.service`: the unit that brings the interface up at
//!   boot (wireguard-go in the foreground and the configuration after it, or the kernel's link).
//!
//! A change can be armed with a confirm-or-revert timer: the previous configuration is kept,
//! and unless [`Host::confirm`] is called with its token in time, the agent restores it by
//! itself (or takes the interface down when there was none).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

use crate::ProviderError;

/// Where the keys and configurations live on a host.
pub const DIR: &str = "/var/lib/nimbus/wireguard";

/// One peer as the agent configures it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerConfig {
    pub public_key: String,
    /// The peer's overlay address: its allowed IP, as a host route.
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<u16>,
}

/// An interface's whole configuration, as kept in `IFACE.json` (no private key in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceConfig {
    pub interface: String,
    /// `10.106.103.1/24`: the member's address and the subnet's prefix (the route to the mesh).
    pub address: String,
    pub listen_port: u16,
    pub peers: Vec<PeerConfig>,
}

/// A confirm-or-revert timer on a change: its token and how long nimbus has to confirm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arm {
    pub token: String,
    pub timeout_seconds: u64,
}

/// The host's WireGuard side, with `root` as `/` (a directory of its own in unit tests).
#[derive(Debug, Clone)]
pub struct Host {
    dir: PathBuf,
    units: PathBuf,
    /// The binary the boot unit runs (`nimbus agent --network-up IFACE`).
    agent: PathBuf,
    state: Arc<Mutex<Pending>>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Armed changes not confirmed yet, by token: the interface, and whether the change is
    /// in effect yet (a deferred one lands after the answer).
    armed: HashMap<String, (String, bool)>,
    /// Tokens whose change was rolled back, by interface: the last one of each.
    rolled_back: BTreeMap<String, String>,
}

fn failed(message: impl Into<String>) -> ProviderError {
    ProviderError::Failed(message.into())
}

fn run(program: &str, args: &[&str]) -> Result<String, ProviderError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| failed(format!("cannot run {program}: {e}")))?;
    if !output.status.success() {
        return Err(failed(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn interface_name(name: &str) -> Result<InterfaceName, ProviderError> {
    name.parse()
        .map_err(|e| failed(format!("`{name}` is not an interface name: {e}")))
}

/// Which WireGuard this host has: the kernel's when its module is there, else wireguard-go.
fn backend() -> Result<Backend, ProviderError> {
    if Path::new("/sys/module/wireguard").exists() {
        return Ok(Backend::Kernel);
    }
    if which("wireguard-go").is_some() {
        return Ok(Backend::Userspace);
    }
    Err(failed(
        "this host has neither the kernel's WireGuard nor wireguard-go: install one (Debian: `apt install wireguard-go`)",
    ))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_else(|| vec![PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn write_private(path: &Path, text: &str) -> Result<(), ProviderError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| failed(format!("cannot write {}: {e}", tmp.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| failed(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

impl Host {
    /// The host's real paths, with the running binary as the boot unit's agent.
    pub fn system() -> Host {
        Host::new(
            DIR,
            "/etc/systemd/system",
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/nimbus")),
        )
    }

    pub fn new(dir: impl Into<PathBuf>, units: impl Into<PathBuf>, agent: PathBuf) -> Host {
        Host {
            dir: dir.into(),
            units: units.into(),
            agent,
            state: Arc::default(),
        }
    }

    fn key_path(&self, interface: &str) -> PathBuf {
        self.dir.join(format!("{interface}.key"))
    }

    fn config_path(&self, interface: &str) -> PathBuf {
        self.dir.join(format!("{interface}.json"))
    }

    fn unit(interface: &str) -> String {
        format!("nimbus-wg-{interface}.service")
    }

    fn private_key(&self, interface: &str) -> Option<Key> {
        let text = std::fs::read_to_string(self.key_path(interface)).ok()?;
        Key::from_base64(text.trim()).ok()
    }

    /// The interface's public key, when its private key is there.
    pub fn public_key(&self, interface: &str) -> Option<String> {
        self.private_key(interface)
            .map(|k| k.get_public().to_base64())
    }

    /// The interface's public key, its private key made first when there is none.
    pub fn ensure_key(&self, interface: &str) -> Result<String, ProviderError> {
        // One maker at a time: two applies at once must end with one key.
        let _guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = self.private_key(interface) {
            return Ok(key.get_public().to_base64());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| failed(format!("cannot make {}: {e}", self.dir.display())))?;
        let key = Key::generate_private();
        write_private(&self.key_path(interface), &key.to_base64())?;
        Ok(key.get_public().to_base64())
    }

    fn saved(&self, interface: &str) -> Option<InterfaceConfig> {
        let text = std::fs::read_to_string(self.config_path(interface)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// What the host has of `interface`: `None` when nimbus has nothing of it there.
    pub fn observe(&self, interface: &str) -> Result<Option<Value>, ProviderError> {
        let name = interface_name(interface)?;
        let key = self.private_key(interface);
        let device = [Backend::Kernel, Backend::Userspace]
            .into_iter()
            .find_map(|b| Device::get(&name, b).ok());
        let unit_path = self.units.join(Self::unit(interface));
        if key.is_none() && device.is_none() && !unit_path.exists() {
            return Ok(None);
        }
        let (addresses, up) = link(interface);
        let rolled_back = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rolled_back
            .get(interface)
            .cloned();
        let peers: Vec<Value> = device
            .as_ref()
            .map(|d| {
                d.peers
                    .iter()
                    .map(|p| {
                        let handshake = p.stats.last_handshake_time.and_then(|t| {
                            t.duration_since(std::time::UNIX_EPOCH)
                                .ok()
                                .map(|d| d.as_secs())
                        });
                        json!({
                            "publicKey": p.config.public_key.to_base64(),
                            "endpoint": p.config.endpoint.map(|e| e.to_string()),
                            "allowedIps": p.config.allowed_ips.iter()
                                .map(|ip| format!("{}/{}", ip.address, ip.cidr))
                                .collect::<Vec<_>>(),
                            "keepalive": p.config.persistent_keepalive_interval.filter(|k| *k > 0),
                            "latestHandshake": handshake,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(json!({
            "interface": interface,
            "exists": device.is_some(),
            "backend": device.as_ref().map(|d| match d.backend {
                Backend::Userspace => "userspace",
                _ => "kernel",
            }),
            "publicKey": key.as_ref().map(|k| k.get_public().to_base64()),
            "keyKept": match (&device, &key) {
                (Some(d), Some(k)) => d.private_key.as_ref() == Some(k),
                _ => false,
            },
            "listenPort": device.as_ref().and_then(|d| d.listen_port),
            "addresses": addresses,
            "up": up,
            "peers": peers,
            "boot": unit_path.exists() && self.saved(interface).is_some(),
            "rolledBack": rolled_back,
        })))
    }

    /// Applies `config`: key (made when missing), the boot unit and saved configuration, the
    /// interface, its address and peers. With `arm`, the previous configuration comes back by
    /// itself unless confirmed in time.
    pub fn apply(&self, config: &InterfaceConfig, arm: Option<&Arm>) -> Result<(), ProviderError> {
        Self::check(config)?;
        if let Some(arm) = arm {
            self.arm(&config.interface, self.saved(&config.interface), arm);
        }
        self.configure(config)?;
        if let Some(arm) = arm {
            self.landed(&arm.token);
        }
        Ok(())
    }

    /// Arms the timer now and answers; the change itself lands a moment later, on a thread of
    /// its own (the answer must leave before the change can cut its path).
    pub fn apply_deferred(
        &self,
        config: InterfaceConfig,
        arm: Arm,
    ) -> Result<String, ProviderError> {
        Self::check(&config)?;
        backend()?;
        let public = self.ensure_key(&config.interface)?;
        self.arm(&config.interface, self.saved(&config.interface), &arm);
        let host = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            match host.configure(&config) {
                Ok(()) => host.landed(&arm.token),
                // Not confirmed, it is rolled back when the timer fires.
                Err(e) => {
                    tracing::error!(interface = %config.interface, error = %e, "the deferred change failed")
                }
            }
        });
        Ok(public)
    }

    fn landed(&self, token: &str) {
        if let Some(entry) = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .armed
            .get_mut(token)
        {
            entry.1 = true;
        }
    }

    /// Refuses a configuration that cannot be applied, before anything is touched.
    fn check(config: &InterfaceConfig) -> Result<(), ProviderError> {
        interface_name(&config.interface)?;
        let valid = config.address.split_once('/').is_some_and(|(ip, prefix)| {
            ip.parse::<IpAddr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 128)
        });
        if !valid {
            return Err(failed(format!(
                "`{}` is not an address with its prefix, such as 10.106.103.1/24",
                config.address
            )));
        }
        Ok(())
    }

    fn configure(&self, config: &InterfaceConfig) -> Result<(), ProviderError> {
        Self::check(config)?;
        let interface = config.interface.as_str();
        let backend = backend()?;
        self.ensure_key(interface)?;
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rolled_back
            .remove(interface);
        let text =
            serde_json::to_string_pretty(config).map_err(|e| ProviderError::Bug(e.to_string()))?;
        write_private(&self.config_path(interface), &text)?;
        self.install_unit(interface, backend)?;
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", &Self::unit(interface)])
            .status()
            .is_ok_and(|s| s.success());
        if active {
            self.up(interface)
        } else {
            // Starting the unit brings the interface up with the configuration just saved.
            run("systemctl", &["start", &Self::unit(interface)]).map(drop)
        }
    }

    fn install_unit(&self, interface: &str, backend: Backend) -> Result<(), ProviderError> {
        let agent = self.agent.display();
        let unit = match backend {
            Backend::Userspace => {
                let go = which("wireguard-go").unwrap_or_else(|| PathBuf::from("wireguard-go"));
                format!(
                    "[Unit]\nDescription=nimbus: WireGuard interface {interface} (wireguard-go)\n\
                     After=network.target\n\n[Service]\n\
                     # wireguard-go forks without end unless told to stay in the foreground\n\
                     Environment=WG_PROCESS_FOREGROUND=1\n\
                     ExecStart={go} -f {interface}\n\
                     ExecStartPost={agent} agent --network-up {interface}\n\
                     Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n",
                    go = go.display()
                )
            }
            _ => format!(
                "[Unit]\nDescription=nimbus: WireGuard interface {interface} (kernel)\n\
                 After=network.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 ExecStart={agent} agent --network-up {interface}\n\
                 ExecStop=/sbin/ip link delete {interface}\n\n[Install]\nWantedBy=multi-user.target\n"
            ),
        };
        let path = self.units.join(Self::unit(interface));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(unit.as_str()) {
            std::fs::write(&path, unit)
                .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
            run("systemctl", &["daemon-reload"])?;
        }
        run("systemctl", &["enable", "--quiet", &Self::unit(interface)]).map(drop)
    }

    /// Brings `interface` up from its saved configuration and key: what the boot unit runs,
    /// and what an apply does when the unit already runs.
    pub fn up(&self, interface: &str) -> Result<(), ProviderError> {
        let config = self.saved(interface).ok_or_else(|| {
            failed(format!(
                "no configuration of {interface} in {}",
                self.dir.display()
            ))
        })?;
        let key = self
            .private_key(interface)
            .ok_or_else(|| failed(format!("no key of {interface} in {}", self.dir.display())))?;
        let name = interface_name(interface)?;
        let backend = backend()?;
        match backend {
            Backend::Userspace => {
                // The unit's wireguard-go makes the socket; wait for it rather than let the
                // crate start a daemonising one of its own.
                let socket = PathBuf::from(format!("/var/run/wireguard/{interface}.sock"));
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !socket.exists() {
                    if std::time::Instant::now() > deadline {
                        return Err(failed(format!(
                            "wireguard-go did not make {} within 10 s",
                            socket.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            _ => {
                if Device::get(&name, Backend::Kernel).is_err() {
                    run("ip", &["link", "add", interface, "type", "wireguard"])?;
                }
            }
        }
        // Peers are changed one by one, not replaced: a peer with no endpoint of its own keeps
        // the one it was last seen at, and established sessions stay.
        let mut update = DeviceUpdate::new()
            .set_private_key(key)
            .set_listen_port(config.listen_port);
        if let Ok(device) = Device::get(&name, backend) {
            for peer in &device.peers {
                let wanted = config
                    .peers
                    .iter()
                    .any(|p| p.public_key == peer.config.public_key.to_base64());
                if !wanted {
                    update = update.remove_peer_by_key(&peer.config.public_key);
                }
            }
        }
        for peer in &config.peers {
            let public = Key::from_base64(&peer.public_key)
                .map_err(|_| failed(format!("`{}` is not a public key", peer.public_key)))?;
            let prefix = if peer.address.is_ipv4() { 32 } else { 128 };
            let mut builder = PeerConfigBuilder::new(&public)
                .replace_allowed_ips()
                .add_allowed_ip(peer.address, prefix);
            if let Some(endpoint) = peer.endpoint {
                builder = builder.set_endpoint(endpoint);
            }
            builder = match peer.keepalive {
                Some(seconds) if seconds > 0 => builder.set_persistent_keepalive_interval(seconds),
                _ => builder.unset_persistent_keepalive(),
            };
            update = update.add_peer(builder);
        }
        update
            .apply(&name, backend)
            .map_err(|e| failed(format!("cannot configure {interface}: {e}")))?;
        // The address: the one configured, and no other.
        let (addresses, up) = link(interface);
        for other in addresses.iter().filter(|a| **a != config.address) {
            run("ip", &["address", "del", other, "dev", interface])?;
        }
        if !addresses.contains(&config.address) {
            run("ip", &["address", "add", &config.address, "dev", interface])?;
        }
        if !up {
            run("ip", &["link", "set", interface, "up"])?;
        }
        // One datagram toward each peer (the discard port) starts its handshake now rather
        // than at the next keepalive: a peer that moved learns where this member is at once.
        if let Ok(socket) = std::net::UdpSocket::bind(("0.0.0.0", 0)) {
            for peer in config.peers.iter().filter(|p| p.address.is_ipv4()) {
                let _ = socket.send_to(&[0], SocketAddr::new(peer.address, 9));
            }
        }
        Ok(())
    }

    /// Takes `interface` down and forgets it: unit, configuration and key.
    pub fn remove(&self, interface: &str) -> Result<(), ProviderError> {
        let unit = Self::unit(interface);
        let unit_path = self.units.join(&unit);
        if unit_path.exists() {
            let _ = run("systemctl", &["disable", "--now", "--quiet", &unit]);
            std::fs::remove_file(&unit_path)
                .map_err(|e| failed(format!("cannot remove {}: {e}", unit_path.display())))?;
            run("systemctl", &["daemon-reload"])?;
        }
        self.down(interface);
        for path in [self.config_path(interface), self.key_path(interface)] {
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(|e| failed(format!("cannot remove {}: {e}", path.display())))?;
            }
        }
        Ok(())
    }

    /// The interface gone, whichever backend made it.
    fn down(&self, interface: &str) {
        if let Ok(name) = interface_name(interface) {
            for backend in [Backend::Userspace, Backend::Kernel] {
                if let Ok(device) = Device::get(&name, backend) {
                    let _ = device.delete();
                }
            }
        }
        let _ = run("ip", &["link", "delete", interface]);
    }

    fn arm(&self, interface: &str, previous: Option<InterfaceConfig>, arm: &Arm) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .armed
            .insert(arm.token.clone(), (interface.to_owned(), false));
        let host = self.clone();
        let token = arm.token.clone();
        let interface = interface.to_owned();
        let timeout = Duration::from_secs(arm.timeout_seconds);
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            let due = host
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .armed
                .remove(&token)
                .is_some();
            if !due {
                return;
            }
            let restored = match &previous {
                Some(config) => host.configure(config),
                None => host.remove(&interface),
            };
            match restored {
                Ok(()) => {
                    tracing::warn!(%interface, %token, "not confirmed in time: the previous configuration is restored")
                }
                Err(e) => {
                    tracing::error!(%interface, %token, error = %e, "not confirmed in time, and the previous configuration cannot be restored")
                }
            }
            host.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rolled_back
                .insert(interface, token);
        });
    }

    /// Confirms an armed change: it stays. An error when there is none with that token (it was
    /// rolled back already, or never armed).
    pub fn confirm(&self, token: &str) -> Result<(), ProviderError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.armed.get(token) {
            Some((_, true)) => {
                state.armed.remove(token);
                Ok(())
            }
            Some((interface, false)) => Err(ProviderError::Transient(format!(
                "the change of {interface} is not in effect yet"
            ))),
            None => Err(failed(format!(
                "no change waits for confirmation with token {token} (rolled back already?)"
            ))),
        }
    }
}

/// The interface's addresses (`10.106.103.1/24`) and whether it is up, from `ip -j address`.
fn link(interface: &str) -> (Vec<String>, bool) {
    let Ok(text) = run("ip", &["-j", "address", "show", "dev", interface]) else {
        return (Vec::new(), false);
    };
    let links: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    let Some(link) = links.first() else {
        return (Vec::new(), false);
    };
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|v| v == "UP"));
    let addresses = link["addr_info"]
        .as_array()
        .map(|infos| {
            infos
                .iter()
                .filter(|i| i["scope"] != "link")
                .filter_map(|i| Some(format!("{}/{}", i["local"].as_str()?, i["prefixlen"])))
                .collect()
        })
        .unwrap_or_default();
    (addresses, up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_only_its_public_half_is_answered() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let host = Host::new(dir.path(), dir.path(), PathBuf::from("/bin/true"));
        let first = host.ensure_key("wg-test").unwrap_or_else(|e| panic!("{e}"));
        let second = host.ensure_key("wg-test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, second);
        let private = std::fs::read_to_string(dir.path().join("wg-test.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(private.trim(), first);
        let key = Key::from_base64(private.trim()).unwrap_or_else(|_| panic!("not a key"));
        assert_eq!(key.get_public().to_base64(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("wg-test.key"))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_confirmed_change_stays_and_a_token_confirms_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let host = Host::new(dir.path(), dir.path(), PathBuf::from("/bin/true"));
        host.arm(
            "wg-test",
            None,
            &Arm {
                token: "t1".into(),
                timeout_seconds: 3600,
            },
        );
        // Not in effect yet: not confirmed.
        assert!(matches!(
            host.confirm("t1"),
            Err(ProviderError::Transient(_))
        ));
        host.landed("t1");
        assert!(host.confirm("t1").is_ok());
        assert!(host.confirm("t1").is_err());
        assert!(host.confirm("other").is_err());
    }
}
