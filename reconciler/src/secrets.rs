//! Secrets: `secrets/NAME.age` in the repository, armored age files encrypted to the
//! Repository's `secrets.recipients` (age X25519, ssh-ed25519 or ssh-rsa public keys).
//!
//! Plaintext lives only in memory, in [`Plaintext`], which has no `Debug`/`Display` and is
//! wiped when dropped. Plans, state and logs see a secret only as its reference and a keyed
//! fingerprint ([`fingerprint`]: HMAC-SHA256 under a key kept in state), never the value or a
//! plain hash of it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The environment variable naming an age identity file.
pub const IDENTITY_ENV: &str = "NIMBUS_AGE_IDENTITY";

/// Why a secret could not be named, encrypted or decrypted. The cause, where there is one,
/// is the error's source; [`SecretError::sentence`] is the whole chain on one line.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SecretError {
    #[error("`{0}` is not a secret name: use letters, digits, `-`, `_` and `.` (secrets/NAME.age)")]
    #[diagnostic(code(nimbus::secret::name))]
    Name(String),
    #[error(
        "the Repository lists no secrets.recipients: add the public keys secrets are encrypted to (age1..., ssh-ed25519 ..., ssh-rsa ...)"
    )]
    #[diagnostic(code(nimbus::secret::recipients))]
    NoRecipients,
    #[error("secrets.recipients: `{recipient}` is not {what}")]
    #[diagnostic(code(nimbus::secret::recipients))]
    Recipient {
        recipient: String,
        what: &'static str,
        #[source]
        cause: Cause,
    },
    #[error("cannot encrypt")]
    #[diagnostic(code(nimbus::secret::encrypt))]
    Encrypt(#[source] Cause),
    #[error("cannot read the identity {}", .0.display())]
    #[diagnostic(code(nimbus::secret::identity))]
    ReadIdentity(PathBuf, #[source] std::io::Error),
    #[error("{}: {reason}", path.display())]
    #[diagnostic(code(nimbus::secret::identity))]
    Identity {
        path: PathBuf,
        reason: &'static str,
        #[source]
        cause: Option<Cause>,
    },
    #[error("not an age file")]
    #[diagnostic(code(nimbus::secret::format))]
    NotAge(#[source] Option<Cause>),
    #[error(
        "the identity is not one of its recipients (was it encrypted to this key? `nimbus secret rekey` re-encrypts to the current recipients)"
    )]
    #[diagnostic(code(nimbus::secret::not_a_recipient))]
    NotARecipient,
    #[error("cannot decrypt")]
    #[diagnostic(code(nimbus::secret::decrypt))]
    Decrypt(#[source] Cause),
}

/// The error under a [`SecretError`]: age's, or the system's.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl SecretError {
    /// The error and each of its causes, joined by `: ` (for plans and logs, which keep one
    /// line per reason).
    pub fn sentence(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            out.push_str(": ");
            out.push_str(&error.to_string());
            cause = error.source();
        }
        out
    }
}

/// A decrypted secret: no `Display`, a `Debug` that shows `(sensitive)`, wiped on drop.
pub struct Plaintext(Vec<u8>);

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, for a File's content or an environment variable.
    pub fn text(&self) -> Result<&str, String> {
        std::str::from_utf8(&self.0).map_err(|_| "is not UTF-8 text".to_owned())
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Where a secret's file lives in the repository.
pub fn secret_path(root: &Path, name: &str) -> PathBuf {
    root.join("secrets").join(format!("{name}.age"))
}

/// A secret name is a path segment: letters, digits, `-`, `_`, `.` (not leading).
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SecretError::Name(name.to_owned()))
    }
}

