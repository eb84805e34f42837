//! The data sources' schemas, derived from the resource models, and their lookup arguments.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::resources::{acl_user, acl_user_model::AclUserModel, read_replica, service, validate};
use crate::tfplug::schema_derive::schema_for;
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Schema, Value};

/// The valkey_user data source's one argument beyond the user's name.
pub const INCLUDE_PASSWORD: &str = "include_password";

/// What data source valkey_user takes besides the user's own attributes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
struct UserLookup {
    #[serde(flatten)]
    user: AclUserModel,
    /// Whether to return the user's generated `password` (it is sensitive in the reading
    /// configuration's state). False by default: most readers need the rules only. A password
    /// given write-only is never returned; no one keeps it.
    include_password: Option<bool>,
}

/// `schema` read-only but for `arguments`, described as a lookup.
fn lookup(schema: Schema, arguments: &[&str], description: &str) -> Schema {
    let mut block = schema.block.read_only_except(arguments);
    block.description = description.to_string();
    Schema { version: 0, block }
}

/// Every data source: its type name and schema.
pub fn all() -> Result<Vec<(String, Schema)>, String> {
    Ok(vec![
        (
            service::TYPE_NAME.to_string(),
            lookup(
                service::schema()?,
                &["name", "cloud"],
                "Reads an existing Valkey service by name: its endpoint, password, Sentinels and nodes, so another \
                 configuration can connect to it without managing it.",
            ),
        ),
        (
            read_replica::TYPE_NAME.to_string(),
            lookup(
                read_replica::schema()?,
                &["name", "cloud"],
                "Reads an existing read replica by name: its endpoint, its primary and how far behind it is.",
            ),
        ),
        (
            acl_user::TYPE_NAME.to_string(),
            lookup(
                schema_for::<UserLookup>(0)?,
                &["service", "username", "cloud", INCLUDE_PASSWORD],
                "Reads an ACL user of a service's replication group: its rules, and its generated password when \
                 `include_password` is true.",
            ),
        ),
    ])
}

/// A lookup argument's value; an error at it while it is unknown (a data source is read at
/// plan time only when its arguments are known, so this is a bug) or unset.
pub fn lookup_name(config: &Value, attribute: &str) -> Result<String, Diagnostics> {
    config.attr(attribute).as_str().map(str::to_string).ok_or_else(|| {
        Diagnostic::error(
            format!("{attribute} is required"),
            format!("set {attribute} to the name to look up"),
        )
        .at(AttrPath::root(attribute))
        .into()
    })
}

/// Checks the lookup arguments that are known.
pub fn validate_config(type_name: &str, config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    validate::string(&mut d, config.attr("cloud"), AttrPath::root("cloud"), "cloud", |c| {
        crate::catalog::cloud(c).map(|_| ())
    });
    let name = if type_name == acl_user::TYPE_NAME {
        "service"
    } else {
        "name"
    };
    validate::string(
        &mut d,
        config.attr(name),
        AttrPath::root(name),
        name,
        validate::resource_name,
    );
    d
}
