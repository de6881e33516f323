//! Webhook signatures: who may wake the daemon.

use std::collections::BTreeMap;

/// A constant-time comparison.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a webhook call carries the secret: GitHub's `X-Hub-Signature-256`
/// (`sha256=` + HMAC-SHA256 of the body), GitLab's `X-Gitlab-Token` (the secret itself),
/// Gitea's `X-Gitea-Signature` (hex HMAC-SHA256), or `X-Nimbus-Signature` (as GitHub's).
pub fn verify_webhook(secret: &str, headers: &BTreeMap<String, String>, body: &[u8]) -> bool {
    let mac = crate::secrets::fingerprint(secret.as_bytes(), body);
    let hex = mac.trim_start_matches("hmac-sha256:");
    let prefixed = format!("sha256={hex}");
    if let Some(sig) = headers.get("x-hub-signature-256") {
        return same(sig.trim().as_bytes(), prefixed.as_bytes());
    }
    if let Some(sig) = headers.get("x-nimbus-signature") {
        return same(sig.trim().as_bytes(), prefixed.as_bytes());
    }
    if let Some(sig) = headers.get("x-gitea-signature") {
        return same(sig.trim().as_bytes(), hex.as_bytes());
    }
    if let Some(token) = headers.get("x-gitlab-token") {
        return same(token.trim().as_bytes(), secret.as_bytes());
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures() {
        let body = b"{\"ref\":\"refs/heads/main\"}";
        let hex = crate::secrets::fingerprint(b"s3cret", body)
            .trim_start_matches("hmac-sha256:")
            .to_owned();
        let with = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(verify_webhook(
            "s3cret",
            &with("x-hub-signature-256", &format!("sha256={hex}")),
            body
        ));
        assert!(!verify_webhook(
            "s3cret",
            &with("x-hub-signature-256", &format!("sha256={hex}")),
            b"tampered"
        ));
        assert!(verify_webhook(
            "s3cret",
            &with("x-gitea-signature", &hex),
            body
        ));
        assert!(verify_webhook(
            "s3cret",
            &with("x-gitlab-token", "s3cret"),
            body
        ));
        assert!(!verify_webhook(
            "s3cret",
            &with("x-gitlab-token", "guess"),
            body
        ));
        assert!(verify_webhook(
            "s3cret",
            &with("x-nimbus-signature", &format!("sha256={hex}")),
            body
        ));
        assert!(!verify_webhook("s3cret", &BTreeMap::new(), body));
    }
}