/// The Repository's recipients, parsed. Each one's problem names it.
pub fn recipients(list: &[String]) -> Result<Vec<Box<dyn age::Recipient + Send>>, SecretError> {
    if list.is_empty() {
        return Err(SecretError::NoRecipients);
    }
    list.iter()
        .map(|text| {
            let text = text.trim();
            if text.starts_with("age1") {
                age::x25519::Recipient::from_str(text)
                    .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
                    .map_err(|e| SecretError::Recipient {
                        recipient: text.to_owned(),
                        what: "an age recipient",
                        cause: e.into(),
                    })
            } else {
                age::ssh::Recipient::from_str(text)
                    .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
                    .map_err(|e| SecretError::Recipient {
                        recipient: text
                            .split_whitespace()
                            .take(2)
                            .collect::<Vec<_>>()
                            .join(" "),
                        what: "an age, ssh-ed25519 or ssh-rsa public key",
                        cause: format!("{e:?}").into(),
                    })
            }
        })
        .collect()
}

/// Encrypts to every recipient, armored.
pub fn encrypt(
    recipients: &[Box<dyn age::Recipient + Send>],
    plaintext: &[u8],
) -> Result<String, SecretError> {
    let encrypt = |e: Cause| SecretError::Encrypt(e);
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| encrypt(e.into()))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| encrypt(e.into()))?;
    let mut writer = encryptor
        .wrap_output(armor)
        .map_err(|e| encrypt(e.into()))?;
    writer.write_all(plaintext).map_err(|e| encrypt(e.into()))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| encrypt(e.into()))?;
    String::from_utf8(out).map_err(|_| encrypt("the armor is not text".into()))
}

/// The identities in an age identity file (`AGE-SECRET-KEY-1...` lines) or an unencrypted
/// OpenSSH private key (ed25519 or RSA).
pub fn load_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity>>, SecretError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| SecretError::ReadIdentity(path.to_owned(), e))?;
    let identity = |reason: &'static str, cause: Option<Cause>| SecretError::Identity {
        path: path.to_owned(),
        reason,
        cause,
    };
    if text.contains("AGE-SECRET-KEY-") {
        let unusable = "not a usable age identity file";
        let file = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|e| identity(unusable, Some(e.into())))?;
        return file
            .into_identities()
            .map_err(|e| identity(unusable, Some(e.into())));
    }
    match age::ssh::Identity::from_buffer(text.as_bytes(), Some(path.display().to_string())) {
        Ok(found @ age::ssh::Identity::Unencrypted(_)) => Ok(vec![Box::new(found)]),
        Ok(age::ssh::Identity::Encrypted(_)) => Err(identity(
            "a passphrase-protected SSH key cannot be used without a terminal; use an unencrypted key or an age identity",
            None,
        )),
        Ok(age::ssh::Identity::Unsupported(kind)) => Err(identity(
            "unsupported SSH key; use ed25519, RSA or an age identity",
            Some(format!("{kind:?}").into()),
        )),
        Err(e) => Err(identity(
            "neither an age identity file nor an OpenSSH private key",
            Some(e.into()),
        )),
    }
}

/// Decrypts an armored (or binary) age file.
pub fn decrypt(
    identities: &[Box<dyn age::Identity>],
    file: &[u8],
) -> Result<Plaintext, SecretError> {
    let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(file))
        .map_err(|e| SecretError::NotAge(Some(e.into())))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SecretError::NotARecipient,
            other => SecretError::Decrypt(other.into()),
        })?;
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| SecretError::Decrypt(e.into()))?;
    Ok(Plaintext(bytes))
}

/// Where the identity comes from: `--identity`, then `NIMBUS_AGE_IDENTITY`, then the
/// Repository's `secrets.identityFile` (relative to the repository).
pub fn identity_path(
    explicit: Option<&Path>,
    root: &Path,
    repository: Option<&str>,
) -> Option<(PathBuf, &'static str)> {
    if let Some(path) = explicit {
        return Some((path.to_owned(), "--identity"));
    }
    if let Some(path) = std::env::var_os(IDENTITY_ENV).filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(path), IDENTITY_ENV));
    }
    repository.map(|p| (root.join(p), "secrets.identityFile"))
}

