//! Storage: Volumes on hosts, btrfs subvolumes and directories ([`volume`]), NFS exports
//! ([`nfs`]), and S3 buckets ([`s3`]).

pub mod nfs;
pub mod s3;
pub mod volume;
