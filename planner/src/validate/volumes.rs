//! A Volume's rules: an s3 Volume needs the Repository's endpoint and a bucket name S3 accepts.

use crate::diagnostics::Problem;
use crate::tree::Segment;
use nimbus_schemas::{Spec, VolumeSpec};

use super::common::bucket_name_problem;

use super::common::Check;

/// An s3 Volume's own rules.
pub(super) fn check_s3_volume(at: &Check<'_>, v: &VolumeSpec, problems: &mut Vec<Problem>) {
    let Check {
        model,
        document,
        address,
    } = at;
    let has_endpoint = model
        .repository()
        .is_some_and(|d| matches!(&d.resource.spec, Spec::Repository(r) if r.s3.is_some()));
    if !has_endpoint {
        problems.push(
                Problem::error(
                    "nimbus::volume::no_s3_endpoint",
                    format!("{address} is an s3 Volume, but the Repository names no S3 endpoint"),
                    document.label(document.spec_span(&[Segment::Key("type")]), "s3 here"),
                )
                .with_help(
                    "an s3 Volume is a bucket on the Repository's endpoint: set `s3: {endpoint: https://HOST, \
                     secretAccessKey: {secret: NAME}}` in nimbus.yaml",
                ),
            );
    }
    let bucket = v.bucket.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            document.resource.tenant.as_deref().unwrap_or_default(),
            document.resource.name()
        )
    });
    if let Some(problem) = bucket_name_problem(&bucket) {
        let (span, note) = match v.bucket {
            Some(_) => (
                document.spec_span(&[Segment::Key("bucket")]),
                "this bucket name",
            ),
            None => (document.name_span(), "named TENANT-NAME after this"),
        };
        problems.push(
            Problem::error(
                "nimbus::volume::bucket_name",
                format!("`{bucket}` is not a bucket name S3 accepts: {problem}"),
                document.label(span, note),
            )
            .with_help("give the Volume a `bucket` that S3 accepts"),
        );
    }
}
