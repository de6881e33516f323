//! Services on a host: a systemd unit's name, the scripts that bring a service to its desired
//! spec or remove it, and what `systemctl show` says of one, as the manifest would say it.

use std::fmt::Write as _;

use nimbus_planner::plan::Observed;
use serde_json::{Map, Value, json};

use crate::quote::shell_quote;

/// The unit name of `Service/NAME`.
pub(crate) fn unit_name(resource: &str) -> String {
    let name = resource.strip_prefix("Service/").unwrap_or(resource);
    if name.ends_with(".service") {
        name.to_owned()
    } else {
        format!("{name}.service")
    }
}

pub(crate) const UNIT_DIR: &str = "/etc/systemd/system";

/// What `systemctl show` says of a service, as the manifest would say it.
pub(crate) fn observed_service(desired: &Value, digest: &str, properties: &str) -> Observed {
    let property = |key: &str| {
        properties
            .split_whitespace()
            .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    };
    let wants_unit = desired["unit"].is_string();
    if (wants_unit && digest == "-") || (!wants_unit && property("LoadState") == "not-found") {
        return Observed::Absent;
    }
    let mut value = Map::new();
    if wants_unit {
        value.insert("unit".into(), json!({"sha256": digest}));
    }
    // A static, generated or transient unit cannot be enabled or disabled: it is as wanted.
    let enabled = match property("UnitFileState") {
        "enabled" | "enabled-runtime" | "alias" | "linked" | "linked-runtime" => true,
        "static" | "generated" | "transient" | "indirect" => {
            desired["enabled"].as_bool().unwrap_or(true)
        }
        _ => false,
    };
    value.insert("enabled".into(), Value::Bool(enabled));
    let running = matches!(
        property("ActiveState"),
        "active" | "activating" | "reloading"
    );
    value.insert(
        "state".into(),
        Value::String(if running { "running" } else { "stopped" }.into()),
    );
    Observed::Present(Value::Object(value))
}

/// Stops and disables a service; with `remove_unit`, removes its unit file too (nimbus wrote
/// it) and reloads systemd.
pub fn remove_service_script(unit: &str, remove_unit: bool) -> String {
    let mut script = format!(
        "n={}\nsystemctl disable --now --quiet \"$n\" 2>/dev/null || true\n",
        shell_quote(unit)
    );
    if remove_unit {
        let _ = writeln!(
            script,
            "rm -f {UNIT_DIR}/\"$n\"\nsystemctl daemon-reload\nsystemctl reset-failed \"$n\" 2>/dev/null || true"
        );
    }
    script
}

/// The script that brings a service to its desired spec; the unit file's content, if any, is
/// its standard input. The unit is written (atomically) and systemd reloaded only when the
/// content differs; a running service is restarted when its unit changed or `restart` is set.
pub fn service_script(unit: &str, desired: &Value, restart: bool) -> String {
    let n = shell_quote(unit);
    let mut script = format!(
        "set -e\nn={n}\nu={UNIT_DIR}/$n\nchanged=0\n\
         command -v systemctl >/dev/null || {{ echo \"this host has no systemctl: a Service needs a host that runs systemd\" >&2; exit 1; }}\n"
    );
    if desired["unit"].is_string() {
        script.push_str(
            "mkdir -p \"$(dirname \"$u\")\"\nt=$(mktemp \"$(dirname \"$u\")/.nimbus.XXXXXX\")\ntrap 'rm -f \"$t\"' EXIT\ncat > \"$t\"\n\
             if [ -f \"$u\" ] && cmp -s \"$t\" \"$u\"; then rm -f \"$t\"; else chmod 0644 \"$t\"; sync \"$t\"; mv -f \"$t\" \"$u\"; changed=1; fi\n\
             trap - EXIT\n",
        );
    }
    // Enabling only links the unit into its targets: both it and a new unit file take one
    // daemon-reload, done once, and only when something changed.
    if desired["enabled"].as_bool().unwrap_or(true) {
        script.push_str("reload=$changed\nif ! systemctl is-enabled --quiet \"$n\" 2>/dev/null; then systemctl enable --no-reload --quiet \"$n\"; reload=1; fi\n");
    } else {
        script.push_str("reload=$changed\nif systemctl is-enabled --quiet \"$n\" 2>/dev/null; then systemctl disable --no-reload --quiet \"$n\"; reload=1; fi\n");
    }
    script.push_str("if [ $reload = 1 ]; then systemctl daemon-reload; fi\n");
    if desired["state"].as_str() == Some("stopped") {
        script.push_str("systemctl stop \"$n\"\n");
    } else {
        let _ = writeln!(
            script,
            "if [ $changed = 1 ] || [ {restart} = true ]; then systemctl restart \"$n\"; else systemctl start \"$n\"; fi\n\
             sleep 0.3\n\
             if ! systemctl is-active --quiet \"$n\"; then echo \"$n is not running after start:\" >&2; systemctl status --no-pager --lines=5 \"$n\" >&2 || true; exit 1; fi"
        );
        // (A unit of `Type=simple` counts as started once forked: a program that cannot be
        // executed fails a moment later, later still on a loaded host. The pause lets that
        // failure show before the unit is judged.)
    }
    script
}
