//! The files `nimbus init` writes: a small working repository, an example of every kind and
//! the JSON Schemas editors use to complete and check fields.

use nimbus_schemas::json_schema::{
    document_schema, reuse_file_name, reuse_schema, schema_file_name,
};
use nimbus_schemas::{Kind, ReuseKind};

/// Every scaffolded file as (path, content), in the order they are written.
pub fn files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = [
        ("nimbus.yaml", include_str!("../templates/init/nimbus.yaml")),
        ("hosts.yaml", include_str!("../templates/init/hosts.yaml")),
        (
            "files/motd.yaml",
            include_str!("../templates/init/files/motd.yaml"),
        ),
        (
            "modules/greeting/module.yaml",
            include_str!("../templates/init/modules/greeting/module.yaml"),
        ),
        (
            "modules/greeting/files.yaml",
            include_str!("../templates/init/modules/greeting/files.yaml"),
        ),
        (
            "greetings.yaml",
            include_str!("../templates/init/greetings.yaml"),
        ),
        (
            "environments/staging.yaml",
            include_str!("../templates/init/environments/staging.yaml"),
        ),
        (
            "environments/production.yaml",
            include_str!("../templates/init/environments/production.yaml"),
        ),
        (".gitignore", include_str!("../templates/init/.gitignore")),
        (
            ".nimbusignore",
            include_str!("../templates/init/.nimbusignore"),
        ),
        (
            "examples/README.md",
            include_str!("../templates/init/examples/README.md"),
        ),
        (
            "examples/file.yaml",
            include_str!("../templates/init/examples/file.yaml"),
        ),
        (
            "examples/site.conf",
            include_str!("../templates/init/examples/site.conf"),
        ),
        (
            "examples/service.yaml",
            include_str!("../templates/init/examples/service.yaml"),
        ),
        (
            "examples/network.yaml",
            include_str!("../templates/init/examples/network.yaml"),
        ),
        (
            "examples/cluster.yaml",
            include_str!("../templates/init/examples/cluster.yaml"),
        ),
        (
            "examples/tenant.yaml",
            include_str!("../templates/init/examples/tenant.yaml"),
        ),
        (
            "examples/workload.yaml",
            include_str!("../templates/init/examples/workload.yaml"),
        ),
        (
            "examples/volume.yaml",
            include_str!("../templates/init/examples/volume.yaml"),
        ),
        (
            "examples/vm.yaml",
            include_str!("../templates/init/examples/vm.yaml"),
        ),
    ]
    .into_iter()
    .map(|(path, content)| (path.to_owned(), content.to_owned()))
    .collect();
    files.extend(
        schemas()
            .into_iter()
            .map(|(name, text)| (format!(".schemas/{name}"), text)),
    );
    files
}

/// Every kind's JSON Schema as (file name, content): what `.schemas/` holds.
pub fn schemas() -> Vec<(String, String)> {
    Kind::ALL
        .iter()
        .map(|&kind| (schema_file_name(kind), document_schema(kind)))
        .chain(
            ReuseKind::ALL
                .iter()
                .map(|&kind| (reuse_file_name(kind), reuse_schema(kind))),
        )
        .collect()
}