/// The recipient stanzas of an age file's header: `(type, arguments)`, read without
/// decrypting anything.
pub fn stanzas(file: &[u8]) -> Result<Vec<(String, Vec<String>)>, SecretError> {
    let mut binary = Vec::new();
    age::armor::ArmoredReader::new(file)
        .take(64 * 1024)
        .read_to_end(&mut binary)
        .map_err(|e| SecretError::NotAge(Some(e.into())))?;
    let text = String::from_utf8_lossy(&binary);
    let mut lines = text.lines();
    if lines.next() != Some("age-encryption.org/v1") {
        return Err(SecretError::NotAge(Some(
            "no age-encryption.org/v1 header".into(),
        )));
    }
    let mut found = Vec::new();
    for line in lines {
        if line.starts_with("---") {
            break;
        }
        if let Some(stanza) = line.strip_prefix("-> ") {
            let mut parts = stanza.split(' ').map(str::to_owned);
            // age adds a random "grease" stanza to every file; it is no recipient.
            if let Some(kind) = parts.next().filter(|k| !k.ends_with("-grease")) {
                found.push((kind, parts.collect()));
            }
        }
    }
    Ok(found)
}

/// Whether a file's stanzas show it is encrypted to at least one of `recipients`. An
/// ssh-ed25519 or ssh-rsa stanza names its recipient by a tag (the first 4 bytes of the
/// SHA-256 of the key); an X25519 stanza names no one, so any X25519 stanza counts for the
/// listed age recipients.
pub fn encrypted_to_any(stanzas: &[(String, Vec<String>)], recipients: &[String]) -> bool {
    recipients.iter().any(|recipient| {
        let mut parts = recipient.split_whitespace();
        let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if kind.starts_with("age1") {
            return stanzas.iter().any(|(k, _)| k == "X25519");
        }
        let Some(blob) = base64_decode(key) else {
            return false;
        };
        let tag = base64_encode_unpadded(&Sha256::digest(&blob)[..4]);
        stanzas
            .iter()
            .any(|(k, args)| k == kind && args.first() == Some(&tag))
    })
}

