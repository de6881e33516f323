//! The S3 provider's buckets run the provider contract against moto's S3 server on loopback
//! (authentication on), checked with boto3, not through nimbus.

use crate::sshd;
use sshd::s3::Moto;

use nimbus_provider_contract::{Case, Hands, check};
use nimbus_providers::s3::{S3Config, S3Provider, bucket_of};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Boto<'a> {
    moto: &'a Moto,
}

const UNOWNED: &str = "acme-by-hand";

impl Boto<'_> {
    fn bucket_exists(&self, bucket: &str) -> bool {
        self.moto
            .boto3(&format!(
                "print('{bucket}' in [b['Name'] for b in s3.list_buckets()['Buckets']])"
            ))
            .trim()
            == "True"
    }
}

impl Hands for Boto<'_> {
    fn identity(&self, case: &Case, spec: &Value) -> String {
        bucket_of(&case.resource, spec).unwrap_or_else(|e| panic!("{e}"))
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        self.bucket_exists(&self.identity(case, spec))
    }
    fn drift(&self, case: &Case, spec: &Value) {
        // Its size tag changed by hand.
        self.moto.boto3(&format!(
            "b = '{}'\nt = [x for x in s3.get_bucket_tagging(Bucket=b)['TagSet'] if x['Key'] != 'dev.nimbus.size']\nt.append({{'Key': 'dev.nimbus.size', 'Value': '1Mi'}})\ns3.put_bucket_tagging(Bucket=b, Tagging={{'TagSet': t}})",
            self.identity(case, spec)
        ));
    }
    fn make_unowned(&self, _case: &Case) {
        self.moto
            .boto3(&format!("s3.create_bucket(Bucket='{UNOWNED}')"));
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.bucket_exists(UNOWNED)
    }
    fn remove_unowned(&self, _case: &Case) {
        self.moto
            .boto3(&format!("s3.delete_bucket(Bucket='{UNOWNED}')"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_provider_keeps_the_contract_for_buckets() {
    let moto = Moto::start();
    let (access_key_id, secret_access_key) = moto.keys();
    let provider = S3Provider::new(S3Config {
        endpoint: moto.endpoint(),
        region: "us-east-1".into(),
        access_key_id,
        secret_access_key,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = |size: &str| json!({"type": "s3", "size": size, "tenant": "acme"});
    let mut replace = spec("2Gi");
    replace["bucket"] = json!("acme-contract-moved");
    let mut bad = spec("1Gi");
    // Not a bucket name S3 takes.
    bad["bucket"] = json!("Not_A_Bucket");
    let case = Case {
        kind: Kind::Volume,
        resource: "Volume/acme/contract".into(),
        target: None,
        spec: spec("1Gi"),
        update: spec("2Gi"),
        replace: Some(replace),
        bad,
    };
    check(&provider, &Boto { moto: &moto }, &case).await;
}
