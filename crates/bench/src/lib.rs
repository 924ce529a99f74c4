//! Strata's benchmarks: programs that print numbers, each beside the physical reference measured
//! in the same run.
//!
//! - [`storage`]: one storage engine configuration against raw file I/O (`strata bench
//!   storage`).
//!
//! Protocol load generators (`strata bench kafka|mqtt`) will live beside it.

pub mod kafka;
pub mod mqtt;
pub mod size;
pub mod storage;
