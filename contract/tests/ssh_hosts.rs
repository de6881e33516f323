//! The hosts provider (SSH) runs the contract on a real host of the test bed: a Debian
//! container booting systemd, with its own sshd in its own network namespace. File and
//! Service, each checked on the host with the system's ssh client, not through nimbus.

#[path = "../../providers/tests/common/bed.rs"]
mod bed;

use bed::Bed;
use nimbus_provider_contract::{Case, Hands, check};
use nimbus_providers::hosts::HostsProvider;
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Shell<'a> {
    bed: &'a Bed,
    host: String,
}

impl Shell<'_> {
    fn run(&self, command: &str) -> String {
        self.bed.ssh_ok(&self.host, command)
    }
    fn test(&self, condition: &str) -> bool {
        self.run(&format!("if {condition}; then echo yes; else echo no; fi")) == "yes\n"
    }
    fn unit(case: &Case) -> String {
        format!("{}.service", case.resource.trim_start_matches("Service/"))
    }
}

const UNOWNED_FILE: &str = "/srv/contract/by-hand.conf";
const UNOWNED_UNIT: &str = "/etc/systemd/system/by-hand.service";

impl Hands for Shell<'_> {
    fn identity(&self, case: &Case, spec: &Value) -> String {
        match case.kind {
            Kind::File => spec["path"].as_str().unwrap_or_default().to_owned(),
            _ => Self::unit(case),
        }
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        match case.kind {
            Kind::File => self.test(&format!("test -e '{}'", self.identity(case, spec))),
            _ => self.test(&format!("test -e /etc/systemd/system/{}", Self::unit(case))),
        }
    }
    fn drift(&self, case: &Case, spec: &Value) {
        match case.kind {
            Kind::File => {
                self.run(&format!("echo by hand > '{}'", self.identity(case, spec)));
            }
            _ => {
                self.run(&format!("systemctl stop {}", Self::unit(case)));
            }
        }
    }
    fn make_unowned(&self, case: &Case) {
        match case.kind {
            Kind::File => self.run(&format!("echo by hand > {UNOWNED_FILE}")),
            _ => self.run(&format!(
                "printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > {UNOWNED_UNIT}; systemctl daemon-reload"
            )),
        };
    }
    fn unowned_exists(&self, case: &Case) -> bool {
        match case.kind {
            Kind::File => self.test(&format!("test -e {UNOWNED_FILE}")),
            _ => self.test(&format!("test -e {UNOWNED_UNIT}")),
        }
    }
    fn remove_unowned(&self, _case: &Case) {
        self.run(&format!(
            "rm -f {UNOWNED_FILE} {UNOWNED_UNIT}; systemctl daemon-reload"
        ));
    }
}

const UNIT: &str = "[Unit]\nDescription=nimbus contract service\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n";

#[tokio::test]
async fn the_ssh_hosts_provider_keeps_the_contract_on_a_systemd_host() {
    let bed = Bed::up(1);
    let host = &bed.hosts[0];
    let provider = HostsProvider::new([bed.target(0)]);
    let hands = Shell {
        bed: &bed,
        host: host.name.clone(),
    };
    let file = Case {
        kind: Kind::File,
        resource: "File/contract".into(),
        target: Some(host.name.clone()),
        spec: json!({"path": "/srv/contract/app.conf", "content": "port = 1\n", "mode": "0644"}),
        update: json!({"path": "/srv/contract/app.conf", "content": "port = 2\n", "mode": "0600", "owner": "daemon"}),
        replace: Some(
            json!({"path": "/srv/contract/moved.conf", "content": "port = 2\n", "mode": "0600", "owner": "daemon"}),
        ),
        // /proc/sys takes no new file.
        bad: json!({"path": "/proc/sys/nimbus/contract", "content": "x\n"}),
    };
    check(&provider, &hands, &file).await;

    let service = Case {
        kind: Kind::Service,
        resource: "Service/contract".into(),
        target: Some(host.name.clone()),
        spec: json!({"unit": UNIT, "enabled": true, "state": "running"}),
        update: json!({"unit": UNIT, "enabled": false, "state": "running"}),
        replace: None,
        // A unit whose program does not exist cannot run.
        bad: json!({"unit": UNIT.replace("/bin/sleep infinity", "/nonexistent/program"), "enabled": true, "state": "running"}),
    };
    check(&provider, &hands, &service).await;
}
