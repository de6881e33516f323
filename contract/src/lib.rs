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

/// `Err(message)` unless `condition` holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

impl Suite<'_> {
    fn who(&self) -> String {
        format!(
            "provider `{}`, {}",
            self.provider.name(),
            self.case.address()
        )
    }

    async fn observe(&self, desired: &Value) -> Result<Observed, String> {
        let request = ObserveRequest {
            address: self.case.address(),
            kind: self.case.kind,
            desired: Some(desired.clone()),
        };
        let observed = self
            .provider
            .observe(self.case.target.as_deref(), std::slice::from_ref(&request))
            .await
            .map_err(|e| format!("{}: observe failed: {e}", self.who()))?;
        let mut mine: Vec<Observed> = observed
            .into_iter()
            .filter(|(address, _)| *address == self.case.address())
            .map(|(_, o)| o)
            .collect();
        ensure!(
            mine.len() == 1,
            "{}: observe must answer once for the address (answered {} times)",
            self.who(),
            mine.len()
        );
        Ok(mine
            .pop()
            .unwrap_or(Observed::Unknown("not in the reply".into())))
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

    async fn in_sync(&self, desired: &Value, step: &str) -> Result<(), String> {
        let observed = self.observe(desired).await?;
        let diff = self.diff(desired, &observed);
        ensure!(
            diff.is_empty(),
            "{}: after {step}, observe still differs from the spec in {diff:?}",
            self.who()
        );
        Ok(())
    }

    async fn apply(
        &self,
        action: Action,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<(), String> {
        let change = change(self.case, action, before, after);
        let applied = self
            .provider
            .apply(&change, &self.cancel)
            .await
            .map_err(|e| format!("{}: {action:?} failed: {e}", self.who()))?;
        // What apply says it left must agree with the spec, as observing does.
        if let (Some(after), false) = (after, applied.observed.is_null()) {
            let diff = self.diff(after, &Observed::Present(applied.observed.clone()));
            ensure!(
                diff.is_empty(),
                "{}: {action:?} returned an observation that differs in {diff:?}",
                self.who()
            );
        }
        Ok(())
    }

    /// Whether the object exists, as the hands see it; else as observing does.
    async fn exists(&self, hands: Option<&dyn Hands>, spec: &Value) -> Result<bool, String> {
        match hands {
            Some(hands) => Ok(hands.exists(self.case, spec)),
            None => Ok(matches!(self.observe(spec).await?, Observed::Present(_))),
        }
    }
}

/// How one step of the suite went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    Passed,
    Failed(String),
    /// Not run: an earlier step failed, or it needs hands on the backend the run has not.
    Skipped(String),
}

/// One step of the suite and how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepReport {
    pub step: &'static str,
    pub outcome: StepOutcome,
}

/// The steps of the suite, in order.
pub const STEPS: [&str; 9] = [
    "describe",
    "absent at first",
    "create",
    "no-op",
    "update in place",
    "replace",
    "drift seen and corrected",
    "delete (twice)",
    "bad input refused",
];

/// Runs the whole contract for one case. Leaves the backend as it found it. Panics with the
/// first promise the provider broke.
pub async fn check(provider: &dyn Provider, hands: &dyn Hands, case: &Case) {
    for report in run(provider, Some(hands), case).await {
        if let StepOutcome::Failed(message) = report.outcome {
            panic!("{message}");
        }
    }
}

