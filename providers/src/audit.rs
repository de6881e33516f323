//! The writers' audit (docs/security.md): one manifest value through every writer that puts
//! a value into a host's syntax (shell words, systemd command lines, exports(5) lines,
//! nfs-ganesha blocks, a VM's unit), and the check that it arrived there as one literal value
//! or was refused. The fuzz target `fuzz/fuzz_targets/writers.rs` feeds it arbitrary values;
//! the test below feeds it seeded random hostile values on every run of the suite.

use serde_json::json;

use crate::quote::{shell_quote, systemd_escape};

/// Runs `value` through every writer; `Err` says which writer let it out of its place.
pub fn audit(value: &str) -> Result<(), String> {
    shell_word(value)?;
    systemd_word(value)?;
    exports(value)?;
    vm_unit(value)?;
    Ok(())
}

/// A shell word reads back, by POSIX single-quote rules, as the value.
fn shell_word(value: &str) -> Result<(), String> {
    let quoted = shell_quote(value);
    let mut out = String::new();
    let mut inside = false;
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        match (inside, c) {
            (true, '\'') => inside = false,
            (true, c) => out.push(c),
            (false, '\'') => inside = true,
            (false, '\\') => out.push(chars.next().ok_or("shell: a trailing backslash")?),
            (false, c) => return Err(format!("shell: `{c}` outside quotes in {quoted:?}")),
        }
    }
    if inside {
        return Err(format!("shell: an unbalanced quote in {quoted:?}"));
    }
    (out == value)
        .then_some(())
        .ok_or_else(|| format!("shell: {quoted:?} reads back as {out:?}"))
}

/// A systemd word holds no control character and no unescaped `"`, and systemd's unescaping
/// (C escapes, `%%`, `$$`) gives the value back.
fn systemd_word(value: &str) -> Result<(), String> {
    let word = systemd_escape(value);
    if let Some(c) = word.chars().find(|c| c.is_control()) {
        return Err(format!("systemd: control character {c:?} in {word:?}"));
    }
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Err(format!("systemd: an unescaped quote in {word:?}")),
            '%' | '$' => {
                if chars.next() != Some(c) {
                    return Err(format!("systemd: a lone `{c}` in {word:?}"));
                }
                out.push(c);
            }
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    let byte = u8::from_str_radix(&hex, 16)
                        .map_err(|e| format!("systemd: \\x{hex}: {e}"))?;
                    out.push(char::from(byte));
                }
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let code = u32::from_str_radix(&hex, 16)
                        .map_err(|e| format!("systemd: \\u{hex}: {e}"))?;
                    out.push(char::from_u32(code).ok_or("systemd: not a character")?);
                }
                other => return Err(format!("systemd: the escape \\{other:?} in {word:?}")),
            },
            c => out.push(c),
        }
    }
    (out == value)
        .then_some(())
        .ok_or_else(|| format!("systemd: {word:?} reads back as {out:?}"))
}

/// An nfs Volume with the value as its pool and as its client: refused, or exports files of
/// exactly nimbus's lines, each free of control characters, with balanced quotes.
fn exports(value: &str) -> Result<(), String> {
    for spec in [
        json!({"type": "nfs", "size": "1Gi", "pool": value}),
        json!({"type": "nfs", "size": "1Gi", "clients": [value]}),
        json!({"type": "nfs", "size": "1Gi", "clients": ["10.0.0.1", value]}),
    ] {
        let paths = crate::nfs::Paths::new(&spec, "acme", "share");
        if crate::nfs::apply_script(&paths, &spec, "1Gi").is_err() {
            continue;
        }
        let clients: Vec<String> = spec["clients"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| vec!["*".to_owned()]);
        let kernel = crate::nfs::kernel_export(&paths, &clients, "1Gi");
        let lines: Vec<&str> = kernel.lines().collect();
        if lines.len() != 3 || !lines[2].starts_with('"') {
            return Err(format!("exports: {kernel:?} is not nimbus's three lines"));
        }
        if lines[2].matches('(').count() != clients.len() {
            return Err(format!(
                "exports: {:?} does not hold one entry per client",
                lines[2]
            ));
        }
        let ganesha = crate::nfs::ganesha_export(&paths, &clients, "1Gi")
            .ok_or("ganesha: a directory the script took cannot be a ganesha string")?;
        for line in ganesha.lines() {
            if line.chars().any(char::is_control) || line.matches('"').count() % 2 != 0 {
                return Err(format!("ganesha: the line {line:?}"));
            }
        }
        if ganesha.matches("EXPORT").count() != 1
            || ganesha.matches('{').count() != ganesha.matches('}').count()
        {
            return Err(format!("ganesha: {ganesha:?} is not one EXPORT block"));
        }
    }
    Ok(())
}

/// A VM with the value as its kernel command line and kernel path: one `ExecStart=` line and
/// no other directive that runs anything.
fn vm_unit(value: &str) -> Result<(), String> {
    let Ok(spec) = serde_json::from_value::<nimbus_schemas::VmSpec>(json!({
        "host": "h1", "cpus": 1, "memory": "128Mi", "disk": {"size": "1Gi"},
        "boot": {"kernel": value, "cmdline": value},
    })) else {
        return Ok(());
    };
    let render = |spec: &nimbus_schemas::VmSpec| {
        crate::vm::unit(
            "guest",
            &crate::vm::command_line("guest", spec, "tcg", None),
            None,
        )
    };
    let unit = render(&spec);
    let exec: Vec<&str> = unit.lines().filter(|l| l.starts_with("Exec")).collect();
    if exec.len() != 1 || !exec[0].starts_with("ExecStart=") {
        return Err(format!("vm: the unit runs {exec:?}"));
    }
    // As many lines as the unit of a plain value: nothing added, nothing cut.
    let mut plain = spec.clone();
    if let Some(boot) = &mut plain.boot {
        boot.kernel = "/srv/vmlinux".into();
        boot.cmdline = Some("console=ttyS0".into());
    }
    if unit.lines().count() != render(&plain).lines().count() {
        return Err(format!(
            "vm: the unit has {} lines: {unit:?}",
            unit.lines().count()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values issue 23 names, then seeded random strings over an alphabet of what breaks
    /// each syntax.
    #[test]
    fn hostile_values_arrive_literally_or_are_refused_by_every_writer() {
        let named = [
            "10.0.0.1\n\"/\" *",
            "* /(rw,no_root_squash)",
            "/etc\"\n\"/",
            "console=ttyS0\nExecStartPre=/bin/touch /x",
            "$(touch /tmp/x)",
            "`id`",
            "a;b",
            "\0",
            "-rf",
            "\\",
            "'",
            "\"",
            "%n $HOME ${X}",
        ];
        for value in named {
            audit(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        }
        audit(&"a".repeat(10_000)).unwrap_or_else(|e| panic!("10,000 characters: {e}"));
        const ALPHABET: &[&str] = &[
            "a", "/", ".", "..", "*", "(", ")", ",", " ", "\t", "\n", "\r", "\0", "\"", "'", "\\",
            "$", "%", "`", ";", "|", "&", "-", "=", "#", "{", "}", "\u{7f}", "\u{85}", "é",
            "10.0.0.1", "@", "?", ":",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let length = (next() % 12) as usize;
            let value: String = (0..length)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            audit(&value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        }
    }
}