/// HMAC-SHA256 of `message` under `key`, in hex: the fingerprint by which a secret's changes
/// are seen without showing the value or a plain hash of it.
pub fn fingerprint(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    format!(
        "hmac-sha256:{}",
        outer.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Fresh random bytes from the kernel.
pub fn random_key() -> std::io::Result<Vec<u8>> {
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

fn base64_encode_unpadded(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((buffer >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// Reads a repository file by its path in the repository (working tree or git revision).
pub type ReadFile<'a> = Box<dyn Fn(&str) -> std::io::Result<Vec<u8>> + 'a>;

/// The secrets of one run: decrypted on first use, kept in memory for the run.
pub struct Secrets<'a> {
    read: ReadFile<'a>,
    identities: Result<Vec<Box<dyn age::Identity>>, String>,
    cache: HashMap<String, Result<Plaintext, String>>,
}

impl<'a> Secrets<'a> {
    /// `read` reads `secrets/NAME.age`; `identity`: the identity file and where it was named,
    /// `None` when no identity is given anywhere (an error only for the instances that need a
    /// secret).
    pub fn new(read: ReadFile<'a>, identity: Option<(PathBuf, &'static str)>) -> Self {
        let identities = match identity {
            Some((path, origin)) => {
                load_identities(&path).map_err(|e| format!("{} (from {origin})", e.sentence()))
            }
            None => Err(format!(
                "no age identity to decrypt secrets with: pass --identity FILE, set {IDENTITY_ENV}, or set secrets.identityFile in the Repository"
            )),
        };
        Secrets {
            read,
            identities,
            cache: HashMap::new(),
        }
    }

    /// The value a reference (`NAME` or `NAME#key`) stands for.
    pub fn value(&mut self, reference: &str) -> Result<&Plaintext, String> {
        if !self.cache.contains_key(reference) {
            let value = self.resolve(reference);
            self.cache.insert(reference.to_owned(), value);
        }
        match self.cache.get(reference) {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("secret `{reference}`: not resolved")),
        }
    }

    fn resolve(&mut self, reference: &str) -> Result<Plaintext, String> {
        let (name, key) = match reference.split_once('#') {
            Some((name, key)) => (name, Some(key)),
            None => (reference, None),
        };
        let identities = self
            .identities
            .as_ref()
            .map_err(|e| format!("secret `{name}`: {e}"))?;
        let path = format!("secrets/{name}.age");
        let file =
            (self.read)(&path).map_err(|e| format!("secret `{name}`: cannot read {path}: {e}"))?;
        let whole =
            decrypt(identities, &file).map_err(|e| format!("secret `{name}`: {}", e.sentence()))?;
        let Some(key) = key else {
            return Ok(whole);
        };
        let text = whole
            .text()
            .map_err(|e| format!("secret `{name}` {e}, so it has no key `{key}`"))?;
        let map: HashMap<String, serde_json::Value> =
            serde_saphyr::from_str(text).map_err(|_| {
                format!("secret `{name}` is not a YAML mapping, so it has no key `{key}`")
            })?;
        match map.get(key) {
            Some(serde_json::Value::String(s)) => Ok(Plaintext(s.clone().into_bytes())),
            Some(serde_json::Value::Null) | None => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Err(format!(
                    "secret `{name}` has no key `{key}` (its keys: {})",
                    keys.iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            Some(other) => Ok(Plaintext(other.to_string().into_bytes())),
        }
    }
}

/// Warnings for secret files that are not encrypted to any recipient the Repository lists,
/// read from their headers (nothing is decrypted).
pub fn recipient_warnings(root: &Path, recipients: &[String]) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(root.join("secrets")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    files.sort();
    let mut warnings = Vec::new();
    for path in files {
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let Ok(bytes) = crate::workdir::read_inside(root, &shown) else {
            continue;
        };
        match stanzas(&bytes) {
            Ok(_) if recipients.is_empty() => warnings.push((
                shown.clone(),
                format!(
                    "{shown}: the Repository lists no secrets.recipients; add the public keys secrets are encrypted to, then run `nimbus secret rekey`"
                ),
            )),
            Ok(found) if !encrypted_to_any(&found, recipients) => warnings.push((
                shown.clone(),
                format!(
                    "{shown} is not encrypted to any recipient the Repository lists (secrets.recipients); run `nimbus secret rekey` with an identity that can decrypt it"
                ),
            )),
            Ok(_) => {}
            Err(e) => warnings.push((shown.clone(), format!("{shown}: {e}"))),
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            fingerprint(b"Jefe", b"what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn base64_round_trip() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let encoded = base64_encode_unpadded(bytes);
            assert_eq!(base64_decode(&encoded).as_deref(), Some(bytes));
        }
        assert_eq!(base64_encode_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode_unpadded(b"fo"), "Zm8");
    }

    /// An age X25519 identity file and recipient: encrypt, read the header, decrypt.
    #[test]
    fn x25519_round_trip_and_header() {
        use age::secrecy::ExposeSecret;
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let dir = std::env::temp_dir().join(format!("nimbus-x25519-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let key_file = dir.join("key.txt");
        std::fs::write(
            &key_file,
            format!(
                "# created: by a test\n# public key: {recipient}\n{}\n",
                identity.to_string().expose_secret()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let listed = vec![recipient.clone()];
        let armored = encrypt(
            &recipients(&listed).unwrap_or_else(|e| panic!("{e}")),
            b"value",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let found = stanzas(armored.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(encrypted_to_any(&found, &listed));
        assert!(!encrypted_to_any(
            &found,
            &["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK5".into()]
        ));
        let identities = load_identities(&key_file).unwrap_or_else(|e| panic!("{e}"));
        let plain = decrypt(&identities, armored.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.bytes(), b"value");
        assert_eq!(format!("{plain:?}"), "(sensitive)");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(recipients(&["age1nope".into()]).is_err());
        assert!(recipients(&[]).is_err());
    }

    #[test]
    fn secret_names_are_path_segments() {
        assert!(check_name("db-password").is_ok());
        assert!(check_name("../etc").is_err());
        assert!(check_name(".hidden").is_err());
        assert!(check_name("a/b").is_err());
    }
}
