//! `nimbus secret encrypt | decrypt | edit | rekey | list`: the age-encrypted files under
//! `secrets/`, encrypted to the Repository's `secrets.recipients`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_schemas::Spec;

use crate::render::{print_stderr, print_stdout};
use crate::secrets::{self, Plaintext};
use crate::workdir::read_working_tree;

#[derive(Debug, Args)]
pub struct SecretArgs {
    /// The config repository (any folder in it: the repository is found by walking up to its
    /// nimbus.yaml).
    #[arg(long, default_value = ".", global = true)]
    pub dir: PathBuf,
    /// The age identity file (or unencrypted OpenSSH private key) that decrypts; otherwise
    /// NIMBUS_AGE_IDENTITY, otherwise the Repository's secrets.identityFile.
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Encrypt FILE (or standard input, `-`) to the recipients as secrets/NAME.age.
    Encrypt {
        name: String,
        /// The plaintext: a file, or `-` for standard input (the default).
        #[arg(default_value = "-")]
        input: String,
    },
    /// Print a secret's value on standard output (refused on a terminal without --force).
    Decrypt {
        name: String,
        /// Print even when standard output is a terminal.
        #[arg(long)]
        force: bool,
    },
    /// Edit a secret in $EDITOR (a 0600 file in a private directory, wiped afterwards) and
    /// encrypt the result; a new NAME starts empty.
    Edit { name: String },
    /// Re-encrypt every secret to the current recipients (after adding or removing one).
    Rekey,
    /// Every secret, with its recipients as the file's header shows them.
    List,
}

/// The Repository's secret settings, read without checking the rest of the repository (a
/// manifest may reference a secret that is about to be created).
struct Settings {
    root: PathBuf,
    recipients: Vec<String>,
    identity_file: Option<String>,
}

fn settings(dir: &Path) -> Result<Settings> {
    let root = crate::workdir::repository_root(dir)?;
    let (input, _) = read_working_tree(&root)?;
    let (model, _) = nimbus_planner::load::load(input);
    let (recipients, identity_file) = match model.repository().map(|d| &d.resource.spec) {
        Some(Spec::Repository(r)) => (
            r.secrets.recipients.clone(),
            r.secrets.identity_file.clone(),
        ),
        _ => (Vec::new(), None),
    };
    Ok(Settings {
        root,
        recipients,
        identity_file,
    })
}

fn identities(args: &SecretArgs, settings: &Settings) -> Result<Vec<Box<dyn age::Identity>>> {
    let (path, origin) = secrets::identity_path(
        args.identity.as_deref(),
        &settings.root,
        settings.identity_file.as_deref(),
    )
    .ok_or_else(|| {
        miette::miette!(
            "no age identity to decrypt with: pass --identity FILE, set {}, or set secrets.identityFile in the Repository",
            secrets::IDENTITY_ENV
        )
    })?;
    secrets::load_identities(&path).wrap_err_with(|| format!("the identity named by {origin}"))
}

/// Writes `secrets/NAME.age` atomically.
pub(crate) fn write_secret(root: &Path, name: &str, armored: &str) -> Result<()> {
    let path = secrets::secret_path(root, name);
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    let temporary = dir.join(format!(".{name}.age.tmp"));
    std::fs::write(&temporary, armored)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", path.display()))
}

fn read_secret(root: &Path, name: &str) -> Result<Vec<u8>> {
    let path = secrets::secret_path(root, name);
    match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(miette::miette!(
            "no secret `{name}` ({} does not exist); create it with `nimbus secret encrypt {name}`",
            path.display()
        )),
        read => read
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", path.display())),
    }
}

/// Every secret's name, sorted.
fn names(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("secrets");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".age"))
                    .filter(|n| !n.starts_with('.'))
                    .map(str::to_owned)
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read {}", dir.display()));
        }
    };
    names.sort();
    Ok(names)
}

