//! The provider contract test suite. Every provider runs [`check`] against its real backend
//! (a test-bed host, a Docker engine, a plugin process), with a [`Case`] per kind it serves
//! and [`Hands`] that act on the backend directly, as a person would, without the provider.
//!
//! The suite, in order: the provider describes the kind; the instance is absent; create, then
//! read back with nothing to change; no-op (observed again, and the same spec applied again,
//! still nothing to change); an in-place update; a replace (when the case has one), the old
//! object gone when its identity moved; drift made by hand is seen and corrected; delete
//! removes the object and leaves an object nimbus did not create untouched; a second delete
//! of what is gone succeeds; bad input is refused with a reason naming the instance, leaving
//! nothing behind.
//!
//! Each step panics with what it expected and what it saw, so a failing provider says which
//! promise it broke.

use nimbus_planner::plan::{Action, Change, KindSchema, Observed, field_changes};
use nimbus_provider_core::{Cancel, ObserveRequest, Provider, ProviderError};
use nimbus_schemas::Kind;
use serde_json::Value;

/// One kind of a provider, as the suite exercises it.
#[derive(Clone, Debug)]
pub struct Case {
    pub kind: Kind,
    /// The resource (`File/contract`).
    pub resource: String,
    /// The host it lives on, for per-host kinds.
    pub target: Option<String>,
    /// Created first.
    pub spec: Value,
    /// Differs from `spec` only in fields that do not force replacement.
    pub update: Value,
    /// Differs from `update` in a field that forces replacement, when the kind has one.
    pub replace: Option<Value>,
    /// A spec the provider must refuse with a reason (it may pass validation's types, but the
    /// backend cannot take it).
    pub bad: Value,
}

