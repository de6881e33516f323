//! VMs over SSH (SPEC §11): qemu under a systemd unit per VM, `nimbus-vm-NAME.service`, with
//! a QMP socket reached through the host's SSH connection (`direct-streamlocal`), KVM when
//! `/dev/kvm` is usable and TCG otherwise. What lives on the host, under `DIR/NAME/`:
//! `disk.qcow2` (an overlay on `disk.image`, or a blank disk, grown to `disk.size`),
//! `spec.json` (the spec last applied), `qmp.sock`, `serial.log`, and `created` when nimbus
//! made the disk (only then is it removed with the VM).
//!
//! Observed: the spec last applied, and `state` when the VM is not running (a VM stopped or
//! paused by hand is drift). A change of cpus, memory, boot or ports rewrites the unit and
//! restarts the VM; a new image replaces it (the planner's rule). Delete: an ACPI power-off
//! through QMP, a stop after 20 s, then the unit and what nimbus made go.

use std::time::Duration;

use nimbus_planner::plan::{Action, Change, KindSchema, Observed};
use nimbus_schemas::{Kind, VmRuntime, VmSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::quote::shell_quote;
use crate::ssh::SshSession;
use crate::{Applied, ProviderError};

/// Where VMs live on a host.
pub const DIR: &str = "/var/lib/nimbus/vms";

/// How long a VM has to power off after the ACPI button before it is stopped.
const POWERDOWN: Duration = Duration::from_secs(20);

/// What is compared: the spec as applied, and whether the VM runs.
pub fn kind_schema() -> KindSchema {
    KindSchema {
        compare_fields: Some(
            [
                "host",
                "cpus",
                "memory",
                "disk",
                "boot",
                "ports",
                "bridge",
                "runtime",
                "cloudInit",
                "state",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        replace_fields: ["disk.image", "disk.sha256", "runtime", "host"]
            .map(str::to_owned)
            .to_vec(),
        // cloudInit may be a secret: its value is written into the seed on the host only.
        delivers_secrets: true,
        ..KindSchema::default_for(Kind::Vm)
    }
}

/// The cloud-init user-data of a spec as the provider is given it: the text, or the value of
/// its secret (delivered in the change, never kept); `None` without `cloudInit`.
fn user_data(address: &str, desired: &Value) -> Result<Option<String>, ProviderError> {
    match desired.get("cloudInit") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Object(map)) => match map.get("value").and_then(Value::as_str) {
            Some(value) => Ok(Some(value.to_owned())),
            None => Err(failed(
                address,
                "the value of cloudInit's secret was not delivered to the provider",
            )),
        },
        Some(other) => Err(failed(
            address,
            format!("cloudInit must be text or {{secret: NAME}}, not {other}"),
        )),
    }
}

/// The spec without any secret's value: what is kept on the host (`spec.json`) and in state.
fn without_values(desired: &Value) -> Value {
    let mut kept = desired.clone();
    if let Some(Value::Object(map)) = kept.get_mut("cloudInit") {
        map.remove("value");
    }
    kept
}

/// The NoCloud seed's file name for this user-data: a new seed is a new file, so that the
/// unit (which names it) changes and the VM restarts onto it.
fn seed_name(name: &str, user_data: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{name}\n{user_data}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("seed-{hex}.iso")
}

/// Writes the NoCloud seed (user-data from standard input, never on a command line; meta-data
/// with an instance-id that changes with the user-data, so that cloud-init runs it again) as
/// an ISO labelled `cidata`, readable by root only.
async fn write_seed(
    session: &SshSession,
    address: &str,
    name: &str,
    seed: &str,
    user_data: &str,
) -> Result<(), ProviderError> {
    let dir = format!("{DIR}/{name}");
    let instance = seed.trim_start_matches("seed-").trim_end_matches(".iso");
    let meta = format!("instance-id: {name}-{instance}\nlocal-hostname: {name}\n");
    let script = format!(
        "set -e; umask 077; mkdir -p {dir}/seed; cat > {dir}/seed/user-data; printf '%s' {meta} > {dir}/seed/meta-data; \
         if command -v genisoimage >/dev/null; then make='genisoimage'; \
         elif command -v xorriso >/dev/null; then make='xorriso -as genisoimage'; \
         else rm -rf {dir}/seed; echo 'no tool to make the cloud-init seed on this host: install genisoimage (or xorriso)' >&2; exit 3; fi; \
         $make -quiet -output {dir}/{seed}.new -volid cidata -joliet -rock {dir}/seed/user-data {dir}/seed/meta-data; \
         rm -rf {dir}/seed; mv {dir}/{seed}.new {dir}/{seed}; \
         for old in {dir}/seed-*.iso; do [ \"$old\" = {dir}/{seed} ] || rm -f \"$old\"; done",
        meta = shell_quote(&meta),
    );
    let output = session.exec(&script, Some(user_data.as_bytes())).await?;
    if output.status != 0 {
        return Err(failed(
            address,
            format!(
                "cannot write the cloud-init seed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(())
}

fn name_of(address: &str) -> &str {
    address.strip_prefix("VM/").unwrap_or(address)
}

fn unit_of(name: &str) -> String {
    format!("nimbus-vm-{name}.service")
}

fn failed(address: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(format!("{address}: {message}"))
}

/// A failure caused by `field` of the VM's spec: apply shows where the manifest writes it.
fn failed_at(address: &str, field: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::field(field, format!("{address}: {message}"))
}

/// The VM's host: the one it names, or the one the scheduler placed it on (the plan's spec
/// carries it).
pub fn host_in(spec: &Value) -> Option<&str> {
    spec.get("host").and_then(Value::as_str)
}

/// The qemu command line of a VM (`accel` is `kvm` or `tcg`).
pub(crate) fn command_line(
    name: &str,
    spec: &VmSpec,
    accel: &str,
    seed: Option<&str>,
) -> Vec<String> {
    let dir = format!("{DIR}/{name}");
    let mut args: Vec<String> = [
        "/usr/bin/qemu-system-x86_64",
        "-name",
        name,
        "-accel",
        accel,
        "-M",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend([
        "-m".to_owned(),
        format!("{}M", spec.memory.bytes / (1024 * 1024)),
        "-smp".to_owned(),
        spec.cpus.to_string(),
        "-serial".to_owned(),
        format!("file:{dir}/serial.log"),
        "-qmp".to_owned(),
        format!("unix:{dir}/qmp.sock,server=on,wait=off"),
        "-drive".to_owned(),
        format!("file={dir}/disk.qcow2,if=virtio,format=qcow2"),
    ]);
    if let Some(seed) = seed {
        args.extend([
            "-drive".to_owned(),
            format!("file={dir}/{seed},if=virtio,format=raw,readonly=on"),
        ]);
    }
    if let Some(boot) = &spec.boot {
        args.extend(["-kernel".to_owned(), boot.kernel.clone()]);
        if let Some(initrd) = &boot.initrd {
            args.extend(["-initrd".to_owned(), initrd.clone()]);
        }
        if let Some(cmdline) = &boot.cmdline {
            args.extend(["-append".to_owned(), cmdline.clone()]);
        }
    }
    let netdev = match &spec.bridge {
        Some(_) => format!("tap,id=n0,ifname={},script=no,downscript=no", tap_of(name)),
        None => {
            let forwards: String = spec
                .ports
                .iter()
                .map(|p| format!(",hostfwd=tcp::{}-:{}", p.host_port.0, p.port.0))
                .collect();
            format!("user,id=n0{forwards}")
        }
    };
    args.extend([
        "-netdev".to_owned(),
        netdev,
        "-device".to_owned(),
        format!("virtio-net-pci,netdev=n0,mac={}", mac_of(name)),
    ]);
    args
}

/// The VM's tap device on its host (at most 15 characters, as Linux wants).
fn tap_of(name: &str) -> String {
    format!("nvm-{}", &hex_digest(name)[..8])
}

/// The VM's MAC address: qemu's prefix 52:54:00, then three bytes of its name's digest, the
/// same on every run (for DHCP reservations).
pub fn mac_of(name: &str) -> String {
    let hex = hex_digest(name);
    format!("52:54:00:{}:{}:{}", &hex[0..2], &hex[2..4], &hex[4..6])
}

fn hex_digest(text: &str) -> String {
    crate::sha256_hex(text.as_bytes())
}

/// The unit's lines that plug the tap into the bridge before qemu starts (the bridge made,
/// and brought up, when the host has none of that name) and take it out after.
fn tap_lines(name: &str, bridge: &str) -> String {
    let tap = tap_of(name);
    let br = bridge.replace(['"', '\\', '$', '%', '\'', ' '], "");
    format!(
        "ExecStartPre=/bin/sh -c 'ip link show {br} >/dev/null 2>&1 || ip link add {br} type bridge; ip link set {br} up; ip link del {tap} 2>/dev/null; ip tuntap add dev {tap} mode tap && ip link set {tap} master {br} up'\n\
         ExecStopPost=-/bin/sh -c 'ip link del {tap}'\n"
    )
}

/// The unit: systemd's quoting of each argument (`"..."` with `\` and `"` escaped, `%` and `$`
/// doubled).
pub(crate) fn unit(name: &str, args: &[String], bridge: Option<&str>) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("\"{}\"", crate::quote::systemd_escape(a)))
        .collect();
    format!(
        "[Unit]\nDescription=nimbus: VM {name}\nAfter=network.target\n\n[Service]\n{}ExecStart={}\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n",
        bridge.map_or(String::new(), |b| tap_lines(name, b)),
        quoted.join(" ")
    )
}

/// The second guard (docs/security.md): boot paths and the kernel command line that
/// validation would refuse are refused here too, before the unit is written.
fn refuse_unsafe(address: &str, spec: &VmSpec) -> Result<(), ProviderError> {
    use nimbus_planner::fields::{cmdline_problem, config_path_problem};
    let Some(boot) = &spec.boot else {
        return Ok(());
    };
    let paths = [
        ("boot.kernel", Some(&boot.kernel)),
        ("boot.initrd", boot.initrd.as_ref()),
    ];
    for (field, path) in paths {
        if let Some(problem) = path.and_then(|p| config_path_problem(p)) {
            return Err(failed_at(address, field, format!("{field} {problem}")));
        }
    }
    if let Some(problem) = boot.cmdline.as_deref().and_then(cmdline_problem) {
        return Err(failed_at(
            address,
            "boot.cmdline",
            format!("boot.cmdline {problem}"),
        ));
    }
    Ok(())
}

/// One QMP command on the VM's socket, through the SSH connection: its `return`.
pub async fn qmp(session: &SshSession, name: &str, command: &str) -> Result<Value, ProviderError> {
    let stream = session
        .open_socket(&format!("{DIR}/{name}/qmp.sock"))
        .await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let lost = |e: std::io::Error| ProviderError::Transient(format!("QMP of VM/{name}: {e}"));
    let answer =
        async |lines: &mut tokio::io::Lines<BufReader<_>>| -> Result<Value, ProviderError> {
            loop {
                let Some(line) = lines.next_line().await.map_err(lost)? else {
                    return Err(ProviderError::Transient(format!(
                        "QMP of VM/{name}: the socket closed"
                    )));
                };
                let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if let Some(error) = value.get("error") {
                    return Err(ProviderError::Failed(format!("QMP of VM/{name}: {error}")));
                }
                if let Some(ret) = value.get("return") {
                    return Ok(ret.clone());
                }
                // The greeting and events.
                if value.get("QMP").is_some() {
                    return Ok(Value::Null);
                }
            }
        };
    answer(&mut lines).await?;
    for execute in ["qmp_capabilities", command] {
        let mut line = json!({ "execute": execute }).to_string();
        line.push('\n');
        write.write_all(line.as_bytes()).await.map_err(lost)?;
        let ret = answer(&mut lines).await?;
        if execute == command {
            return Ok(ret);
        }
    }
    Ok(Value::Null)
}

/// Observes the VMs of one host in one command, and asks QMP of those that run.
pub async fn observe(
    session: &SshSession,
    batch: &[crate::ObserveRequest],
) -> Result<Vec<(String, Observed)>, ProviderError> {
    let mut script = String::new();
    for request in batch {
        let name = name_of(&request.address);
        let dir = format!("{DIR}/{name}");
        script.push_str(&format!(
            "printf 'VM\\t%s\\t%s\\n' {q} \"$(systemctl is-active {unit} 2>/dev/null)\"; \
             if [ -f {dir}/spec.json ]; then tr -d '\\n' < {dir}/spec.json; fi; echo; ",
            q = shell_quote(name),
            unit = unit_of(name),
        ));
    }
    let output = session.exec(&script, None).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let mut seen = Vec::new();
    for request in batch {
        let (Some(header), Some(spec)) = (lines.next(), lines.next()) else {
            return Err(ProviderError::Transient(format!(
                "{}: the host's answer was cut short",
                request.address
            )));
        };
        let active = header.rsplit('\t').next().unwrap_or_default();
        if spec.trim().is_empty() {
            seen.push((request.address.clone(), Observed::Absent));
            continue;
        }
        let mut applied: Value = serde_json::from_str(spec).unwrap_or(Value::Null);
        let name = name_of(&request.address);
        let state = if active == "active" {
            match qmp(session, name, "query-status").await {
                Ok(status) => status["status"].as_str().unwrap_or("unknown").to_owned(),
                Err(_) => "starting".to_owned(),
            }
        } else {
            "stopped".to_owned()
        };
        if state != "running"
            && let Value::Object(map) = &mut applied
        {
            map.insert("state".into(), json!(state));
        }
        seen.push((request.address.clone(), Observed::Present(applied)));
    }
    Ok(seen)
}

/// Creates, updates (a restart) or replaces a VM.
pub async fn apply(session: &SshSession, change: &Change) -> Result<Applied, ProviderError> {
    let address = &change.address;
    let name = name_of(address);
    if change.action == Action::Delete {
        delete(session, address, name).await?;
        return Ok(Applied::default());
    }
    let given = change.after.clone().unwrap_or(Value::Null);
    let user_data = user_data(address, &given)?;
    let desired = without_values(&given);
    // cloudInit (text, or a secret's reference with its fingerprint) is read above.
    let mut typed = desired.clone();
    if let Value::Object(map) = &mut typed {
        map.remove("cloudInit");
    }
    let spec: VmSpec = serde_json::from_value(typed)
        .map_err(|e| failed(address, format!("not a VM spec: {e}")))?;
    refuse_unsafe(address, &spec)?;
    let seed = user_data.as_deref().map(|u| seed_name(name, u));
    let image: Option<String> = match spec.disk.image.as_deref() {
        None => None,
        Some(path) if path.starts_with('/') => Some(path.to_owned()),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            let sha256 = spec
                .disk
                .sha256
                .as_deref()
                .filter(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    failed_at(
                        address,
                        "disk.sha256",
                        "disk.image is a URL: give its disk.sha256 (64 hex digits), which the download is checked against",
                    )
                })?;
            Some(fetch_image(session, address, url, &sha256.to_ascii_lowercase()).await?)
        }
        Some(other) => {
            return Err(failed_at(
                address,
                "disk.image",
                format!(
                    "disk.image `{other}` must be the path of an image on the host, or an http(s) URL with its disk.sha256"
                ),
            ));
        }
    };
    let image = image.as_deref();
    let kvm = session
        .exec(
            "test -r /dev/kvm -a -w /dev/kvm && echo kvm || echo tcg",
            None,
        )
        .await?;
    let accel = String::from_utf8_lossy(&kvm.stdout).trim().to_owned();
    if spec.runtime == VmRuntime::CloudHypervisor {
        let why = if accel == "kvm" {
            format!(
                "{} has KVM, but cloud-hypervisor is not supported in this release",
                session.name()
            )
        } else {
            format!(
                "runtime cloud-hypervisor needs KVM, and Host/{} has no usable /dev/kvm; use runtime: qemu (TCG)",
                session.name()
            )
        };
        return Err(failed_at(address, "runtime", why));
    }
    // A replace starts from nothing: the old VM and what nimbus made go first.
    if change.action == Action::Replace {
        delete(session, address, name).await?;
    }
    if let (Some(seed), Some(user_data)) = (&seed, &user_data) {
        write_seed(session, address, name, seed, user_data).await?;
    }
    let dir = format!("{DIR}/{name}");
    let size = spec.disk.size.bytes;
    let disk = match image {
        Some(image) => format!(
            "fmt=$(qemu-img info --output=json {i} | sed -n 's/.*\"format\": \"\\([a-z0-9]*\\)\".*/\\1/p' | head -1); \
             qemu-img create -q -f qcow2 -F \"$fmt\" -b {i} {dir}/disk.qcow2 {size}",
            i = shell_quote(image)
        ),
        None => format!("qemu-img create -q -f qcow2 {dir}/disk.qcow2 {size}"),
    };
    let unit_text = unit(
        name,
        &command_line(name, &spec, &accel, seed.as_deref()),
        spec.bridge.as_deref(),
    );
    let spec_text =
        serde_json::to_string(&desired).map_err(|e| ProviderError::Bug(e.to_string()))?;
    let unit_name = unit_of(name);
    let script = format!(
        "set -e; command -v qemu-system-x86_64 >/dev/null || {{ echo 'qemu-system-x86_64 is not installed on this host (Debian: apt install qemu-system-x86)' >&2; exit 3; }}; \
         mkdir -p {dir}; \
         if [ ! -e {dir}/disk.qcow2 ]; then {disk}; touch {dir}/created; fi; \
         current=$(qemu-img info -U --output=json {dir}/disk.qcow2 | sed -n 's/.*\"virtual-size\": \\([0-9]*\\).*/\\1/p' | head -1); \
         if [ \"$current\" -lt {size} ]; then systemctl stop {unit_name} 2>/dev/null || true; qemu-img resize -q {dir}/disk.qcow2 {size}; fi; \
         new=$(cat); old=$(cat /etc/systemd/system/{unit_name} 2>/dev/null || true); \
         if [ \"$new\" != \"$old\" ]; then printf '%s\\n' \"$new\" > /etc/systemd/system/{unit_name}; systemctl daemon-reload; changed=1; fi; \
         printf '%s\\n' {spec} > {dir}/spec.json; \
         systemctl enable --quiet {unit_name}; \
         if [ -n \"${{changed:-}}\" ]; then systemctl restart {unit_name}; else systemctl start {unit_name}; fi",
        spec = shell_quote(&spec_text),
    );
    let output = session
        .exec(&script, Some(unit_text.trim_end().as_bytes()))
        .await?;
    if output.status != 0 {
        return Err(failed(
            address,
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    // Running, as QMP says.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match qmp(session, name, "query-status").await {
            Ok(status) if status["status"] == "running" => break,
            // Paused by hand (QMP `stop`) or suspended by its guest: resumed, not restarted.
            Ok(status) if status["status"] == "paused" => {
                qmp(session, name, "cont").await?;
            }
            Ok(status) if status["status"] == "suspended" => {
                qmp(session, name, "system_wakeup").await?;
            }
            Ok(status) if std::time::Instant::now() > deadline => {
                return Err(failed(
                    address,
                    format!("qemu started, but the VM is {}", status["status"]),
                ));
            }
            Err(e) if std::time::Instant::now() > deadline => {
                let log = session.journal(&unit_name, 5).await;
                return Err(failed(address, format!("the VM does not run: {e}; {log}")));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let mut outputs = json!({
        "accelerator": accel,
        "unit": unit_name,
        "serialLog": format!("{dir}/serial.log"),
        "mac": mac_of(name),
    });
    if let Some(bridge) = &spec.bridge {
        outputs["bridge"] = json!(bridge);
        outputs["tap"] = json!(tap_of(name));
    }
    if accel == "tcg" {
        outputs["warning"] = json!(format!(
            "Host/{} has no usable /dev/kvm: the VM runs under TCG (software emulation), many times slower",
            session.name()
        ));
    }
    Ok(Applied {
        observed: desired,
        outputs,
    })
}

/// Where images fetched from a URL are kept on a host, by their SHA-256.
pub const IMAGES: &str = "/var/lib/nimbus/images";

/// The image at `url` in the host's cache, fetched there once (by the host: curl, wget or
/// python3) and checked against `sha256`; a mismatch keeps nothing and says what came.
async fn fetch_image(
    session: &SshSession,
    address: &str,
    url: &str,
    sha256: &str,
) -> Result<String, ProviderError> {
    let cached = format!("{IMAGES}/{sha256}.img");
    let script = format!(
        "set -e; mkdir -p {IMAGES}; f={cached}; \
         if [ ! -e \"$f\" ]; then \
           t=\"$f.part.$$\"; \
           if command -v curl >/dev/null; then curl -fsSL -o \"$t\" {u}; \
           elif command -v wget >/dev/null; then wget -q -O \"$t\" {u}; \
           else python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' {u} \"$t\"; fi; \
           got=$(sha256sum \"$t\" | cut -d' ' -f1); \
           if [ \"$got\" != {sha256} ]; then rm -f \"$t\"; echo \"the image at {shown} has sha256 $got, not {sha256}: it is not used\" >&2; exit 3; fi; \
           mv \"$t\" \"$f\"; \
         fi",
        u = shell_quote(url),
        shown = url.replace(['"', '\\', '$', '`'], ""),
    );
    let output = session.exec(&script, None).await?;
    if output.status != 0 {
        let field = if output.status == 3 {
            "disk.sha256"
        } else {
            "disk.image"
        };
        return Err(failed_at(
            address,
            field,
            format!(
                "cannot fetch disk.image: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(cached)
}

/// ACPI power-off through QMP, a stop after [`POWERDOWN`], then the unit and what nimbus made.
async fn delete(session: &SshSession, address: &str, name: &str) -> Result<(), ProviderError> {
    let unit_name = unit_of(name);
    let dir = format!("{DIR}/{name}");
    if qmp(session, name, "system_powerdown").await.is_ok() {
        let deadline = std::time::Instant::now() + POWERDOWN;
        let mut pressed = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            let active = session
                .exec(&format!("systemctl is-active --quiet {unit_name}"), None)
                .await?;
            if active.status != 0 {
                break;
            }
            // A guest still booting misses the button: it is pressed again every 2 s.
            if pressed.elapsed() >= Duration::from_secs(2) {
                let _ = qmp(session, name, "system_powerdown").await;
                pressed = std::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let script = format!(
        "systemctl disable --now --quiet {unit_name} 2>/dev/null; rm -f /etc/systemd/system/{unit_name}; systemctl daemon-reload; \
         if [ -e {dir}/created ]; then rm -rf {dir}; else rm -f {dir}/spec.json {dir}/qmp.sock {dir}/seed-*.iso; fi"
    );
    let output = session.exec(&script, None).await?;
    if output.status != 0 {
        return Err(failed(
            address,
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_qemu_with_the_spec_and_quotes_for_systemd() {
        let spec: VmSpec = serde_json::from_value(json!({
            "host": "h1", "cpus": 2, "memory": "256Mi", "disk": {"size": "1Gi"},
            "boot": {"kernel": "/srv/vmlinux", "initrd": "/srv/initrd", "cmdline": "console=ttyS0 a=\"b\" 100%"},
            "ports": [{"port": 80, "hostPort": 8080}],
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let args = command_line("web", &spec, "tcg", None);
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg"), "{joined}");
        assert!(joined.contains("-m 256M -smp 2"), "{joined}");
        assert!(joined.contains("hostfwd=tcp::8080-:80"), "{joined}");
        assert!(
            joined.contains("-kernel /srv/vmlinux -initrd /srv/initrd"),
            "{joined}"
        );
        let bridged: VmSpec = serde_json::from_value(json!({
            "host": "h1", "cpus": 1, "memory": "128Mi", "disk": {"size": "1Gi"}, "bridge": "br0",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let tapped = command_line("web", &bridged, "tcg", None).join(" ");
        assert!(
            tapped.contains(&format!("tap,id=n0,ifname={}", tap_of("web"))),
            "{tapped}"
        );
        assert!(!tapped.contains("user,id=n0"), "{tapped}");
        assert!(tap_of("a-very-long-vm-name").len() <= 15);
        assert_eq!(mac_of("web"), mac_of("web"));
        assert_ne!(mac_of("web"), mac_of("db"));
        let bridged_unit = unit("web", &[], Some("br0"));
        assert!(
            bridged_unit.contains("ip link add br0 type bridge"),
            "{bridged_unit}"
        );
        assert!(bridged_unit.contains("master br0"), "{bridged_unit}");
        let text = unit("web", &args, None);
        assert!(text.contains(r#""console=ttyS0 a=\"b\" 100%%""#), "{text}");
        assert!(text.contains("WantedBy=multi-user.target"));
    }
}
