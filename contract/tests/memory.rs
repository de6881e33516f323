//! The in-memory provider runs the contract: it is what `NIMBUS_MEMORY_PROVIDER` gives a
//! user who asks for it, so it keeps the same promises as the real ones.

use nimbus_provider_contract::{Case, Hands, check};
use nimbus_providers::memory::MemoryProvider;
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Map<'a>(&'a MemoryProvider);

const UNOWNED: &str = "Volume/made-by-hand";

impl Hands for Map<'_> {
    fn identity(&self, case: &Case, _spec: &Value) -> String {
        case.address()
    }
    fn exists(&self, case: &Case, _spec: &Value) -> bool {
        self.0.get(&case.address()).is_some()
    }
    fn drift(&self, case: &Case, spec: &Value) {
        let mut changed = spec.clone();
        changed["size"] = json!("99Gi");
        self.0.set(&case.address(), Some(changed));
    }
    fn make_unowned(&self, _case: &Case) {
        self.0
            .set(UNOWNED, Some(json!({"type": "btrfs", "size": "1Gi"})));
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.0.get(UNOWNED).is_some()
    }
    fn remove_unowned(&self, _case: &Case) {
        self.0.set(UNOWNED, None);
    }
}

#[tokio::test]
async fn the_memory_provider_keeps_the_contract() {
    let provider = MemoryProvider::new();
    let case = Case {
        kind: Kind::Volume,
        resource: "Volume/data".into(),
        target: None,
        spec: json!({"type": "btrfs", "size": "1Gi", "host": "h1"}),
        update: json!({"type": "btrfs", "size": "2Gi", "host": "h1"}),
        replace: Some(json!({"type": "nfs", "size": "2Gi", "host": "h1"})),
        bad: json!("not a mapping"),
    };
    check(&provider, &Map(&provider), &case).await;
    assert!(
        provider.is_empty(),
        "the suite leaves the backend as it found it"
    );
}