impl Case {
    /// The instance's address (`File/contract@h1`, or the resource alone).
    pub fn address(&self) -> String {
        match &self.target {
            Some(target) => format!("{}@{target}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// What the suite does to the backend behind the provider's back.
pub trait Hands {
    /// Where `spec` puts its object (a path, a name): two specs with the same identity are
    /// the same object.
    fn identity(&self, case: &Case, spec: &Value) -> String;
    /// Whether the object `spec` names exists, seen directly on the backend.
    fn exists(&self, case: &Case, spec: &Value) -> bool;
    /// Changes the live object of `spec` by hand, so that it no longer matches.
    fn drift(&self, case: &Case, spec: &Value);
    /// Makes an object of the same kind next to the case's, which nimbus did not create.
    fn make_unowned(&self, case: &Case);
    /// Whether that object is still there.
    fn unowned_exists(&self, case: &Case) -> bool;
    /// Removes it again.
    fn remove_unowned(&self, case: &Case);
}

fn change(case: &Case, action: Action, before: Option<&Value>, after: Option<&Value>) -> Change {
    change_of(
        case.kind,
        &case.resource,
        case.target.as_deref(),
        action,
        before,
        after,
    )
}

/// A change of `resource` (its instance on `target`, for per-host kinds) as a plan carries
/// it: for tests that set a backend up through the provider before the suite runs.
pub fn change_of(
    kind: Kind,
    resource: &str,
    target: Option<&str>,
    action: Action,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Change {
    Change::of(kind, resource, target, action, before, after)
}

struct Suite<'a> {
    provider: &'a dyn Provider,
    case: &'a Case,
    schema: KindSchema,
    cancel: Cancel,
}

impl Suite<'_> {
    fn who(&self) -> String {
        format!(
            "provider `{}`, {}",
            self.provider.name(),
            self.case.address()
        )
    }

    async fn observe(&self, desired: &Value) -> Observed {
        let request = ObserveRequest {
            address: self.case.address(),
            kind: self.case.kind,
            desired: Some(desired.clone()),
        };
        let observed = self
            .provider
            .observe(self.case.target.as_deref(), std::slice::from_ref(&request))
            .await
            .unwrap_or_else(|e| panic!("{}: observe failed: {e}", self.who()));
        let mut mine: Vec<Observed> = observed
            .into_iter()
            .filter(|(address, _)| *address == self.case.address())
            .map(|(_, o)| o)
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{}: observe must answer once for the address",
            self.who()
        );
        mine.pop()
            .unwrap_or(Observed::Unknown("not in the reply".into()))
    }

    /// The fields the planner would change to go from what is observed to `desired`.
    fn diff(&self, desired: &Value, observed: &Observed) -> Vec<String> {
        let Observed::Present(current) = observed else {
            return vec![format!("({observed:?})")];
        };
        let (mut d, mut c) = (desired.clone(), current.clone());
        self.schema.normalize(&mut d);
        self.schema.normalize(&mut c);
        field_changes(&c, &d, &self.schema)
            .into_iter()
            .map(|f| f.path)
            .collect()
    }

    async fn in_sync(&self, desired: &Value, step: &str) {
        let observed = self.observe(desired).await;
        let diff = self.diff(desired, &observed);
        assert!(
            diff.is_empty(),
            "{}: after {step}, observe still differs from the spec in {diff:?}",
            self.who()
        );
    }

    async fn apply(&self, action: Action, before: Option<&Value>, after: Option<&Value>) {
        let change = change(self.case, action, before, after);
        let applied = self
            .provider
            .apply(&change, &self.cancel)
            .await
            .unwrap_or_else(|e| panic!("{}: {action:?} failed: {e}", self.who()));
        // What apply says it left must agree with the spec, as observing does.
        if let (Some(after), false) = (after, applied.observed.is_null()) {
            let diff = self.diff(after, &Observed::Present(applied.observed.clone()));
            assert!(
                diff.is_empty(),
                "{}: {action:?} returned an observation that differs in {diff:?}",
                self.who()
            );
        }
    }
}

/// Runs the whole contract for one case. Leaves the backend as it found it.
pub async fn check(provider: &dyn Provider, hands: &dyn Hands, case: &Case) {
    let schema = provider
        .describe()
        .kinds
        .into_iter()
        .find(|k| k.kind == case.kind)
        .unwrap_or_else(|| {
            panic!(
                "provider `{}` does not describe {}, which it is tested for",
                provider.name(),
                case.kind
            )
        });
    assert!(!provider.name().is_empty(), "a provider has a name");
    assert!(
        provider.unavailable().is_none(),
        "provider `{}` is unavailable: {:?}",
        provider.name(),
        provider.unavailable()
    );
    let suite = Suite {
        provider,
        case,
        schema,
        cancel: Cancel::new(),
    };
    let who = suite.who();
    let (spec, update) = (&case.spec, &case.update);

    // Absent before anything is done.
    assert_eq!(
        suite.observe(spec).await,
        Observed::Absent,
        "{who}: the instance must start absent"
    );
    assert!(!hands.exists(case, spec), "{who}: the backend is not clean");

    // Create, and read back.
    suite.apply(Action::Create, None, Some(spec)).await;
    assert!(
        hands.exists(case, spec),
        "{who}: create reported success, but the object is not on the backend"
    );
    suite.in_sync(spec, "create").await;

    // No-op: observing again and applying the same spec again change nothing.
    suite.in_sync(spec, "a second observe").await;
    suite.apply(Action::Update, Some(spec), Some(spec)).await;
    suite.in_sync(spec, "applying the same spec again").await;

    // Update in place.
    let fields = field_changes(spec, update, &suite.schema);
    assert!(
        !fields.is_empty() && fields.iter().all(|f| !f.forces_replacement),
        "{who}: the case's update must change fields in place: {fields:?}"
    );
    let before_update = suite.diff(update, &suite.observe(update).await);
    assert!(
        !before_update.is_empty(),
        "{who}: observe does not see the fields the update changes"
    );
    suite.apply(Action::Update, Some(spec), Some(update)).await;
    suite.in_sync(update, "update").await;

    // Replace.
    let mut current = update.clone();
    if let Some(replace) = &case.replace {
        let fields = field_changes(update, replace, &suite.schema);
        assert!(
            fields.iter().any(|f| f.forces_replacement),
            "{who}: the case's replace must change a field that forces replacement: {fields:?}"
        );
        suite
            .apply(Action::Replace, Some(update), Some(replace))
            .await;
        suite.in_sync(replace, "replace").await;
        assert!(
            hands.exists(case, replace),
            "{who}: replaced, but not there"
        );
        if hands.identity(case, update) != hands.identity(case, replace) {
            assert!(
                !hands.exists(case, update),
                "{who}: replace left the old object ({}) behind",
                hands.identity(case, update)
            );
        }
        current = replace.clone();
    }

    // Drift by hand: seen, then corrected.
    hands.drift(case, &current);
    let drift = suite.diff(&current, &suite.observe(&current).await);
    assert!(
        !drift.is_empty(),
        "{who}: a change made by hand is not seen as drift"
    );
    suite
        .apply(Action::Update, Some(&current), Some(&current))
        .await;
    suite.in_sync(&current, "correcting drift").await;

    // Delete: the object goes, what nimbus did not create stays.
    hands.make_unowned(case);
    suite.apply(Action::Delete, Some(&current), None).await;
    assert_eq!(
        suite.observe(&current).await,
        Observed::Absent,
        "{who}: observed after delete"
    );
    assert!(
        !hands.exists(case, &current),
        "{who}: delete reported success, but the object is still on the backend"
    );
    assert!(
        hands.unowned_exists(case),
        "{who}: delete removed an object nimbus did not create"
    );
    hands.remove_unowned(case);
    // Deleting what is already gone succeeds (a prune after a hand delete).
    suite.apply(Action::Delete, Some(&current), None).await;

    // Bad input: refused, with a reason naming the instance, nothing left behind.
    let refused = provider
        .apply(
            &change(case, Action::Create, None, Some(&case.bad)),
            &suite.cancel,
        )
        .await;
    match refused {
        Ok(applied) => panic!("{who}: bad input was accepted: {:?}", applied.observed),
        Err(error @ (ProviderError::Bug(_) | ProviderError::Transient(_))) => {
            panic!("{who}: bad input must be a terminal failure (Failed), not: {error:?}")
        }
        Err(ProviderError::Failed(reason)) => {
            assert!(
                reason.contains(&case.address()),
                "{who}: the reason must name the instance: {reason}"
            );
        }
    }
    assert!(
        !hands.exists(case, &case.bad),
        "{who}: bad input left an object behind"
    );
}
