//! What watches the daemon, as one bundle for the threads that have
//! something to report: the series and the health record
//! ([`super::metrics`], [`super::health`]), and the notifier for what a
//! person must act on ([`super::alert`]).

use std::sync::Arc;

use super::alert::Alerts;
use super::metrics::Metrics;

#[derive(Clone)]
pub(crate) struct Monitoring {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) alerts: Alerts,
}