/// Runs the contract for one case and reports each step. Without `hands` (a plugin checked
/// by `nimbus provider check`), existence is judged by observing, and the steps that must act
/// on the backend directly (drift; an object nimbus did not create) are skipped. After a
/// failure, the rest is skipped and what was created is deleted.
pub async fn run(
    provider: &dyn Provider,
    hands: Option<&dyn Hands>,
    case: &Case,
) -> Vec<StepReport> {
    let mut reports = Vec::new();
    let schema = provider
        .describe()
        .kinds
        .into_iter()
        .find(|k| k.kind == case.kind);
    let described = match (&schema, provider.unavailable()) {
        (_, Some(reason)) => Err(format!(
            "provider `{}` is unavailable: {reason}",
            provider.name()
        )),
        (None, _) => Err(format!(
            "provider `{}` does not describe {}, which it is tested for",
            provider.name(),
            case.kind
        )),
        (Some(_), None) if provider.name().is_empty() => Err("a provider has a name".to_owned()),
        (Some(_), None) => Ok(()),
    };
    let failed = described.is_err();
    reports.push(StepReport {
        step: STEPS[0],
        outcome: match described {
            Ok(()) => StepOutcome::Passed,
            Err(e) => StepOutcome::Failed(e),
        },
    });
    let Some(schema) = schema.filter(|_| !failed) else {
        for step in &STEPS[1..] {
            reports.push(StepReport {
                step,
                outcome: StepOutcome::Skipped("an earlier step failed".into()),
            });
        }
        return reports;
    };
    let suite = Suite {
        provider,
        case,
        schema,
        cancel: Cancel::new(),
    };
    let mut current = case.spec.clone();
    let mut created = false;
    let mut stopped = false;
    for (i, step) in STEPS.iter().enumerate().skip(1) {
        if stopped {
            reports.push(StepReport {
                step,
                outcome: StepOutcome::Skipped("an earlier step failed".into()),
            });
            continue;
        }
        let result = match i {
            1 => absent_at_first(&suite, hands).await,
            2 => {
                let result = create(&suite, hands).await;
                created = true;
                result
            }
            3 => no_op(&suite).await,
            4 => update(&suite).await.map(|()| current = case.update.clone()),
            5 => match &case.replace {
                None => {
                    reports.push(StepReport {
                        step,
                        outcome: StepOutcome::Skipped("the case has no replace".into()),
                    });
                    continue;
                }
                Some(replace) => replace_step(&suite, hands, replace)
                    .await
                    .map(|()| current = replace.clone()),
            },
            6 => match hands {
                None => {
                    reports.push(StepReport {
                        step,
                        outcome: StepOutcome::Skipped(
                            "needs hands on the backend to change it without the provider".into(),
                        ),
                    });
                    continue;
                }
                Some(hands) => drift(&suite, hands, &current).await,
            },
            7 => {
                let result = delete(&suite, hands, &current).await;
                created = result.is_err();
                result
            }
            _ => bad_input(&suite, hands).await,
        };
        if let Err(message) = result {
            stopped = true;
            reports.push(StepReport {
                step,
                outcome: StepOutcome::Failed(message),
            });
        } else {
            reports.push(StepReport {
                step,
                outcome: StepOutcome::Passed,
            });
        }
    }
    if stopped && created {
        // Leave the backend as it was found, as far as the provider can.
        let _ = suite.apply(Action::Delete, Some(&current), None).await;
    }
    reports
}

async fn absent_at_first(suite: &Suite<'_>, hands: Option<&dyn Hands>) -> Result<(), String> {
    let who = suite.who();
    let spec = &suite.case.spec;
    let observed = suite.observe(spec).await?;
    ensure!(
        observed == Observed::Absent,
        "{who}: the instance must start absent (observed {observed:?})"
    );
    if let Some(hands) = hands {
        ensure!(
            !hands.exists(suite.case, spec),
            "{who}: the backend is not clean"
        );
    }
    Ok(())
}

async fn create(suite: &Suite<'_>, hands: Option<&dyn Hands>) -> Result<(), String> {
    let who = suite.who();
    let spec = &suite.case.spec;
    suite.apply(Action::Create, None, Some(spec)).await?;
    ensure!(
        suite.exists(hands, spec).await?,
        "{who}: create reported success, but the object is not on the backend"
    );
    suite.in_sync(spec, "create").await
}

async fn no_op(suite: &Suite<'_>) -> Result<(), String> {
    let spec = &suite.case.spec;
    suite.in_sync(spec, "a second observe").await?;
    suite.apply(Action::Update, Some(spec), Some(spec)).await?;
    suite.in_sync(spec, "applying the same spec again").await
}

