//! `nimbus apply` of `type: s3` Volumes against moto's S3 server on loopback, with
//! authentication on (testbed/s3.sh), checked with boto3, a third-party client: the bucket
//! is created and tagged; a second plan is empty; a new size is a new tag; other tags are
//! kept; a bucket with objects is deleted only with `--allow-deletes`; keys the endpoint
//! refuses fail the S3 Volumes with the server's reason, and a File on a host beside them is
//! applied all the same. moto is an emulator: docs/volumes.md says what that does not prove.

use crate::common;
use crate::sshd;
use common::{encrypt_secret, ok, text, write};
use sshd::bed::Bed;
use sshd::s3::Moto;

use std::path::Path;
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

fn volume(size: &str) -> String {
    format!("{HEADER}kind: Volume\nmetadata: {{name: data}}\nspec: {{type: s3, size: {size}}}\n")
}

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

#[test]
fn an_s3_volume_is_a_tagged_bucket_deleted_only_with_allow_deletes() {
    let moto = Moto::start();
    let (id, secret) = moto.keys();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("key");
    sshd::keygen(&key);
    let repo = dir.path().join("repo");
    write(
        &repo,
        "nimbus.yaml",
        &format!(
            "{HEADER}kind: Repository\nmetadata: {{name: s3}}\nspec:\n  secrets: {{recipients: [\"{}\"], identityFile: {}}}\n  s3:\n    endpoint: {}\n    accessKeyId: {{secret: s3#accessKeyId}}\n    secretAccessKey: {{secret: s3#secretAccessKey}}\n",
            common::age_recipient(&key),
            key.display(),
            moto.endpoint()
        ),
    );
    encrypt_secret(
        &repo,
        "s3",
        &format!("accessKeyId: {id}\nsecretAccessKey: {secret}\n"),
    );
    write(
        &repo,
        "tenants/acme/tenant.yaml",
        &format!("{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{}}\n"),
    );
    write(&repo, "tenants/acme/data.yaml", &volume("1Gi"));

    let planned = ok(&nimbus(&repo, &["plan", "."]));
    assert!(planned.contains("Volume/acme/data"), "{planned}");
    let applied = nimbus(&repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    assert!(!said.contains(&secret), "the secret key was shown");
    let tags = moto.boto3(
        "print(json.dumps({t['Key']: t['Value'] for t in s3.get_bucket_tagging(Bucket='acme-data')['TagSet']}, sort_keys=True))",
    );
    let tags: serde_json::Value =
        serde_json::from_str(tags.trim()).unwrap_or_else(|e| panic!("{e}: {tags}"));
    assert_eq!(tags["dev.nimbus.managed-by"], "nimbus", "{tags}");
    assert_eq!(tags["dev.nimbus.address"], "Volume/acme/data", "{tags}");
    assert_eq!(tags["dev.nimbus.size"], "1Gi", "{tags}");

    let again = nimbus(&repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // A tag of someone else's stays through a new size.
    moto.boto3(
        "t = s3.get_bucket_tagging(Bucket='acme-data')['TagSet']\nt.append({'Key': 'team', 'Value': 'storage'})\ns3.put_bucket_tagging(Bucket='acme-data', Tagging={'TagSet': t})",
    );
    write(&repo, "tenants/acme/data.yaml", &volume("2Gi"));
    let resized = ok(&nimbus(&repo, &["apply", "--auto-approve", "."]));
    assert!(resized.contains("Volume/acme/data"), "{resized}");
    let tags = moto.boto3(
        "print(json.dumps({t['Key']: t['Value'] for t in s3.get_bucket_tagging(Bucket='acme-data')['TagSet']}, sort_keys=True))",
    );
    let tags: serde_json::Value =
        serde_json::from_str(tags.trim()).unwrap_or_else(|e| panic!("{e}: {tags}"));
    assert_eq!(tags["dev.nimbus.size"], "2Gi", "{tags}");
    assert_eq!(tags["team"], "storage", "{tags}");

    // With an object in it, removing it from git is refused without --allow-deletes.
    moto.boto3("s3.put_object(Bucket='acme-data', Key='keep/me.txt', Body=b'data')");
    std::fs::remove_file(repo.join("tenants/acme/data.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let kept = nimbus(&repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&kept.stdout), text(&kept.stderr));
    assert_ne!(kept.status.code(), Some(0), "{said}");
    assert!(said.contains("--allow-deletes"), "{said}");
    let listed =
        moto.boto3("print([o['Key'] for o in s3.list_objects_v2(Bucket='acme-data')['Contents']])");
    assert!(listed.contains("keep/me.txt"), "{listed}");

    let removed = nimbus(&repo, &["apply", "--auto-approve", "--allow-deletes", "."]);
    let said = format!("{}{}", text(&removed.stdout), text(&removed.stderr));
    assert_eq!(removed.status.code(), Some(0), "{said}");
    let buckets = moto.boto3("print([b['Name'] for b in s3.list_buckets()['Buckets']])");
    assert!(!buckets.contains("acme-data"), "{buckets}");

    // A bucket nimbus did not create is not taken over, and never deleted.
    moto.boto3("s3.create_bucket(Bucket='theirs')\ns3.put_object(Bucket='theirs', Key='theirs.txt', Body=b'theirs')");
    // Discovery (issue 28) lists it, and nothing nimbus tagged.
    let objects = common::discovered(&repo, &[]);
    let buckets: Vec<&str> = objects
        .iter()
        .filter(|o| {
            o["kind"] == "Volume"
                && o["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("S3 bucket"))
        })
        .filter_map(|o| o["identity"].as_str())
        .collect();
    assert_eq!(buckets, ["theirs"], "{objects:?}");
    write(
        &repo,
        "tenants/acme/theirs.yaml",
        &format!(
            "{HEADER}kind: Volume\nmetadata: {{name: theirs}}\nspec: {{type: s3, size: 1Gi, bucket: theirs}}\n"
        ),
    );
    let taken = nimbus(&repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&taken.stdout), text(&taken.stderr));
    assert_eq!(taken.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Volume/acme/theirs") && said.contains("exists, not managed"),
        "{said}"
    );
    let tagged = moto.boto3(
        "try:\n    t = s3.get_bucket_tagging(Bucket='theirs')['TagSet']\nexcept Exception:\n    t = []\nprint(any(x['Key'].startswith('dev.nimbus') for x in t))",
    );
    assert_eq!(
        tagged.trim(),
        "False",
        "nimbus tagged a bucket it did not create"
    );
    std::fs::remove_file(repo.join("tenants/acme/theirs.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let left = nimbus(&repo, &["apply", "--auto-approve", "--allow-deletes", "."]);
    let said = format!("{}{}", text(&left.stdout), text(&left.stderr));
    assert_eq!(left.status.code(), Some(0), "{said}");
    let listed =
        moto.boto3("print([o['Key'] for o in s3.list_objects_v2(Bucket='theirs')['Contents']])");
    assert!(listed.contains("theirs.txt"), "{listed}");
}

#[test]
fn keys_the_endpoint_refuses_fail_only_the_s3_volumes() {
    let moto = Moto::start();
    let bed = Bed::up(1);
    let host = bed.hosts[0].name.clone();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "s3-refused", &bed.known_hosts, &bed.key);
    let settings = format!("  s3: {{endpoint: {}}}\n", moto.endpoint());
    let mut repository =
        std::fs::read_to_string(repo.join("nimbus.yaml")).unwrap_or_else(|e| panic!("{e}"));
    repository.push_str(&settings);
    write(repo, "nimbus.yaml", &repository);
    write(
        repo,
        "hosts.yaml",
        &format!(
            "{HEADER}kind: Host\nmetadata: {{name: {host}}}\nspec: {{address: {}}}\n---\n{HEADER}kind: File\nmetadata: {{name: motd}}\nspec: {{host: {host}, path: /etc/motd-s3, content: \"beside the bucket\\n\"}}\n",
            bed.hosts[0].address
        ),
    );
    write(
        repo,
        "tenants/acme/tenant.yaml",
        &format!("{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{}}\n"),
    );
    write(repo, "tenants/acme/data.yaml", &volume("1Gi"));
    let (id, _) = moto.keys();
    let refused = common::nimbus_with(
        &["apply", "--auto-approve", "."],
        repo,
        &[
            ("AWS_ACCESS_KEY_ID", &id),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret-key"),
        ],
    );
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("SignatureDoesNotMatch"), "{said}");
    assert!(said.contains("Volume/acme/data"), "{said}");
    assert!(
        !said.contains("not-the-secret-key"),
        "the secret key was shown"
    );
    assert_eq!(
        bed.ssh_ok(&host, "cat /etc/motd-s3"),
        "beside the bucket\n",
        "the File beside the refused Volume was not applied"
    );
    let buckets = moto.boto3("print([b['Name'] for b in s3.list_buckets()['Buckets']])");
    assert!(!buckets.contains("acme-data"), "{buckets}");
}
