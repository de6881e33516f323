//! What each manifest value that reaches a host may hold (docs/security.md). One rule per
//! meaning (a path on a host, an exports client, a kernel command line, a user name...),
//! each a pure function that says why a value breaks it. `nimbus validate` reports a broken
//! value at its line ([`crate::validate`]); the providers' writers call the same functions
//! again before they write, so a value that got past validation is still refused rather than
//! written. Escaping for each syntax is the providers' (`nimbus_providers::quote`).

use crate::diagnostics::Problem;
use crate::load::{Document, Model};
use crate::tree::Segment;

/// The roots a Host's Volumes may live under when the Host declares no `volumeRoots`.
pub const DEFAULT_VOLUME_ROOTS: &[&str] = &["/srv/nimbus"];

/// Longest value nimbus writes into a configuration line on a host.
pub const MAX_LINE_VALUE: usize = 4096;

/// Why `text` holds a character no one-line value may hold: a control character (newline,
/// carriage return, NUL, escape...) or DEL.
pub fn control_problem(text: &str) -> Option<String> {
    text.char_indices()
        .find(|(_, c)| c.is_control())
        .map(|(at, c)| {
            format!(
                "holds the control character {} at byte {at}; this value is one line of text",
                describe(c)
            )
        })
}

/// Why multi-line text (a file's content, a unit, an environment value) cannot be written: a
/// NUL byte, which no text file, environment or command line can carry.
pub fn nul_problem(text: &str) -> Option<String> {
    text.find('\0')
        .map(|at| format!("holds a NUL byte at byte {at}; text cannot carry one"))
}

fn describe(c: char) -> String {
    match c {
        '\n' => "newline (\\n)".into(),
        '\r' => "carriage return (\\r)".into(),
        '\t' => "tab (\\t)".into(),
        '\0' => "NUL (\\0)".into(),
        c => format!("U+{:04X}", c as u32),
    }
}

/// Why `path` is not an absolute, normalized path on a host: it must start with `/`, hold no
/// empty, `.` or `..` segment, end without `/` (but for `/` itself), hold no control
/// character and be at most [`MAX_LINE_VALUE`] bytes. Shell characters are allowed: writers
/// quote them.
pub fn host_path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_LINE_VALUE {
        return Some(format!(
            "is {} bytes long; a path is at most {MAX_LINE_VALUE}",
            path.len()
        ));
    }
    if let Some(problem) = control_problem(path) {
        return Some(problem);
    }
    if !path.starts_with('/') {
        return Some("is not absolute: a path on a host starts with `/`".into());
    }
    if path == "/" {
        return None;
    }
    if path.ends_with('/') {
        return Some("ends with `/`: write it without the trailing slash".into());
    }
    match path[1..]
        .split('/')
        .find(|s| s.is_empty() || *s == "." || *s == "..")
    {
        Some("") => Some("holds `//`: write each folder once".into()),
        Some(segment) => Some(format!(
            "holds a `{segment}` segment: write the normalized path"
        )),
        None => None,
    }
}

/// Why `path` cannot be a path that nimbus writes into configuration files (exports, ganesha,
/// systemd units, qemu options): a [`host_path_problem`], or a character outside letters,
/// digits and `/ . _ - + @ : ~`, or a segment that starts with `-`.
pub fn config_path_problem(path: &str) -> Option<String> {
    if let Some(problem) = host_path_problem(path) {
        return Some(problem);
    }
    if let Some(c) = path.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ':' | '~'))
    }) {
        return Some(format!(
            "holds `{}`; a path written into a host's configuration holds only letters, digits and `/ . _ - + @ : ~`",
            c.escape_default()
        ));
    }
    if path.split('/').any(|s| s.starts_with('-')) {
        return Some("has a segment that starts with `-`".into());
    }
    None
}

