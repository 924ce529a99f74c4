//! Strata's benchmarks: programs that print numbers, each beside the physical reference measured
//! in the same run. They run as the `strata-bench` binary (`src/main.rs`):
//!
//! - [`storage`]: one storage engine configuration against raw file I/O (`strata-bench storage`);
//! - [`kafka`]: a running node through librdkafka, beside its engine (`strata-bench kafka`);
//! - [`mqtt`]: a running node over MQTT, beside a mosquitto in the same run (`strata-bench mqtt`).

pub mod host;
pub mod kafka;
pub mod latency;
pub mod mqtt;
pub mod report;
pub mod size;
pub mod storage;
