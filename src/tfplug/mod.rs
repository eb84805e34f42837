//! The Terraform plugin protocol (tfplugin6 over go-plugin), and nothing about Valkey.
//!
//! A provider implements [`provider::Provider`]; [`server::serve`] does the rest: the
//! go-plugin handshake, AutoMTLS, the gRPC services Terraform and go-plugin call, cty value
//! codecs, schema conversion, diagnostics and hclog-style logging.

pub mod diagnostics;
pub mod docs;
pub mod handshake;
pub mod logging;
pub mod msgpack;
pub mod plan;
pub mod proto;
pub mod provider;
pub mod schema;
pub mod schema_derive;
pub mod server;
pub mod tls;
pub mod types;
pub mod value;

#[cfg(test)]
mod fuzz_tests;
mod grpc;
mod side_services;

pub use diagnostics::{AttrPath, Diagnostic, Diagnostics};
pub use schema::Schema;
pub use types::Type;
pub use value::{Number, Value};

/// A value or type that could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl CodecError {
    pub fn new(message: impl Into<String>) -> Self {
        CodecError(message.into())
    }
}