/// Whether `path` is `root` or lies under it (both normalized).
pub fn is_under(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty()
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Why `client` is not an NFS client nimbus exports to: a host name or wildcard pattern
/// (`*`, `*.example.com`, `node-?`), an IPv4 or IPv6 address, a CIDR (`10.0.0.0/24`), or a
/// netgroup (`@trusted`). Export options are nimbus's, never a client's.
pub fn export_client_problem(client: &str) -> Option<String> {
    if let Some(problem) = control_problem(client) {
        return Some(problem);
    }
    if client.is_empty() || client.len() > 253 {
        return Some("is empty or longer than 253 characters".into());
    }
    if let Some(group) = client.strip_prefix('@') {
        return (group.is_empty()
            || !group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .then(|| "is not a netgroup: `@` then letters, digits, `-`, `_` or `.`".into());
    }
    let (address, prefix) = match client.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (client, None),
    };
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return match prefix {
            None => None,
            Some(p) if p.parse::<u8>().is_ok_and(|p| p <= max) => None,
            Some(p) if ip.is_ipv4() && p.parse::<std::net::Ipv4Addr>().is_ok() => None,
            Some(p) => Some(format!("has the prefix `/{p}`, which is not 0 to {max}")),
        };
    }
    if prefix.is_some() {
        return Some(format!(
            "has `{address}` before `/`, which is not an IP address"
        ));
    }
    let host_pattern = client.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '*' | '?'))
    });
    if host_pattern {
        None
    } else {
        Some(
            "is not a host name, wildcard pattern, IP address, CIDR or @netgroup; \
             options such as `(rw)` are nimbus's, never a client's"
                .into(),
        )
    }
}

/// Why `cmdline` cannot be a kernel command line: control characters, or longer than the
/// kernel takes (4096 bytes on x86).
pub fn cmdline_problem(cmdline: &str) -> Option<String> {
    if cmdline.len() > MAX_LINE_VALUE {
        return Some(format!(
            "is {} bytes long; a kernel command line is at most {MAX_LINE_VALUE}",
            cmdline.len()
        ));
    }
    control_problem(cmdline)
}

/// Why `name` cannot be a user or group on a host (for `chown`): letters, digits, `_`, `-`
/// and `.` (and a `$` at the end, as Samba's machine accounts have), not starting with `-`,
/// at most 32 characters; or a numeric id.
pub fn account_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 32 {
        return Some("is empty or longer than 32 characters".into());
    }
    if name.starts_with('-') {
        return Some("starts with `-`, which a command would read as an option".into());
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if body
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        None
    } else {
        Some("holds a character other than letters, digits, `_`, `-` or `.`".into())
    }
}

/// Why `version` cannot be a version that nimbus compares and passes on: letters, digits and
/// `. + _ -`, at most 128 characters.
pub fn version_problem(version: &str) -> Option<String> {
    if version.is_empty() || version.len() > 128 {
        return Some("is empty or longer than 128 characters".into());
    }
    (!version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '_' | '-')))
    .then(|| "holds a character other than letters, digits and `. + _ -`".into())
}

/// Why `image` cannot be a container image reference: empty, control characters, a leading
/// `-`, or longer than 4096 bytes. (It reaches Docker's and Kubernetes' APIs as JSON; other
/// mistakes, such as a blank, are the API's to refuse, with its own words.)
pub fn image_problem(image: &str) -> Option<String> {
    if image.is_empty() || image.len() > MAX_LINE_VALUE {
        return Some(format!("is empty or longer than {MAX_LINE_VALUE} bytes"));
    }
    if let Some(problem) = control_problem(image) {
        return Some(problem);
    }
    image
        .starts_with('-')
        .then(|| "starts with `-`, which a command would read as an option".into())
}

/// Why `name` cannot be an environment variable's name: a letter or `_`, then letters,
/// digits and `_`.
pub fn env_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (!first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| "is not a variable name: a letter or `_`, then letters, digits and `_`".into())
}

