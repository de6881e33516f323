//! Discovery on a host over SSH (`nimbus discover`): one read-only command lists the units
//! made on the host (regular files under /etc/systemd/system, not the distribution's under
//! /lib, not nimbus's own `nimbus-*` units), qemu VMs under such units, the files under the
//! folders asked for, WireGuard interfaces (kernel or wireguard-go), NFS exports, btrfs
//! subvolumes, and, where a Docker engine answers, its containers, services, networks and
//! secrets that nimbus did not label as its own. Nothing on the host changes.

use nimbus_provider_core::{DiscoverRequest, Discovered, ProviderError, label_of, looks_secret};
use serde_json::{Value, json};

use crate::quote::shell_quote;

/// Files larger than this are listed but their content is not fetched.
const MAX_CONTENT: u64 = 1 << 20;
/// At most this many files per folder asked for.
const MAX_FILES: usize = 2000;

/// The read-only script for `request`.
pub(super) fn script(request: &DiscoverRequest) -> String {
    let contents = if request.contents { "1" } else { "" };
    let paths: Vec<String> = request.paths.iter().map(|p| shell_quote(p)).collect();
    format!(
        r#"C={contents}
export LC_ALL=C
units=""
for f in /etc/systemd/system/*.service; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  n=${{f##*/}}
  case "$n" in nimbus-*|*@.service) continue;; esac
  units="$units $n"
done
# Unit names are words: no globbing when the list is expanded.
set -f
if [ -n "$units" ]; then
  qemu=" $(cd /etc/systemd/system && grep -l qemu-system $units 2>/dev/null | tr '\n' ' ') "
  systemctl show -p Id -p UnitFileState -p ActiveState $units 2>/dev/null | awk -F= -v q="$qemu" '
    function emit() {{ if (id != "") {{ if (index(q, " " id " ")) print "Q\t" id; else print "U\t" id "\t" ufs "\t" st }} id = ""; ufs = ""; st = "" }}
    /^Id=/ {{ id = $2 }} /^UnitFileState=/ {{ ufs = $2 }} /^ActiveState=/ {{ st = $2 }} /^$/ {{ emit() }} END {{ emit() }}'
  if [ -n "$C" ]; then
    for n in $units; do printf 'T\t%s\t%s\n' "$n" "$(base64 -w0 < "/etc/systemd/system/$n")"; done
  fi
fi
set +f
for p in {paths}; do
  [ -e "$p" ] || continue
  find "$p" -xdev -type f -printf 'F\t%m\t%u\t%g\t%s\t%p\n' 2>/dev/null | head -n {MAX_FILES}
  if [ -n "$C" ]; then
    find "$p" -xdev -type f -size -{max_kib}k 2>/dev/null | head -n {MAX_FILES} | while IFS= read -r f; do printf 'C\t%s\t%s\n' "$f" "$(base64 -w0 < "$f")"; done
  fi
