//! Arbitrary bytes fed to the loader and validator as a YAML file and as a KDL file: any
//! input must give problems or a model, never a panic, a hang or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_planner::{InputFile, RepositoryInput};

fuzz_target!(|data: &[u8]| {
    let input = RepositoryInput {
        manifests: vec![
            InputFile { path: "fuzz.yaml".into(), bytes: data.to_vec() },
            InputFile { path: "tenants/acme/fuzz.kdl".into(), bytes: data.to_vec() },
        ],
        other_paths: Default::default(),
        outside_links: Vec::new(),
    };
    let checked = nimbus_planner::check(input);
    for problem in &checked.problems {
        let _ = problem.to_json(&checked.model.sources);
    }
});
