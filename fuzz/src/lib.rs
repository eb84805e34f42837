//! Shared by the fuzz targets: the cty type an input is decoded against.

use terraform_provider_valkey::tfplug::Type;

/// One of the provider's example types, chosen by an input byte.
pub fn type_for(selector: u8) -> Type {
    let types = Type::examples();
    types[selector as usize % types.len()].clone()
}
