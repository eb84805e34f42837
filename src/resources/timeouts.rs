//! Operation timeouts, and running an operation under its timeout and Terraform's stop
//! request.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::common_model::TimeoutsModel;
use super::{error, validate};
use crate::tfplug::Diagnostics;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

pub fn timeout_of(timeouts: Option<&TimeoutsModel>, pick: fn(&TimeoutsModel) -> Option<&String>) -> Duration {
    timeouts
        .and_then(pick)
        .and_then(|t| validate::duration(t).ok())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs `work` under the operation's timeout and Terraform's stop request.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Diagnostics> {
    tokio::select! {
        r = tokio::time::timeout(limit, work) => r.map_err(|_| error(
            &format!("{what} timed out"),
            format!("the {what} did not finish within {limit:?}; raise it in the timeouts block, then apply again"),
        )),
        _ = cancel.cancelled() => Err(error(
            &format!("{what} interrupted"),
            "Terraform asked the provider to stop; run terraform apply again to finish",
        )),
    }
}
