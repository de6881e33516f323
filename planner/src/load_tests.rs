//! The loader's tests: files loaded alone merge into one model, filters, tenant folders.
/// Loading files one by one and merging them gives the same model and problems as
/// loading them together: the cache of parsed files changes nothing but speed.
#[test]
fn files_loaded_alone_merge_into_the_same_model() {
    let files = vec![
        InputFile { path: "b.yaml".into(), bytes: b"apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: web-1}\nspec: {address: 10.0.0.1}\n---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: motd}\nspec: {host: web-1, path: /etc/motd, content: hi, colour: red}\n".to_vec() },
        InputFile { path: "a.kdl".into(), bytes: b"host web-2 {\n    address \"10.0.0.2\"\n}\n".to_vec() },
        InputFile { path: "c.yaml".into(), bytes: b"kind: [\n".to_vec() },
        InputFile { path: "d.yaml".into(), bytes: vec![0xff, 0xfe, 0x00] },
    ];
    let other: BTreeSet<String> = ["files/x.conf".to_owned()].into();
    let (whole, whole_problems) = load(RepositoryInput {
        manifests: files.clone(),
        other_paths: other.clone(),
        outside_links: Vec::new(),
    });
    let alone: Vec<std::sync::Arc<LoadedFile>> = files
        .into_iter()
        .rev()
        .map(|f| std::sync::Arc::new(LoadedFile::load(f)))
        .collect();
    let (merged, merged_problems) = load_files(alone, other, &[]);
    let summary = |model: &Model, problems: &[Problem]| {
        (
            model
                .documents
                .iter()
                .map(|d| {
                    (
                        d.resource.address(),
                        model.sources.path(d.file).to_owned(),
                        d.span,
                    )
                })
                .collect::<Vec<_>>(),
            model
                .declared
                .iter()
                .map(|d| (d.address.clone(), model.sources.path(d.file).to_owned()))
                .collect::<Vec<_>>(),
            problems
                .iter()
                .map(|p| serde_json::to_string(&p.to_json(&model.sources)).unwrap_or_default())
                .collect::<Vec<_>>(),
            model.paths.clone(),
        )
    };
    let expected = summary(&whole, &whole_problems);
    assert_eq!(summary(&merged, &merged_problems), expected);
    assert_eq!(expected.2.len(), 3, "{:?}", expected.2);
}

use super::*;

#[test]
fn manifest_filter_honours_nimbusignore_hidden_paths_and_extensions() {
    let (filter, invalid) = ManifestFilter::new(Some(
        "# drafts\n*.draft.yaml\n/build/\nvendor/**\n!vendor/keep.yaml\n",
    ));
    assert!(invalid.is_empty());
    assert!(filter.is_manifest("hosts.yaml"));
    assert!(filter.is_manifest("a/b/c.yml"));
    assert!(filter.is_manifest("net.KDL"));
    assert!(!filter.is_manifest("notes.md"));
    assert!(!filter.is_manifest("web.draft.yaml"));
    assert!(!filter.is_manifest("sub/web.draft.yaml"));
    assert!(!filter.is_manifest("build/out.yaml"));
    assert!(
        filter.is_manifest("sub/build/out.yaml"),
        "/build/ is anchored at the root"
    );
    assert!(!filter.is_manifest("vendor/x.yaml"));
    assert!(filter.is_manifest("vendor/keep.yaml"));
    assert!(!filter.is_manifest(".github/workflows/ci.yaml"));
    assert!(!filter.is_manifest(".hidden.yaml"));
    assert!(filter.is_ignored("build", true));
}

#[test]
fn tenant_folders() {
    assert_eq!(tenant_of_path("tenants/acme/web.yaml"), Some("acme"));
    assert_eq!(tenant_of_path("tenants/acme/apps/web.yaml"), Some("acme"));
    assert_eq!(tenant_of_path("tenants/acme.yaml"), None);
    assert_eq!(tenant_of_path("other/tenants/acme/web.yaml"), None);
}