/// Why an `http(s)` URL cannot be fetched on a host: not http(s), or it holds a control
/// character or a space.
pub fn url_problem(url: &str) -> Option<String> {
    if let Some(problem) = control_problem(url) {
        return Some(problem);
    }
    if url.len() > MAX_LINE_VALUE || url.contains(' ') {
        return Some("holds a space or is too long".into());
    }
    (!(url.starts_with("http://") || url.starts_with("https://")))
        .then(|| "is not an http:// or https:// URL".into())
}

/// What a field of a manifest holds, for [`check`]: the rule its value must follow.
#[derive(Clone, Copy)]
enum Rule {
    /// A path on a host that a command receives quoted (a File's path).
    HostPath,
    /// A path written into a host's configuration (exports, units, qemu options).
    ConfigPath,
    /// One line of text (a host key, an address).
    Line,
    /// A kernel command line.
    Cmdline,
    /// Text of many lines (contents, units, environment values): no NUL.
    Text,
    ExportClient,
    Account,
    Version,
    Image,
    EnvName,
    /// A host path or an http(s) URL (a VM's disk image).
    PathOrUrl,
}

impl Rule {
    fn problem(self, value: &str) -> Option<String> {
        match self {
            Rule::HostPath => host_path_problem(value),
            Rule::ConfigPath => config_path_problem(value),
            Rule::Line => control_problem(value).or_else(|| {
                (value.len() > MAX_LINE_VALUE)
                    .then(|| format!("is longer than {MAX_LINE_VALUE} bytes"))
            }),
            Rule::Cmdline => cmdline_problem(value),
            Rule::Text => nul_problem(value),
            Rule::ExportClient => export_client_problem(value),
            Rule::Account => account_problem(value),
            Rule::Version => version_problem(value),
            Rule::Image => image_problem(value),
            Rule::EnvName => env_name_problem(value),
            Rule::PathOrUrl if value.starts_with('/') => config_path_problem(value),
            Rule::PathOrUrl if value.contains("://") => url_problem(value),
            // A name (the provider says at apply what it takes): one word on one line.
            Rule::PathOrUrl => image_problem(value),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Rule::HostPath => "a path on a host",
            Rule::ConfigPath => "a path in a host's configuration",
            Rule::Line => "one line of text",
            Rule::Cmdline => "a kernel command line",
            Rule::Text => "text",
            Rule::ExportClient => "an NFS client",
            Rule::Account => "a user or group",
            Rule::Version => "a version",
            Rule::Image => "an image reference",
            Rule::EnvName => "an environment variable's name",
            Rule::PathOrUrl => "a path on the host or an http(s) URL",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Rule::HostPath => {
                "write an absolute, normalized path on one line, such as `/etc/app/app.conf`"
            }
            Rule::ConfigPath => {
                "write an absolute, normalized path of letters, digits and `/ . _ - + @ : ~`, such as `/srv/nimbus/data`"
            }
            Rule::Line | Rule::Cmdline => "write it on one line, without control characters",
            Rule::Text => "remove the NUL byte",
            Rule::ExportClient => {
                "write a host name, a wildcard such as `*.example.com`, an address, a CIDR such as `10.0.0.0/24`, or `@netgroup`; nimbus sets the export options itself"
            }
            Rule::Account => "write a user or group name such as `www-data`, or a numeric id",
            Rule::Version => "write a version such as `v1.31.2+k3s1`",
            Rule::Image => "write an image reference such as `nginx:1.27` on one line",
            Rule::EnvName => "name it with letters, digits and `_`, starting with a letter or `_`",
            Rule::PathOrUrl => {
                "write an absolute path on the host, or an http(s) URL with its sha256"
            }
        }
    }
}

