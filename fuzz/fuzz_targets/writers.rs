//! Arbitrary manifest values fed to every writer that puts a value into a host's syntax
//! (shell words, systemd command lines, exports(5) lines, nfs-ganesha blocks, a VM's unit):
//! each must arrive as one literal value or be refused, never as a second line, entry,
//! directive or command (`nimbus_providers::audit`, docs/security.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    if let Err(escaped) = nimbus_providers::audit::audit(&value) {
        panic!("{value:?} escaped its place: {escaped}");
    }
});
