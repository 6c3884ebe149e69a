//! Builds the control-plane components that the configuration asks for.
//!
//! The one place that knows which [`Component`] exists; `serve` only drives the list.

use std::io;
use std::sync::Arc;

use mio::Waker;

use crate::config::ServeConfig;
use crate::ha::driver::HaDriver;
use crate::plane::Component;
use crate::proxy::Shared;

/// The components for this configuration, in token order.
pub fn build(
    cfg: &ServeConfig,
    _shared: &Arc<Shared>,
    _waker: &Arc<Waker>,
) -> io::Result<Vec<Box<dyn Component>>> {
    let mut list: Vec<Box<dyn Component>> = Vec::new();
    if let Some(ha) = &cfg.ha {
        list.push(Box::new(HaDriver::new(ha)?));
    }
    Ok(list)
}