done
{{ ip -o link show type wireguard 2>/dev/null | awk -F': ' '{{print $2}}' | cut -d@ -f1; for s in /var/run/wireguard/*.sock; do [ -S "$s" ] && basename "$s" .sock; done; }} | sort -u | while IFS= read -r w; do [ -n "$w" ] && printf 'W\t%s\n' "$w"; done
cat /etc/exports /etc/exports.d/*.exports 2>/dev/null | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' | while IFS= read -r e; do printf 'E\t%s\n' "$e"; done
if command -v btrfs >/dev/null 2>&1; then
  findmnt -n -l -t btrfs -o TARGET 2>/dev/null | while IFS= read -r m; do
    btrfs subvolume list -o "$m" 2>/dev/null | sed 's/.* path //' | while IFS= read -r v; do printf 'B\t%s\t%s\n' "$m" "$v"; done
  done
fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  docker ps -a --format '{{{{.Names}}}}	{{{{.Image}}}}, {{{{.Status}}}}	{{{{.Labels}}}}' 2>/dev/null | awk -F'\t' 'index($3, "dev.nimbus.managed-by") == 0 && index($3, "com.docker.swarm.service.id") == 0 {{ print "D\tcontainer\t" $1 "\t" $2 }}'
  docker service ls -q 2>/dev/null | while IFS= read -r id; do docker service inspect -f '{{{{.Spec.Name}}}}	{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}	{{{{.Spec.Labels}}}}' "$id" 2>/dev/null; done | awk -F'\t' 'index($3, "dev.nimbus.managed-by") == 0 {{ print "D\tservice\t" $1 "\t" $2 }}'
  if [ -n "$C" ]; then
    docker service ls -q 2>/dev/null | while IFS= read -r id; do j=$(docker service inspect "$id" 2>/dev/null) || continue; case "$j" in *dev.nimbus.managed-by*) ;; *) printf 'S\t%s\n' "$(printf '%s' "$j" | base64 -w0)";; esac; done
  fi
  docker network ls --format '{{{{.Name}}}}	{{{{.Driver}}}}, {{{{.Scope}}}}	{{{{.Labels}}}}' 2>/dev/null | awk -F'\t' 'index($3, "dev.nimbus.managed-by") == 0 && $1 != "bridge" && $1 != "host" && $1 != "none" && $1 != "docker_gwbridge" && $1 != "ingress" {{ print "D\tnetwork\t" $1 "\t" $2 }}'
  docker secret ls --format '{{{{.Name}}}}	{{{{.Labels}}}}' 2>/dev/null | awk -F'\t' 'index($2, "dev.nimbus.managed-by") == 0 {{ print "D\tsecret\t" $1 "\ta swarm secret" }}'
fi
true
"#,
        max_kib = MAX_CONTENT / 1024 + 1,
        paths = if paths.is_empty() {
            "''".to_owned()
        } else {
            paths.join(" ")
        },
    )
}

fn decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// Reads the script's output into what was found.
pub(super) fn read(output: &str) -> Vec<Discovered> {
    let mut found: Vec<Discovered> = Vec::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["U", unit, enabled, active] => found.push(Discovered {
                kind: "Service".into(),
                identity: (*unit).to_owned(),
                detail: format!("unit, {enabled}, {active}"),
                name: label_of(unit.strip_suffix(".service").unwrap_or(unit)),
                spec: Some(json!({
                    "enabled": *enabled == "enabled",
                    "state": if *active == "active" { "running" } else { "stopped" },
                })),
                secrets: Default::default(),
                address: None,
            }),
            ["T", unit, text] => {
                if let Some(found) = found
                    .iter_mut()
                    .find(|f| f.kind == "Service" && f.identity == *unit)
                    && let Some(text) = decode(text).and_then(|b| String::from_utf8(b).ok())
                    && let Some(Value::Object(spec)) = found.spec.as_mut()
                {
                    spec.insert("unit".into(), Value::String(text));
                }
            }
            ["Q", unit] => found.push(Discovered {
                kind: "VM".into(),
                identity: (*unit).to_owned(),
                detail: "qemu under a systemd unit".into(),
                name: label_of(unit.strip_suffix(".service").unwrap_or(unit)),
                spec: None,
                secrets: Default::default(),
                address: None,
            }),
            ["F", mode, owner, group, size, path] => found.push(Discovered {
                kind: "File".into(),
                identity: (*path).to_owned(),
                detail: format!("regular file, {mode:0>4} {owner}:{group}, {size} bytes"),
                name: label_of(path),
                spec: Some(json!({
                    "path": path,
                    "mode": format!("{mode:0>4}"),
                    "owner": owner,
                    "group": group,
                })),
                secrets: Default::default(),
                address: None,
            }),
            ["C", path, text] => {
                let Some(last) = found
                    .iter_mut()
                    .find(|f| f.kind == "File" && f.identity == *path)
                else {
                    continue;
                };
                let text = decode(text).and_then(|b| String::from_utf8(b).ok());
                match text {
                    Some(text) if looks_secret(&last.identity, &text) => {
                        last.detail.push_str("; holds a secret");
                        last.secrets.insert("content".into(), text);
                    }
                    Some(text) => {
                        if let Some(Value::Object(spec)) = last.spec.as_mut() {
                            spec.insert("content".into(), Value::String(text));
                        }
                    }
                    None => last.detail.push_str("; not text: no manifest is written"),
                }
            }
            ["W", interface] => found.push(Discovered {
                kind: "Network".into(),
                identity: (*interface).to_owned(),
                detail: "WireGuard interface".into(),
                name: label_of(interface),
                spec: None,
                secrets: Default::default(),
                address: None,
            }),
            ["E", export] => {
                let path = export.split_whitespace().next().unwrap_or(export);
                found.push(Discovered {
                    kind: "Volume".into(),
                    identity: path.to_owned(),
                    detail: format!("NFS export: {}", export.trim()),
                    name: label_of(path),
                    spec: None,
                    secrets: Default::default(),
                    address: None,
                });
            }
            ["B", mount, path] => {
                let full = format!("{}/{path}", mount.trim_end_matches('/'));
                found.push(Discovered {
                    kind: "Volume".into(),
                    name: label_of(path.rsplit('/').next().unwrap_or(path)),
                    identity: full,
                    detail: "btrfs subvolume".into(),
                    spec: None,
                    secrets: Default::default(),
                    address: None,
                });
            }
            ["D", what, name, detail, ..] => {
                let kind = match *what {
                    "container" | "service" => "Workload",
                    "network" => "Network",
                    _ => "Secret",
                };
                found.push(Discovered {
                    kind: kind.into(),
                    identity: (*name).to_owned(),
                    detail: format!("Docker {what}: {detail}"),
                    name: label_of(name),
                    spec: None,
                    secrets: Default::default(),
                    address: None,
                });
            }
            ["S", inspected] => {
                let Some(service) = decode(inspected)
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .map(|v| v[0].clone())
                else {
                    continue;
                };
                let name = service["Spec"]["Name"].as_str().unwrap_or_default();
                if let Some(found) = found
                    .iter_mut()
                    .find(|f| f.kind == "Workload" && f.identity == name)
                {
                    swarm_workload(found, &service["Spec"]);
                }
            }
            _ => {}
        }
    }
    found
}

/// A swarm service made by hand as a Workload manifest: its name `TENANT_NAME` (as `docker
/// stack deploy` names a stack's services) gives the tenant and the Workload's name, since an
/// import never renames; image, replicas, limits, env (values that look secret set apart),
/// args and published ports as the docker provider writes them.
fn swarm_workload(found: &mut Discovered, spec: &Value) {
    let Some((tenant, name)) = found.identity.split_once('_') else {
        found.detail.push_str(
            "; not named TENANT_NAME, the name nimbus gives a tenant's service: no manifest is written",
        );
        return;
    };
    if label_of(tenant) != tenant || label_of(name) != name {
        found
            .detail
            .push_str("; its name is not TENANT_NAME in DNS labels: no manifest is written");
        return;
    }
    found.name = name.to_owned();
    found.address = Some(format!("Workload/{tenant}/{name}"));
    let container = &spec["TaskTemplate"]["ContainerSpec"];
    let image = container["Image"].as_str().unwrap_or_default();
    let mut out = serde_json::Map::new();
    out.insert("tenant".into(), json!(tenant));
    out.insert(
        "image".into(),
        json!(image.split('@').next().unwrap_or(image)),
    );
    match spec["Mode"]["Replicated"]["Replicas"].as_u64() {
        Some(replicas) => out.insert("replicas".into(), json!(replicas)),
        None => {
            found.detail.push_str(
                "; a global service (nimbus runs replicated ones): no manifest is written",
            );
            return;
        }
    };
    let limits = &spec["TaskTemplate"]["Resources"]["Limits"];
    if let Some(nano) = limits["NanoCPUs"].as_u64().filter(|n| *n > 0) {
        let cpu = nimbus_schemas::Cpu {
            millicores: nano / 1_000_000,
        };
        out.insert("cpu".into(), json!(cpu.to_string()));
    }
    if let Some(bytes) = limits["MemoryBytes"].as_u64().filter(|n| *n > 0) {
        out.insert(
            "memory".into(),
            json!(nimbus_schemas::Bytes { bytes }.to_string()),
        );
    }
    let mut env = serde_json::Map::new();
    for var in container["Env"].as_array().into_iter().flatten() {
        let Some((key, value)) = var.as_str().and_then(|v| v.split_once('=')) else {
            continue;
        };
        if nimbus_provider_core::secret_name(key) {
            found.secrets.insert(format!("env.{key}"), value.to_owned());
        } else {
            env.insert(key.to_owned(), json!(value));
        }
    }
    if !env.is_empty() {
        out.insert("env".into(), Value::Object(env));
    }
    if let Some(args) = container["Args"].as_array().filter(|a| !a.is_empty()) {
        out.insert("command".into(), Value::Array(args.clone()));
    }
    let ports: Vec<Value> = spec["EndpointSpec"]["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut port = json!({"port": p["TargetPort"],
                "protocol": p["Protocol"].as_str().unwrap_or("tcp")});
            if let Some(published) = p["PublishedPort"].as_u64() {
                port["hostPort"] = json!(published);
            }
            if p["PublishMode"] == "host" {
                port["mode"] = json!("host");
            }
            port
        })
        .collect();
    if !ports.is_empty() {
        out.insert("ports".into(), Value::Array(ports));
    }
    found.spec = Some(Value::Object(out));
}

/// Lists what `host` has, in one command.
pub(super) async fn discover(
    provider: &super::HostsProvider,
    host: &str,
    request: &DiscoverRequest,
) -> Result<Vec<Discovered>, ProviderError> {
    let session = provider.session(host).await?;
    let output = provider.exec(&session, &script(request), None).await?;
    Ok(read(&String::from_utf8_lossy(&output.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_read_into_objects() {
        use base64::Engine as _;
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let output = format!(
            "U\tlegacy.service\tenabled\tactive\nF\t644\troot\troot\t12\t/etc/app/main.conf\nF\t600\troot\troot\t20\t/etc/app/db.password\nT\tlegacy.service\t{}\nC\t/etc/app/main.conf\t{}\nC\t/etc/app/db.password\t{}\nW\twg0\nE\t/srv/share 10.0.0.0/24(rw)\nD\tcontainer\tlegacy-web\tnginx:1, Up 2 hours\n",
            b64("[Service]\nExecStart=/bin/true\n"),
            b64("port = 8080\n"),
            b64("hunter2\n"),
        );
        let found = read(&output);
        assert_eq!(found.len(), 6, "{found:#?}");
        assert_eq!(found[0].kind, "Service");
        assert_eq!(found[0].name, "legacy");
        assert_eq!(
            found[0].spec.as_ref().unwrap()["unit"],
            "[Service]\nExecStart=/bin/true\n"
        );
        assert_eq!(found[0].spec.as_ref().unwrap()["state"], "running");
        assert_eq!(found[1].name, "etc-app-main-conf");
        assert_eq!(found[1].spec.as_ref().unwrap()["mode"], "0644");
        assert_eq!(found[1].spec.as_ref().unwrap()["content"], "port = 8080\n");
        // A password file: its text is a secret, never in the spec.
        assert_eq!(found[2].secrets["content"], "hunter2\n");
        assert!(found[2].spec.as_ref().unwrap().get("content").is_none());
        assert_eq!(
            (found[3].kind.as_str(), found[3].identity.as_str()),
            ("Network", "wg0")
        );
        assert_eq!(found[4].identity, "/srv/share");
        assert_eq!(found[5].kind, "Workload");
    }

    #[test]
    fn a_swarm_service_named_for_a_tenant_becomes_its_workload() {
        use base64::Engine as _;
        let inspected = json!([{"Spec": {"Name": "shop_web",
            "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1.27@sha256:abc",
                "Env": ["MODE=prod", "DB_PASSWORD=hunter2"], "Args": ["nginx", "-g", "daemon off;"]},
                "Resources": {"Limits": {"NanoCPUs": 500000000u64, "MemoryBytes": 67108864}}},
            "Mode": {"Replicated": {"Replicas": 2}},
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]}}}]);
        let output = format!(
            "D\tservice\tshop_web\tnginx:1.27\nD\tservice\tloose\tnginx:1.27\nS\t{}\n",
            base64::engine::general_purpose::STANDARD.encode(inspected.to_string())
        );
        let found = read(&output);
        assert_eq!(found[0].address.as_deref(), Some("Workload/shop/web"));
        assert_eq!(
            found[0].spec,
            Some(
                json!({"tenant": "shop", "image": "nginx:1.27", "replicas": 2, "cpu": "500m",
                "memory": "64Mi", "env": {"MODE": "prod"}, "command": ["nginx", "-g", "daemon off;"],
                "ports": [{"port": 80, "hostPort": 8080, "protocol": "tcp"}]})
            )
        );
        assert_eq!(found[0].secrets["env.DB_PASSWORD"], "hunter2");
        assert!(found[1].spec.is_none());
    }
}