pub fn run(args: SecretArgs) -> Result<i32> {
    let settings = settings(&args.dir)?;
    let check = secrets::check_name;
    match &args.command {
        SecretCommand::Encrypt { name, input } => {
            check(name)?;
            let recipients = secrets::recipients(&settings.recipients)?;
            let mut bytes = Vec::new();
            if input == "-" {
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .into_diagnostic()
                    .wrap_err("cannot read the plaintext from standard input")?;
            } else {
                bytes = std::fs::read(input)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("cannot read {input}"))?;
            }
            let plaintext = Plaintext::new(bytes);
            let armored = secrets::encrypt(&recipients, plaintext.bytes())?;
            write_secret(&settings.root, name, &armored)?;
            print_stderr(&format!(
                "encrypted secrets/{name}.age to {} recipient{}\n",
                recipients.len(),
                if recipients.len() == 1 { "" } else { "s" }
            ));
            Ok(0)
        }
        SecretCommand::Decrypt { name, force } => {
            check(name)?;
            if std::io::stdout().is_terminal() && !force {
                miette::bail!(
                    "refusing to print secret `{name}` on a terminal; redirect standard output, or pass --force"
                );
            }
            let file = read_secret(&settings.root, name)?;
            let identities = identities(&args, &settings)?;
            let plaintext = secrets::decrypt(&identities, &file)
                .wrap_err_with(|| format!("secret `{name}`"))?;
            let mut out = std::io::stdout().lock();
            out.write_all(plaintext.bytes())
                .and_then(|()| out.flush())
                .into_diagnostic()?;
            Ok(0)
        }
        SecretCommand::Edit { name } => {
            check(name)?;
            let recipients = secrets::recipients(&settings.recipients)?;
            let path = secrets::secret_path(&settings.root, name);
            let current = if path.exists() {
                let identities = identities(&args, &settings)?;
                secrets::decrypt(&identities, &read_secret(&settings.root, name)?)
                    .wrap_err_with(|| format!("secret `{name}`"))?
            } else {
                Plaintext::new(Vec::new())
            };
            let edited = edit(name, &current)?;
            if edited.bytes() == current.bytes() && path.exists() {
                print_stderr(&format!("secret `{name}` unchanged\n"));
                return Ok(0);
            }
            let armored = secrets::encrypt(&recipients, edited.bytes())?;
            write_secret(&settings.root, name, &armored)?;
            print_stderr(&format!("encrypted secrets/{name}.age\n"));
            Ok(0)
        }
        SecretCommand::Rekey => {
            let recipients = secrets::recipients(&settings.recipients)?;
            let identities = identities(&args, &settings)?;
            let all = names(&settings.root)?;
            // Decrypt everything first: a secret this identity cannot open stops the rekey
            // before any file is rewritten.
            let mut values = Vec::new();
            for name in &all {
                let value = secrets::decrypt(&identities, &read_secret(&settings.root, name)?)
                    .wrap_err_with(|| {
                        format!("secret `{name}` cannot be decrypted: nothing was rekeyed")
                    })?;
                values.push((name, value));
            }
            for (name, value) in &values {
                let armored = secrets::encrypt(&recipients, value.bytes())?;
                write_secret(&settings.root, name, &armored)?;
            }
            print_stderr(&format!(
                "re-encrypted {} secret{} to {} recipient{}\n",
                values.len(),
                if values.len() == 1 { "" } else { "s" },
                recipients.len(),
                if recipients.len() == 1 { "" } else { "s" }
            ));
            Ok(0)
        }
        SecretCommand::List => {
            for name in names(&settings.root)? {
                let file = read_secret(&settings.root, &name)?;
                let line = match secrets::stanzas(&file) {
                    Ok(stanzas) => {
                        let kinds: Vec<&str> = stanzas.iter().map(|(k, _)| k.as_str()).collect();
                        let current = secrets::encrypted_to_any(&stanzas, &settings.recipients);
                        format!(
                            "{name}\t{} recipient{} ({}){}",
                            stanzas.len(),
                            if stanzas.len() == 1 { "" } else { "s" },
                            kinds.join(", "),
                            if current {
                                ""
                            } else {
                                "\tnot encrypted to any listed recipient: run `nimbus secret rekey`"
                            }
                        )
                    }
                    Err(e) => format!("{name}\t{}", e.sentence()),
                };
                print_stdout(&format!("{line}\n"));
            }
            Ok(0)
        }
    }
}

/// Opens $EDITOR (else $VISUAL, else vi) on the value in a 0600 file inside a 0700 private
/// directory, reads the result and wipes the file.
fn edit(name: &str, current: &Plaintext) -> Result<Plaintext> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "nimbus-secret-{}-{}",
        std::process::id(),
        secrets::random_key()
            .map(|k| k
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>())
            .unwrap_or_default()
    ));
    std::fs::create_dir(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create a private directory {}", dir.display()))?;
    let file = dir.join(name);
    let wipe = |file: &Path| {
        if let Ok(len) = std::fs::metadata(file).map(|m| m.len())
            && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(file)
        {
            let _ = f.write_all(&vec![0u8; len as usize]);
            let _ = f.sync_all();
        }
        let _ = std::fs::remove_file(file);
        let _ = std::fs::remove_dir(file.parent().unwrap_or(file));
    };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .into_diagnostic()?;
        f.write_all(current.bytes()).into_diagnostic()?;
        drop(f);
        let editor = std::env::var("EDITOR")
            .or_else(|_| std::env::var("VISUAL"))
            .unwrap_or_else(|_| "vi".into());
        // $EDITOR may carry arguments (`code --wait`): run it through the shell.
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("nimbus-editor")
            .arg(&file)
            .status()
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot run the editor `{editor}`"))?;
        if !status.success() {
            miette::bail!("the editor `{editor}` exited with {status}; the secret is unchanged");
        }
        let bytes = std::fs::read(&file).into_diagnostic()?;
        Ok(Plaintext::new(bytes))
    })();
    wipe(&file);
    result
}