async fn update(suite: &Suite<'_>) -> Result<(), String> {
    let who = suite.who();
    let (spec, update) = (&suite.case.spec, &suite.case.update);
    let fields = field_changes(spec, update, &suite.schema);
    ensure!(
        !fields.is_empty() && fields.iter().all(|f| !f.forces_replacement),
        "{who}: the case's update must change fields in place: {fields:?}"
    );
    let before_update = suite.diff(update, &suite.observe(update).await?);
    ensure!(
        !before_update.is_empty(),
        "{who}: observe does not see the fields the update changes"
    );
    suite
        .apply(Action::Update, Some(spec), Some(update))
        .await?;
    suite.in_sync(update, "update").await
}

async fn replace_step(
    suite: &Suite<'_>,
    hands: Option<&dyn Hands>,
    replace: &Value,
) -> Result<(), String> {
    let who = suite.who();
    let update = &suite.case.update;
    let fields = field_changes(update, replace, &suite.schema);
    ensure!(
        fields.iter().any(|f| f.forces_replacement),
        "{who}: the case's replace must change a field that forces replacement: {fields:?}"
    );
    suite
        .apply(Action::Replace, Some(update), Some(replace))
        .await?;
    suite.in_sync(replace, "replace").await?;
    ensure!(
        suite.exists(hands, replace).await?,
        "{who}: replaced, but not there"
    );
    if let Some(hands) = hands
        && hands.identity(suite.case, update) != hands.identity(suite.case, replace)
    {
        ensure!(
            !hands.exists(suite.case, update),
            "{who}: replace left the old object ({}) behind",
            hands.identity(suite.case, update)
        );
    }
    Ok(())
}

async fn drift(suite: &Suite<'_>, hands: &dyn Hands, current: &Value) -> Result<(), String> {
    let who = suite.who();
    hands.drift(suite.case, current);
    let drift = suite.diff(current, &suite.observe(current).await?);
    ensure!(
        !drift.is_empty(),
        "{who}: a change made by hand is not seen as drift"
    );
    suite
        .apply(Action::Update, Some(current), Some(current))
        .await?;
    suite.in_sync(current, "correcting drift").await
}

async fn delete(
    suite: &Suite<'_>,
    hands: Option<&dyn Hands>,
    current: &Value,
) -> Result<(), String> {
    let who = suite.who();
    if let Some(hands) = hands {
        hands.make_unowned(suite.case);
    }
    suite.apply(Action::Delete, Some(current), None).await?;
    let observed = suite.observe(current).await?;
    ensure!(
        observed == Observed::Absent,
        "{who}: observed after delete: {observed:?}"
    );
    if let Some(hands) = hands {
        ensure!(
            !hands.exists(suite.case, current),
            "{who}: delete reported success, but the object is still on the backend"
        );
        ensure!(
            hands.unowned_exists(suite.case),
            "{who}: delete removed an object nimbus did not create"
        );
        hands.remove_unowned(suite.case);
    }
    // Deleting what is already gone succeeds (a prune after a hand delete).
    suite.apply(Action::Delete, Some(current), None).await
}

async fn bad_input(suite: &Suite<'_>, hands: Option<&dyn Hands>) -> Result<(), String> {
    let who = suite.who();
    let case = suite.case;
    let refused = suite
        .provider
        .apply(
            &change(case, Action::Create, None, Some(&case.bad)),
            &suite.cancel,
        )
        .await;
    match refused {
        Ok(applied) => {
            // Whatever it made goes again.
            let _ = suite.apply(Action::Delete, Some(&case.bad), None).await;
            return Err(format!(
                "{who}: bad input was accepted: {:?}",
                applied.observed
            ));
        }
        Err(error @ (ProviderError::Bug(_) | ProviderError::Transient(_))) => {
            return Err(format!(
                "{who}: bad input must be a terminal failure (failed), not: {error:?}"
            ));
        }
        Err(
            ProviderError::Failed(reason)
            | ProviderError::Field {
                message: reason, ..
            },
        ) => {
            ensure!(
                reason.contains(&case.address()),
                "{who}: the reason must name the instance: {reason}"
            );
        }
    }
    ensure!(
        !suite.exists(hands, &case.bad).await?,
        "{who}: bad input left an object behind"
    );
    Ok(())
}
