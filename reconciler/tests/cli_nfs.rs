//! `nimbus apply` of an nfs Volume on a test-bed host whose NFS server is nfs-ganesha in
//! userspace (the kernel here has no nfsd, nor an NFS client), checked from a second host
//! with libnfs's userspace client (nfs-ls, nfs-cp): a pool ganesha cannot export fails the
//! Volume with ganesha's reason; the export takes a write that lands in
//! the directory; a second plan is empty; narrowing `clients` shuts out a host that is not
//! in it; with a file in it, the Volume is deleted only with `--allow-deletes`, and then the
//! export and the directory go.

use crate::common;
use crate::sshd;
use common::{ok, text, write};
use sshd::bed::Bed;

use std::path::Path;
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const POOL: &str = "/srv/nimbus/shared";
const DIR: &str = "/srv/nimbus/shared/acme/share";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

fn volume(host: &str, pool: Option<&str>, clients: Option<&str>) -> String {
    let clients = clients.map_or(String::new(), |c| format!(", clients: [\"{c}\"]"));
    let pool = pool.map_or(String::new(), |p| format!(", pool: {p}"));
    format!(
        "{HEADER}kind: Volume\nmetadata: {{name: share}}\nspec: {{type: nfs, size: 1Gi, host: {host}{pool}{clients}}}\n"
    )
}

/// libnfs's `nfs-ls` of the export, run on `from`: whether the server let it in.
fn can_list(bed: &Bed, from: &str, server: &str) -> bool {
    bed.ssh(from, &format!("nfs-ls 'nfs://{server}{DIR}?version=3'"))
        .status
        .success()
}

#[test]
fn an_nfs_volume_is_an_export_a_client_writes_to() {
    let bed = Bed::up_vm(2);
    let (server, client) = (bed.hosts[0].name.clone(), bed.hosts[1].name.clone());
    let (server_address, client_address) =
        (bed.hosts[0].address.clone(), bed.hosts[1].address.clone());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "nfs", &bed.known_hosts, &bed.key);
    write(repo, "hosts.yaml", &bed.hosts_manifest(""));
    write(
        repo,
        "tenants/acme/tenant.yaml",
        &format!("{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{}}\n"),
    );
    // The server's own settings are its administrator's: no grace period after a start (in
    // which ganesha answers writes with NFS3ERR_JUKEBOX, and libnfs's tools do not retry).
    bed.ssh_ok(
        &server,
        "printf 'NFSv4 { Graceless = true; }\n' >> /etc/ganesha/ganesha.conf && systemctl restart nfs-ganesha",
    );
    // The default pool is on the bed host's overlayfs root, which ganesha cannot export: the
    // Volume fails with ganesha's reason.
    write(
        repo,
        "tenants/acme/share.yaml",
        &volume(&server, None, None),
    );
    let refused = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Volume/acme/share") && said.contains("nfs-ganesha would not export"),
        "{said}"
    );
    // A pool on a file system it can export (tmpfs here).
    bed.ssh_ok(
        &server,
        &format!("mkdir -p {POOL} && mount -t tmpfs tmpfs {POOL}"),
    );
    write(
        repo,
        "tenants/acme/share.yaml",
        &volume(&server, Some(POOL), None),
    );
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");

    // A write from the other host lands in the directory.
    let mut listed = false;
    for _ in 0..50 {
        if can_list(&bed, &client, &server_address) {
            listed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        listed,
        "the export does not answer: {:?}\n{}",
        bed.ssh(
            &client,
            &format!("nfs-ls 'nfs://{server_address}{DIR}?version=3' 2>&1")
        ),
        bed.ssh_ok(
            &server,
            "grep -v TIRPC /var/log/ganesha/ganesha.log | tail -30"
        )
    );
    bed.ssh_ok(
        &client,
        &format!("echo written-over-nfs > /tmp/hello && nfs-cp /tmp/hello 'nfs://{server_address}{DIR}/hello.txt?version=3'"),
    );
    assert_eq!(
        bed.ssh_ok(&server, &format!("cat {DIR}/hello.txt")),
        "written-over-nfs\n"
    );

    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // Only the client host now: the server itself (another address) is shut out.
    write(
        repo,
        "tenants/acme/share.yaml",
        &volume(&server, Some(POOL), Some(&client_address)),
    );
    let narrowed = ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(narrowed.contains("clients"), "{narrowed}");
    assert!(
        can_list(&bed, &client, &server_address),
        "the client was shut out"
    );
    assert!(
        !can_list(&bed, &server, &server_address),
        "a host not in clients could list the export"
    );
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // A file in it: removing it from git is refused without --allow-deletes.
    std::fs::remove_file(repo.join("tenants/acme/share.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let kept = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&kept.stdout), text(&kept.stderr));
    assert_ne!(kept.status.code(), Some(0), "{said}");
    assert!(said.contains("--allow-deletes"), "{said}");
    assert!(
        can_list(&bed, &client, &server_address),
        "unexported without --allow-deletes"
    );
    ok(&nimbus(
        repo,
        &["apply", "--auto-approve", "--allow-deletes", "."],
    ));
    assert!(
        !bed.ssh(&server, &format!("test -e {DIR}")).status.success(),
        "the directory is still there"
    );
    assert!(
        !can_list(&bed, &client, &server_address),
        "still exported after the delete"
    );
}
