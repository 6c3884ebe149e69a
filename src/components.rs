//! Builds the control-plane components that the configuration asks for.
//!
//! The one place that knows which [`Component`] exists; `serve` only drives the list.

use std::io;
use std::sync::Arc;

use mio::Waker;

use crate::config::ServeConfig;
use crate::plane::Component;
use crate::proxy::Shared;

/// The components for this configuration, in token order.
pub fn build(
    _cfg: &ServeConfig,
    _shared: &Arc<Shared>,
    _waker: &Arc<Waker>,
) -> io::Result<Vec<Box<dyn Component>>> {
    let list: Vec<Box<dyn Component>> = Vec::new();
    Ok(list)
}
