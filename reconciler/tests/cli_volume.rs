//! `nimbus apply` of a btrfs Volume on a test-bed host (btrfs on a loop device inside the
//! host: the kernel here has btrfs; the bed makes the loop device nodes): a subvolume with a
//! qgroup limit of its size, which refuses a write over it; a second plan is empty; a new size
//! is a new limit; a pool that is not btrfs fails its Volume with the reason; a Volume with
//! data is deleted only with `--allow-deletes`, and only what nimbus made.

use crate::common;
use crate::sshd;
use common::{ok, text, write};
use sshd::bed::{Bed, BtrfsPool};

use std::path::Path;
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const POOL: &str = "/srv/nimbus/pool";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

fn volume(size: &str, pool: &str) -> String {
    format!(
        "{HEADER}kind: Volume\nmetadata: {{name: data}}\nspec: {{type: btrfs, size: {size}, host: h1, pool: {pool}}}\n"
    )
}

#[test]
fn a_btrfs_volume_is_a_subvolume_with_a_quota() {
    let bed = Bed::up_vm(1);
    let host = bed.hosts[0].name.clone();
    let pool = BtrfsPool::new(&bed, &host, POOL);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "volumes", &bed.known_hosts, &bed.key);
    write(
        repo,
        "hosts.yaml",
        &format!(
            "{HEADER}kind: Host\nmetadata: {{name: {host}}}\nspec: {{address: {}}}\n",
            bed.hosts[0].address
        ),
    );
    write(
        repo,
        "tenants/acme/tenant.yaml",
        &format!("{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{}}\n"),
    );
    write(repo, "tenants/acme/data.yaml", &volume("32Mi", POOL));
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    let path = format!("{POOL}/acme/data");
    assert!(
        bed.ssh(&host, &format!("btrfs subvolume show {path}"))
            .status
            .success(),
        "no subvolume"
    );
    // Discovery (issue 28): a subvolume made by hand is listed, nimbus's own is not.
    bed.ssh_ok(
        &host,
        &format!("btrfs subvolume create {POOL}/by-hand >/dev/null"),
    );
    let objects = common::discovered(repo, &[]);
    let subvolumes: Vec<&str> = objects
        .iter()
        .filter(|o| o["detail"] == "btrfs subvolume")
        .filter_map(|o| o["identity"].as_str())
        .collect();
    assert!(
        subvolumes.contains(&format!("{POOL}/by-hand").as_str()),
        "{objects:?}"
    );
    assert!(!subvolumes.contains(&path.as_str()), "{objects:?}");
    bed.ssh_ok(
        &host,
        &format!("btrfs subvolume delete {POOL}/by-hand >/dev/null"),
    );
    // A write over the quota is refused by the file system.
    let over = bed.ssh(
        &host,
        &format!("dd if=/dev/zero of={path}/big bs=1M count=64 conv=fsync 2>&1"),
    );
    assert!(
        !over.status.success(),
        "a write over the quota went through"
    );
    assert!(
        text(&over.stdout).contains("quota"),
        "{}",
        text(&over.stdout)
    );
    bed.ssh_ok(&host, &format!("rm -f {path}/big; sync"));

    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // A new size is a new limit.
    write(repo, "tenants/acme/data.yaml", &volume("96Mi", POOL));
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    let limit = bed.ssh_ok(
        &host,
        &format!("btrfs qgroup show -rf --raw {path} | awk 'NR>2 {{print $4}}'"),
    );
    assert_eq!(limit.trim(), (96u64 << 20).to_string());

    // A pool path that is not btrfs: the Volume fails with the reason.
    write(
        repo,
        "tenants/acme/other.yaml",
        &volume("8Mi", "/srv/nimbus").replace("name: data", "name: other"),
    );
    let refused = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Volume/acme/other") && said.contains("is not on btrfs"),
        "{said}"
    );
    std::fs::remove_file(repo.join("tenants/acme/other.yaml")).unwrap_or_else(|e| panic!("{e}"));

    // With data in it, removing it from git is refused without --allow-deletes.
    bed.ssh_ok(&host, &format!("echo keep > {path}/file"));
    std::fs::remove_file(repo.join("tenants/acme/data.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let kept = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&kept.stdout), text(&kept.stderr));
    assert_ne!(kept.status.code(), Some(0), "{said}");
    assert!(said.contains("--allow-deletes"), "{said}");
    assert!(
        bed.ssh(&host, &format!("test -e {path}/file"))
            .status
            .success()
    );
    ok(&nimbus(
        repo,
        &["apply", "--auto-approve", "--allow-deletes", "."],
    ));
    assert!(
        !bed.ssh(&host, &format!("test -e {path}")).status.success(),
        "still there"
    );
    drop(pool);
}

/// A Volume whose host changes is a replace whose delete runs on the host state records: an
/// empty one moves; one holding data is moved only with `--allow-deletes` (its data would be
/// left behind), and the plan says so.
#[test]
fn a_volume_whose_host_changes_is_replaced_on_the_recorded_host() {
    let bed = Bed::up_vm(2);
    let (h1, h2) = (bed.hosts[0].name.clone(), bed.hosts[1].name.clone());
    let pools = [
        BtrfsPool::new(&bed, &h1, POOL),
        BtrfsPool::new(&bed, &h2, POOL),
    ];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "volumes", &bed.known_hosts, &bed.key);
    let hosts = bed
        .hosts
        .iter()
        .map(|h| {
            format!(
                "{HEADER}kind: Host\nmetadata: {{name: {}}}\nspec: {{address: {}}}\n",
                h.name, h.address
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    write(repo, "hosts.yaml", &hosts);
    write(
        repo,
        "tenants/acme/tenant.yaml",
        &format!("{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{}}\n"),
    );
    let on = |host: &str| volume("32Mi", POOL).replace("host: h1", &format!("host: {host}"));
    write(repo, "tenants/acme/data.yaml", &on(&h1));
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    let path = format!("{POOL}/acme/data");
    let exists = |host: &str| bed.ssh(host, &format!("test -d {path}")).status.success();
    assert!(exists(&h1));

    // Empty: moved.
    write(repo, "tenants/acme/data.yaml", &on(&h2));
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains("-/+ Volume/acme/data"), "{plan}");
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(exists(&h2), "not made on its new host");
    assert!(!exists(&h1), "left behind on its old host");

    // Holding data: refused, saying the data would be left behind, until --allow-deletes.
    bed.ssh_ok(&h2, &format!("echo keep > {path}/file; sync"));
    write(repo, "tenants/acme/data.yaml", &on(&h1));
    let refused = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "on Host/{h2}: moving it to Host/{h1} would leave that data behind"
        )),
        "{said}"
    );
    assert!(exists(&h2) && !exists(&h1), "{said}");
    ok(&nimbus(
        repo,
        &["apply", "--auto-approve", "--allow-deletes", "."],
    ));
    assert!(exists(&h1) && !exists(&h2));
    drop(pools);
}
