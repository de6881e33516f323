//! `nfs` Volumes over SSH (SPEC §11): a directory `POOL/TENANT/NAME` on the host (`pool`
//! default [`DEFAULT_POOL`]) exported to the Volume's `clients` (`*` when none are given),
//! read-write, synchronous, root not squashed, by the NFS server the host runs:
//!
//! - the kernel's (`exportfs` present, no nfs-ganesha): `/etc/exports.d/nimbus-TENANT-NAME.exports`,
//!   then `exportfs -ra`;
//! - nfs-ganesha (`ganesha.nfsd` present): an `EXPORT` block in
//!   `/etc/ganesha/nimbus.d/TENANT-NAME.conf`, all of them gathered in
//!   `/etc/ganesha/nimbus-exports.conf`, which `ganesha.conf` includes (one line nimbus adds),
//!   then a reload (`SIGHUP`), or a start when it does not run.
//!
//! The export is at the directory's own path (NFSv3 mount path and NFSv4 pseudo path alike).
//! NFS has no quota of its own: `size` is recorded in the export file and shown, not
//! enforced (docs/volumes.md). nimbus removes the directory only if it created it (the
//! marker `POOL/.nimbus/TENANT/NAME`); a directory with files in it only with
//! `--allow-deletes` (the planner's rule).

use nimbus_planner::plan::Observed;
use serde_json::{Value, json};

use nimbus_planner::fields::{config_path_problem, export_client_problem};

use crate::quote::{exports_path, ganesha_string, shell_quote};

/// Where exported directories go when a Volume names no `pool`.
pub const DEFAULT_POOL: &str = nimbus_planner::fields::DEFAULT_NFS_POOL;

/// The line that includes nimbus's ganesha exports.
const GANESHA_INCLUDE: &str = "%include \"/etc/ganesha/nimbus-exports.conf\"";

/// The paths of one nfs Volume.
pub struct Paths {
    pub dir: String,
    pub marker: String,
    /// The export file's name, without its folder (`TENANT-NAME`).
    pub stem: String,
}

impl Paths {
    pub fn new(spec: &Value, tenant: &str, name: &str) -> Paths {
        let pool = spec
            .get("pool")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_POOL)
            .trim_end_matches('/');
        Paths {
            dir: format!("{pool}/{tenant}/{name}"),
            marker: format!("{pool}/.nimbus/{tenant}/{name}"),
            stem: format!("{tenant}-{name}"),
        }
    }
}

/// The clients a spec exports to (`*` when it names none).
fn clients_of(spec: &Value) -> Vec<String> {
    let clients: Vec<String> = spec
        .get("clients")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if clients.is_empty() {
        vec!["*".to_owned()]
    } else {
        clients
    }
}

/// Shell that finds the host's NFS server: `server=ganesha|kernel`, or fails saying what to
/// install.
const DETECT: &str = "if command -v ganesha.nfsd >/dev/null; then server=ganesha; \
     elif command -v exportfs >/dev/null; then server=kernel; \
     else echo 'no NFS server on this host: install nfs-kernel-server (or nfs-ganesha with nfs-ganesha-vfs)' >&2; exit 3; fi; ";

/// Shell for one Volume's part of the host's observe command: a line
/// `N<TAB>i<TAB>owned<TAB>empty<TAB>used` when the directory exists, then its export file's
/// lines as `E<TAB>i<TAB>LINE`.
pub fn observe_script(i: usize, paths: &Paths) -> String {
    format!(
        "if [ -d {dir} ]; then \
           owned=$( [ -e {marker} ] && echo yes || echo no); \
           empty=$( [ -z \"$(ls -A {dir})\" ] && echo yes || echo no); \
           used=$(du -sb {dir} 2>/dev/null | cut -f1); \
           printf 'N\\t{i}\\t%s\\t%s\\t%s\\n' \"$owned\" \"$empty\" \"${{used:-0}}\"; \
           for f in /etc/exports.d/nimbus-{stem}.exports /etc/ganesha/nimbus.d/{stem}.conf; do \
             [ -f \"$f\" ] && sed 's/^/E\\t{i}\\t/' \"$f\"; \
           done; \
         fi; ",
        dir = shell_quote(&paths.dir),
        marker = shell_quote(&paths.marker),
        stem = paths.stem,
    )
}

/// What one Volume's lines say: `desired` with the size and clients its export file holds.
pub fn observed(desired: &Value, header: &[&str], export: &[&str]) -> Observed {
    let [owned, empty, used] = header else {
        return Observed::Unknown("the host's reply about the export is malformed".into());
    };
    let mut observed = desired.clone();
    let size = export
        .iter()
        .find_map(|line| line.strip_prefix("# nimbus: size="))
        .map(str::trim);
    let clients = exported_clients(export);
    if let Value::Object(map) = &mut observed {
        map.insert(
            "size".into(),
            size.map_or(json!("not exported"), |s| json!(s)),
        );
        match clients {
            // As written: left out when it is the default.
            Some(list) if list == ["*"] && desired.get("clients").is_none() => {
                map.remove("clients");
            }
            Some(list) => {
                map.insert("clients".into(), json!(list));
            }
            None => {
                map.insert("clients".into(), json!("not exported"));
            }
        }
        map.insert("used".into(), json!(used.parse::<u64>().unwrap_or(0)));
        map.insert("empty".into(), json!(*empty == "yes"));
        map.insert("createdByNimbus".into(), json!(*owned == "yes"));
    }
    Observed::Present(observed)
}

