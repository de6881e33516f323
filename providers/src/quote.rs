//! Quoting for each syntax a manifest value is written into on a host (docs/security.md):
//! POSIX shell words, systemd unit command lines, exports(5) paths and nfs-ganesha's
//! configuration strings. Each function turns any value into one literal word of its syntax:
//! whatever a value holds (quotes, newlines, `$(...)`, `%`), it arrives as that value and
//! never as a second word, line, directive or command. Validation
//! ([`nimbus_planner::fields`]) refuses most such values before they get here; quoting is
//! the second guard, not the first.

/// A POSIX shell word: `'...'`, with each `'` written as `'\''`. Every byte but `'` is
/// literal inside single quotes, newlines and NUL-free binary included.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A word of a systemd command line: as it is when plain, else quoted and escaped
/// ([`systemd_escape`]).
pub fn systemd_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c))
    {
        word.to_owned()
    } else {
        format!("\"{}\"", systemd_escape(word))
    }
}

/// A word of a systemd command line, escaped for use inside `"..."`: `\` and `"` escaped,
/// `%` and `$` doubled (else systemd expands them as specifiers and variables), and every
/// control character (a newline would end the directive) as a C escape `\xNN`, which systemd
/// turns back into the character.
pub fn systemd_escape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A path in an exports(5) line, inside `"..."`: every byte that is not a letter, digit or
/// one of `/ . _ - + @ : ~` written as a backslash and three octal digits (`\040` for a
/// space), which exportfs reads back as that byte.
pub fn exports_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    out.push('"');
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-+@:~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("\\{byte:03o}"));
        }
    }
    out.push('"');
    out
}

/// A string of nfs-ganesha's configuration, `"..."`. Ganesha's parser has no escape for `"`
/// or a newline inside a string, so a value holding either (or `\`, or a control character)
/// is refused: `None`.
pub fn ganesha_string(text: &str) -> Option<String> {
    (!text
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control()))
    .then(|| format!("\"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_words_keep_newlines_and_specifiers_literal() {
        let word = systemd_escape("console=ttyS0\nExecStartPre=/bin/touch /x \"q\" 100% $HOME \\");
        assert!(!word.contains('\n'), "{word}");
        assert_eq!(
            word,
            "console=ttyS0\\x0aExecStartPre=/bin/touch /x \\\"q\\\" 100%% $$HOME \\\\"
        );
        assert_eq!(systemd_escape("a\0b\x1b"), "a\\x00b\\x1b");
    }

    #[test]
    fn exports_paths_are_one_quoted_word() {
        assert_eq!(exports_path("/srv/a b"), "\"/srv/a\\040b\"");
        assert_eq!(exports_path("/srv/a\"\n/"), "\"/srv/a\\042\\012/\"");
        assert_eq!(exports_path("/srv/nimbus/x"), "\"/srv/nimbus/x\"");
    }

    #[test]
    fn ganesha_strings_refuse_what_they_cannot_hold() {
        assert_eq!(ganesha_string("/srv/x").as_deref(), Some("\"/srv/x\""));
        assert_eq!(ganesha_string("/srv/x\";\nEXPORT {"), None);
        assert_eq!(ganesha_string("a\\b"), None);
    }

    #[test]
    fn shell_words_survive_every_quote() {
        assert_eq!(shell_quote("it's $(id) `x`"), "'it'\\''s $(id) `x`'");
    }
}
