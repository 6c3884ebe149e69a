//! Byte formats that cross a host boundary, each a zero-copy view checked once, a
//! validated representation with `parse`/`emit`, and tests against byte fixtures
//! (smoltcp's pattern). Pure: no IO, no clock (time comes in as an argument).
//!
//! - [`heartbeat`]: the node agent's authenticated heartbeat.
//! - [`advert`]: the failover pair's authenticated adverts.
//! - [`proxy_protocol`]: the PROXY protocol v1/v2 header sent to nodes.
//! - [`task`]: node-task requests to agents, and the task reports in heartbeats.

pub mod advert;
pub mod heartbeat;
pub mod proxy_protocol;
pub mod task;
