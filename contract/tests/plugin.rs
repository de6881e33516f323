//! A plugin in another language (the Python test plugin of the reconciler's tests, which keeps
//! each instance as a JSON file) runs the contract through the real protocol over stdio.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_provider_contract::{Case, Hands, check};
use nimbus_providers::plugin::{PluginProvider, PluginSpec};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Store(PathBuf);

impl Store {
    fn file(&self, address: &str) -> PathBuf {
        self.0.join(format!("{}.json", address.replace('/', "_")))
    }
}

const UNOWNED: &str = "Volume/made-by-hand";

impl Hands for Store {
    fn identity(&self, case: &Case, _spec: &Value) -> String {
        case.address()
    }
    fn exists(&self, case: &Case, _spec: &Value) -> bool {
        self.file(&case.address()).exists()
    }
    fn drift(&self, case: &Case, spec: &Value) {
        let mut changed = spec.clone();
        changed["size"] = json!("99Gi");
        std::fs::write(self.file(&case.address()), changed.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    fn make_unowned(&self, _case: &Case) {
        std::fs::write(self.file(UNOWNED), r#"{"type": "nfs"}"#).unwrap_or_else(|e| panic!("{e}"));
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.file(UNOWNED).exists()
    }
    fn remove_unowned(&self, _case: &Case) {
        let _ = std::fs::remove_file(self.file(UNOWNED));
    }
}

#[tokio::test]
async fn a_python_plugin_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("store");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../reconciler/tests/plugins/kv_plugin.py");
    let provider = PluginProvider::start(PluginSpec {
        name: "kv".into(),
        argv: vec!["python3".into(), script.display().to_string()],
        kinds: vec![Kind::Volume],
        settings: json!({"store": store}),
        repository: dir.path().to_owned(),
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap_or_else(|e| panic!("the plugin did not start: {e}"));
    let case = Case {
        kind: Kind::Volume,
        resource: "Volume/data".into(),
        target: None,
        spec: json!({"type": "btrfs", "size": "1Gi"}),
        update: json!({"type": "btrfs", "size": "2Gi"}),
        replace: Some(json!({"type": "nfs", "size": "2Gi"})),
        bad: json!(["not", "a", "mapping"]),
    };
    check(&provider, &Store(store.clone()), &case).await;
    let left = std::fs::read_dir(&store).map(Iterator::count).unwrap_or(0);
    assert_eq!(left, 0, "the suite leaves the store as it found it");
}
