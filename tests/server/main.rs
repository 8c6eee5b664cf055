//! Integration tests: real servers on port 0, spoken to over HTTP and
//! WebSocket as a client would.

mod common;

mod abuse;
mod addresses;
mod annotations;
mod api;
mod authz;
mod binary;
mod cluster;
mod faults;
mod lifecycle;
mod notifications;
mod openapi;
mod realtime;
mod regions;
mod regressions;
mod storage;
mod text;
mod uploads;
mod webhooks;
mod wire;