/// Checks every manifest value that reaches a host against what its field means, and each
/// Volume's folder against its Host's `volumeRoots` and the other Volumes on that host.
pub(crate) fn check(model: &Model, problems: &mut Vec<Problem>) {
    use nimbus_schemas::{CloudInit, EnvValue, Spec, StringOrList, VolumeType};
    let hosts = model.hosts_by_name();
    // (host, folder, the Volume's document), for overlaps between Volumes.
    let mut folders: Vec<(&str, String, &Document)> = Vec::new();
    for document in &model.documents {
        // Labels reach k3s's `--node-label` flags and Docker's node labels: one line each.
        for (key, value) in &document.resource.metadata.labels.0 {
            for text in [key, value] {
                if let Some(problem) = Rule::Line.problem(text) {
                    let span = document
                        .envelope()
                        .and_then(|e| e.metadata.as_ref())
                        .and_then(|m| m.lookup(&[Segment::Key("labels"), Segment::Key(key)]))
                        .map_or(document.name_span(), |n| n.span);
                    let subject = format!("label `{}`", shown(key));
                    problems.push(unsafe_value(document, span, &subject, Rule::Line, &problem));
                }
            }
        }
        let mut report = |path: &[Segment<'_>], value: &str, rule: Rule| {
            if let Some(problem) = rule.problem(value) {
                let subject = format!("{} `{}`", field_name(path), shown(value));
                let span = document.spec_span(path);
                problems.push(unsafe_value(document, span, &subject, rule, &problem));
            }
        };
        use Segment::{Index, Key};
        match &document.resource.spec {
            Spec::Host(h) => {
                report(&[Key("address")], &h.address, Rule::Line);
                if let Some(user) = &h.user {
                    report(&[Key("user")], user, Rule::Account);
                }
                if let Some(key) = &h.host_key {
                    report(&[Key("hostKey")], key, Rule::Line);
                }
                for (i, root) in h.volume_roots.iter().enumerate() {
                    report(&[Key("volumeRoots"), Index(i)], root, Rule::ConfigPath);
                }
            }
            Spec::File(f) => {
                // A relative path has its own diagnostic (`nimbus::value::path`).
                if f.path.starts_with('/') {
                    report(&[Key("path")], &f.path, Rule::HostPath);
                }
                if let Some(content) = &f.content {
                    report(&[Key("content")], content, Rule::Text);
                }
                if let Some(owner) = &f.owner {
                    report(&[Key("owner")], owner, Rule::Account);
                }
                if let Some(group) = &f.group {
                    report(&[Key("group")], group, Rule::Account);
                }
            }
            Spec::Service(s) => {
                if let Some(unit) = &s.unit {
                    report(&[Key("unit")], unit, Rule::Text);
                }
            }
            Spec::Cluster(c) => {
                if let Some(version) = &c.version {
                    report(&[Key("version")], version, Rule::Version);
                }
            }
            Spec::Tenant(t) => {
                for (i, member) in t.members.iter().enumerate() {
                    report(&[Key("members"), Index(i)], member, Rule::Line);
                }
            }
            Spec::Workload(w) => {
                report(&[Key("image")], &w.image, Rule::Image);
                for (name, value) in &w.env {
                    report(&[Key("env")], name, Rule::EnvName);
                    if let EnvValue::Value(text) = value {
                        report(&[Key("env"), Key(name)], text, Rule::Text);
                    }
                }
                match &w.command {
                    Some(StringOrList::String(text)) => report(&[Key("command")], text, Rule::Text),
                    Some(StringOrList::List(words)) => {
                        for (i, word) in words.iter().enumerate() {
                            report(&[Key("command"), Index(i)], word, Rule::Text);
                        }
                    }
                    None => {}
                }
                for (i, mount) in w.volumes.iter().enumerate() {
                    report(
                        &[Key("volumes"), Index(i), Key("path")],
                        &mount.path,
                        Rule::ConfigPath,
                    );
                }
            }
            Spec::Vm(v) => {
                if let Some(image) = &v.disk.image {
                    report(&[Key("disk"), Key("image")], image, Rule::PathOrUrl);
                }
                if let Some(boot) = &v.boot {
                    report(
                        &[Key("boot"), Key("kernel")],
                        &boot.kernel,
                        Rule::ConfigPath,
                    );
                    if let Some(initrd) = &boot.initrd {
                        report(&[Key("boot"), Key("initrd")], initrd, Rule::ConfigPath);
                    }
                    if let Some(cmdline) = &boot.cmdline {
                        report(&[Key("boot"), Key("cmdline")], cmdline, Rule::Cmdline);
                    }
                }
                if let Some(CloudInit::Content(text)) = &v.cloud_init {
                    report(&[Key("cloudInit")], text, Rule::Text);
                }
            }
            Spec::Volume(v) if v.volume_type != VolumeType::S3 => {
                for (i, client) in v.clients.iter().enumerate() {
                    report(&[Key("clients"), Index(i)], client, Rule::ExportClient);
                }
                let default_pool = match v.volume_type {
                    VolumeType::Nfs => DEFAULT_NFS_POOL,
                    _ => DEFAULT_BTRFS_POOL,
                };
                let pool = v.pool.as_deref().unwrap_or(default_pool);
                if let Some(given) = &v.pool
                    && config_path_problem(given).is_some()
                {
                    report(&[Key("pool")], given, Rule::ConfigPath);
                    continue;
                }
                let Some(host_name) = v.host.as_deref() else {
                    continue;
                };
                let Some(host) = hosts.get(host_name) else {
                    continue;
                };
                // Roots that break the path rule are reported on the Host and used by no one.
                let roots: Vec<&str> = if host.volume_roots.is_empty() {
                    DEFAULT_VOLUME_ROOTS.to_vec()
                } else {
                    host.volume_roots
                        .iter()
                        .map(String::as_str)
                        .filter(|r| config_path_problem(r).is_none())
                        .collect()
                };
                if !roots.iter().any(|root| is_under(pool, root)) {
                    let (span, note) = match v.pool {
                        Some(_) => (
                            document.spec_span(&[Key("pool")]),
                            "outside the host's volume roots",
                        ),
                        None => (
                            document.spec_span(&[Key("type")]),
                            "its default pool is outside the host's volume roots",
                        ),
                    };
                    problems.push(
                        Problem::error(
                            "nimbus::volume::outside_roots",
                            format!(
                                "{} would use `{pool}` on Host/{host_name}, which is not under its volume roots ({})",
                                document.resource.address(),
                                roots.join(", ")
                            ),
                            document.label(span, note),
                        )
                        .with_help(format!(
                            "put `pool` under {}, or add a root to Host/{host_name}'s `volumeRoots`",
                            roots.join(" or ")
                        )),
                    );
                    continue;
                }
                let tenant = document.resource.tenant.as_deref().unwrap_or_default();
                folders.push((
                    host_name,
                    format!(
                        "{}/{tenant}/{}",
                        pool.trim_end_matches('/'),
                        document.resource.name()
                    ),
                    document,
                ));
            }
            _ => {}
        }
    }
    // No Volume's folder lies inside another's, on one host: a tenant cannot reach into
    // another tenant's data by choosing its pool.
    folders.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for pair in folders.windows(2) {
        let [(host_a, dir_a, doc_a), (host_b, dir_b, doc_b)] = pair else {
            continue;
        };
        if host_a == host_b && is_under(dir_b, dir_a) {
            problems.push(
                Problem::error(
                    "nimbus::volume::overlap",
                    format!(
                        "{} would live in `{dir_b}` on Host/{host_b}, inside {}'s `{dir_a}`",
                        doc_b.resource.address(),
                        doc_a.resource.address()
                    ),
                    doc_b.label(
                        doc_b.spec_span(&[Segment::Key("pool")]),
                        "inside another Volume",
                    ),
                )
                .with_help("give each Volume a pool that no other Volume's folder contains"),
            );
        }
    }
}