/// The clients an export file (either server's) lets in, or `None` without one.
fn exported_clients(export: &[&str]) -> Option<Vec<String>> {
    let lines: Vec<&str> = export
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        return None;
    }
    if lines.iter().any(|l| l.starts_with("EXPORT")) {
        // ganesha: the CLIENT block's `Clients = a, b;`, else everyone.
        let clients = lines
            .iter()
            .find_map(|l| l.strip_prefix("Clients ="))
            .map(|list| {
                list.trim_end_matches(';')
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect()
            });
        return Some(clients.unwrap_or_else(|| vec!["*".to_owned()]));
    }
    // The kernel's: `PATH client(options) client(options)`.
    let fields: Vec<String> = shell_words(lines[0])
        .into_iter()
        .skip(1)
        .map(|c| c.split('(').next().unwrap_or_default().to_owned())
        .collect();
    Some(fields)
}

/// Splits an exports line on blanks, with double quotes around a path.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The kernel's exports line: the path as one quoted word ([`exports_path`]), each client
/// with nimbus's options. Clients are the ones [`apply_script`] checked
/// ([`check_clients`]: no blank, `(` or quote), so that each is one entry.
pub(crate) fn kernel_export(paths: &Paths, clients: &[String], size: &str) -> String {
    let options = "(rw,sync,no_subtree_check,no_root_squash)";
    let list: Vec<String> = clients.iter().map(|c| format!("{c}{options}")).collect();
    format!(
        "# nimbus: size={size}\n# Managed by nimbus (dev.nimbus.managed-by); changes are drift.\n{} {}\n",
        exports_path(&paths.dir),
        list.join(" ")
    )
}

/// Every client is one that [`export_client_problem`] accepts, or the first that is not.
fn check_clients(clients: &[String]) -> Result<(), String> {
    for client in clients {
        if let Some(problem) = export_client_problem(client) {
            return Err(format!("client `{}` {problem}", client.escape_default()));
        }
    }
    Ok(())
}

/// nfs-ganesha's EXPORT block; `@ID@` is replaced on the host by a free Export_Id. Clients
/// are the ones [`apply_script`] checked; `None` when the directory cannot be a ganesha
/// string.
pub(crate) fn ganesha_export(paths: &Paths, clients: &[String], size: &str) -> Option<String> {
    let access = if clients == ["*"] {
        "  Access_Type = RW;\n".to_owned()
    } else {
        format!(
            "  Access_Type = None;\n  CLIENT {{\n    Clients = {};\n    Access_Type = RW;\n    Squash = No_Root_Squash;\n  }}\n",
            clients.join(", ")
        )
    };
    let dir = ganesha_string(&paths.dir)?;
    Some(format!(
        "# nimbus: size={size}\n# Managed by nimbus (dev.nimbus.managed-by); changes are drift.\nEXPORT {{\n  Export_Id = @ID@;\n  Path = {dir};\n  Pseudo = {dir};\n  Squash = No_Root_Squash;\n  Protocols = 3, 4;\n  Transports = TCP;\n  SecType = sys;\n{access}  FSAL {{\n    Name = VFS;\n  }}\n}}\n",
    ))
}

/// Shell that gathers nimbus's ganesha exports, makes `ganesha.conf` include them, and has
/// the server take them (a reload, or a start). ganesha reports an export it cannot take only
/// in its log: the lines the reload wrote are read back, and an error about `$dir` (in `$bad`)
/// fails the change with ganesha's own words, after taking back what this change made.
const GANESHA_RELOAD: &str = "mkdir -p /etc/ganesha/nimbus.d; \
     cat /etc/ganesha/nimbus.d/*.conf > /etc/ganesha/nimbus-exports.conf.new 2>/dev/null || true; \
     mv /etc/ganesha/nimbus-exports.conf.new /etc/ganesha/nimbus-exports.conf; \
     grep -qxF '%INCLUDE%' /etc/ganesha/ganesha.conf || echo '%INCLUDE%' >> /etc/ganesha/ganesha.conf; \
     log=/var/log/ganesha/ganesha.log; before=$(wc -l < $log 2>/dev/null || echo 0); \
     if systemctl is-active --quiet nfs-ganesha; then systemctl reload nfs-ganesha; \
       for t in $(seq 1 50); do tail -n +$((before+1)) $log 2>/dev/null | grep -q 'Reread exports complete' && break; sleep 0.1; done; \
     else systemctl start nfs-ganesha; fi; \
     bad=$(tail -n +$((before+1)) $log 2>/dev/null | grep -F \"Path=$dir \" | grep -E 'CRIT|MAJ' | head -1 | sed 's/.*:\\(CRIT\\|MAJ\\) *://'); ";

