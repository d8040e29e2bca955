//! JSON Schemas of the repository formats, generated from the Rust types so
//! editors (yaml-language-server, Taplo) validate what kftenant will read.

use crate::config::Config;
use crate::model::TenantDocument;

/// File name of the Tenant schema under `schema/`.
pub const TENANT_SCHEMA_FILE: &str = "tenant.schema.json";
/// File name of the `kftenant.toml` schema under `schema/`.
pub const CONFIG_SCHEMA_FILE: &str = "kftenant-toml.schema.json";

/// `(file name, pretty JSON)` of every schema.
pub fn all() -> Vec<(&'static str, String)> {
    let tenant = schemars::schema_for!(TenantDocument);
    let config = schemars::schema_for!(Config);
    vec![
        (
            TENANT_SCHEMA_FILE,
            serde_json::to_string_pretty(&tenant).expect("schema serialises") + "\n",
        ),
        (
            CONFIG_SCHEMA_FILE,
            serde_json::to_string_pretty(&config).expect("schema serialises") + "\n",
        ),
    ]
}