/// `SUBJECT is not WHAT: it PROBLEM` at `span`, with the rule's help.
fn unsafe_value(
    document: &Document,
    span: crate::tree::ByteSpan,
    subject: &str,
    rule: Rule,
    problem: &str,
) -> Problem {
    Problem::error(
        "nimbus::value::unsafe",
        format!("{subject} is not {}: it {problem}", rule.what()),
        document.label(span, format!("not {}", rule.what())),
    )
    .with_help(rule.help())
}

/// Where btrfs Volumes go when they name no `pool` (the provider's default too).
pub const DEFAULT_BTRFS_POOL: &str = "/srv/nimbus/volumes";
/// Where nfs Volumes' directories go when they name no `pool` (the provider's default too).
pub const DEFAULT_NFS_POOL: &str = "/srv/nimbus/exports";

/// `a.b[0].c` for a path into a spec.
fn field_name(path: &[Segment<'_>]) -> String {
    let mut name = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(key);
            }
            Segment::Index(i) => name.push_str(&format!("[{i}]")),
        }
    }
    name
}

/// A value as a diagnostic shows it: escaped, and cut after 60 characters.
fn shown(value: &str) -> String {
    let escaped: String = value
        .chars()
        .take(60)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().count() > 60 {
        format!("{escaped}...")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_normalized_and_one_line() {
        assert_eq!(host_path_problem("/srv/nimbus/a b$(x)"), None);
        assert_eq!(host_path_problem("/"), None);
        for bad in [
            "srv",
            "/srv/",
            "/srv//a",
            "/srv/../etc",
            "/srv/./a",
            "/srv\n/etc",
            "/a\0b",
        ] {
            assert!(host_path_problem(bad).is_some(), "{bad:?}");
        }
        assert!(host_path_problem(&format!("/{}", "a".repeat(10_000))).is_some());
        assert_eq!(config_path_problem("/srv/nimbus/exports"), None);
        for bad in [
            "/srv/a\"b",
            "/srv/a b",
            "/srv/a'b",
            "/srv/-x",
            "/srv/a\\b",
            "/srv/$(id)",
        ] {
            assert!(config_path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn roots_contain_their_subfolders_only() {
        assert!(is_under("/srv/nimbus", "/srv/nimbus"));
        assert!(is_under("/srv/nimbus/exports", "/srv/nimbus/"));
        assert!(!is_under("/srv/nimbus-evil", "/srv/nimbus"));
        assert!(!is_under("/etc", "/srv/nimbus"));
        assert!(is_under("/etc", "/"));
    }

    #[test]
    fn export_clients_are_hosts_addresses_networks_or_netgroups() {
        for good in [
            "*",
            "10.0.0.1",
            "10.0.1.0/24",
            "10.0.1.0/255.255.255.0",
            "fd00::1",
            "fd00::/64",
            "*.example.com",
            "node-?",
            "@trusted",
        ] {
            assert_eq!(export_client_problem(good), None, "{good}");
        }
        for bad in [
            "10.0.0.1\n\"/\" *",
            "* /(rw,no_root_squash)",
            "*(rw,no_root_squash)",
            "10.0.0.1/33",
            "host/24",
            "",
            "a;b",
            "-x",
            "`id`",
            "$(id)",
            "a\"b",
        ] {
            assert!(export_client_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn accounts_versions_images_and_names() {
        assert_eq!(account_problem("www-data"), None);
        assert_eq!(account_problem("1000"), None);
        for bad in ["-R", "a:b", "a b", "a\nb", "$(id)", ""] {
            assert!(account_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(version_problem("v1.31.2+k3s1"), None);
        assert!(version_problem("1; rm -rf /").is_some());
        assert_eq!(image_problem("registry.local:5000/app:1.2@sha256:ab"), None);
        assert_eq!(image_problem("nginx:1.27 "), None);
        assert!(image_problem("nginx\n--privileged").is_some());
        assert!(image_problem("--privileged").is_some());
        assert_eq!(env_name_problem("_A1"), None);
        assert!(env_name_problem("A=B").is_some());
        assert!(env_name_problem("1A").is_some());
        assert!(cmdline_problem("console=ttyS0\nExecStartPre=/bin/touch /x").is_some());
        assert_eq!(
            cmdline_problem("console=ttyS0 root=\"/dev/vda\" 100%"),
            None
        );
        assert!(nul_problem("a\0").is_some());
        assert_eq!(nul_problem("a\nb"), None);
        assert!(url_problem("https://x/a b").is_some());
    }
}