/// The command that makes or updates one export (the directory, when missing, first).
/// Refused (`Err`, with the reason) when a client or the directory is not one that
/// validation accepts: nothing is written.
pub fn apply_script(paths: &Paths, spec: &Value, size: &str) -> Result<String, String> {
    let clients = clients_of(spec);
    check_clients(&clients)?;
    if let Some(problem) = config_path_problem(&paths.dir) {
        return Err(format!(
            "directory `{}` {problem}",
            paths.dir.escape_default()
        ));
    }
    let kernel = kernel_export(paths, &clients, size);
    let ganesha = ganesha_export(paths, &clients, size).ok_or_else(|| {
        format!(
            "directory `{}` cannot be a ganesha string",
            paths.dir.escape_default()
        )
    })?;
    Ok(format!(
        "set -e; {DETECT}dir={dir}; \
         fresh=; if [ ! -d {dir} ]; then mkdir -p {dir} {marker_dir}; touch {marker}; fresh=1; fi; \
         if [ $server = kernel ]; then \
           mkdir -p /etc/exports.d; printf '%s' {kernel} > /etc/exports.d/nimbus-{stem}.exports.new; \
           mv /etc/exports.d/nimbus-{stem}.exports.new /etc/exports.d/nimbus-{stem}.exports; \
           exportfs -ra; \
         else \
           mkdir -p /etc/ganesha/nimbus.d; f=/etc/ganesha/nimbus.d/{stem}.conf; had=; [ -f \"$f\" ] && had=1; \
           id=$(sed -n 's/^ *Export_Id = \\([0-9]*\\);/\\1/p' \"$f\" 2>/dev/null | head -1); \
           if [ -z \"$id\" ]; then \
             used=$(cat /etc/ganesha/ganesha.conf /etc/ganesha/nimbus.d/*.conf 2>/dev/null | sed -n 's/^ *Export_Id = \\([0-9]*\\);/\\1/p'); \
             id=1000; while echo \"$used\" | grep -qx \"$id\"; do id=$((id+1)); done; \
           fi; \
           printf '%s' {ganesha} | sed \"s/@ID@/$id/\" > \"$f.new\"; mv \"$f.new\" \"$f\"; \
           {reload}\
           if [ -n \"$bad\" ]; then \
             if [ -z \"$had\" ]; then rm -f \"$f\"; fi; if [ -n \"$fresh\" ]; then rm -rf {dir} {marker}; fi; {reload}\
             echo \"nfs-ganesha would not export $dir: $bad\" >&2; exit 4; \
           fi; \
         fi",
        dir = shell_quote(&paths.dir),
        marker_dir = shell_quote(
            paths
                .marker
                .rsplit_once('/')
                .map_or(paths.marker.as_str(), |(d, _)| d)
        ),
        marker = shell_quote(&paths.marker),
        kernel = shell_quote(&kernel),
        ganesha = shell_quote(&ganesha),
        stem = paths.stem,
        reload = GANESHA_RELOAD.replace("%INCLUDE%", GANESHA_INCLUDE),
    ))
}

/// The command that unexports a Volume and removes its directory when nimbus made it.
pub fn delete_script(paths: &Paths) -> String {
    format!(
        "set -e; dir={dir}; \
         if [ -f /etc/exports.d/nimbus-{stem}.exports ]; then \
           rm -f /etc/exports.d/nimbus-{stem}.exports; exportfs -ra; fi; \
         if [ -f /etc/ganesha/nimbus.d/{stem}.conf ]; then \
           rm -f /etc/ganesha/nimbus.d/{stem}.conf; {reload}fi; \
         if [ -e {marker} ]; then rm -rf {dir}; rm -f {marker}; fi",
        stem = paths.stem,
        dir = shell_quote(&paths.dir),
        marker = shell_quote(&paths.marker),
        reload = GANESHA_RELOAD.replace("%INCLUDE%", GANESHA_INCLUDE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_servers_export_files_read_back_as_their_clients() {
        let paths = Paths::new(&json!({}), "acme", "share");
        let clients = vec!["10.0.0.2".to_owned(), "10.0.1.0/24".to_owned()];
        let kernel = kernel_export(&paths, &clients, "1Gi");
        let lines: Vec<&str> = kernel.lines().collect();
        assert_eq!(exported_clients(&lines), Some(clients.clone()));
        let ganesha = ganesha_export(&paths, &clients, "1Gi").expect("a plain path");
        let lines: Vec<&str> = ganesha.lines().collect();
        assert_eq!(exported_clients(&lines), Some(clients));
        let everyone = ganesha_export(&paths, &["*".to_owned()], "1Gi").expect("a plain path");
        let lines: Vec<&str> = everyone.lines().collect();
        assert_eq!(exported_clients(&lines), Some(vec!["*".to_owned()]));
        assert_eq!(exported_clients(&[]), None);
        let seen = observed(
            &json!({"type": "nfs", "size": "1Gi"}),
            &["yes", "no", "5"],
            &lines,
        );
        let Observed::Present(seen) = seen else {
            panic!("not present")
        };
        assert_eq!(seen["size"], "1Gi");
        assert!(seen.get("clients").is_none(), "{seen}");
        assert_eq!(seen["empty"], false);
    }
}
