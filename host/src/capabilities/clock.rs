//! `clock`: the injected clock and a seeded generator.

use crate::clock::Clock;
use crate::runtime::wit::clock;
use std::sync::Arc;

pub struct ClockCap {
    clock: Arc<dyn Clock>,
    rng: fastrand::Rng,
}

impl ClockCap {
    pub fn new(clock: Arc<dyn Clock>, seed: u64) -> ClockCap {
        ClockCap { clock, rng: fastrand::Rng::with_seed(seed) }
    }
}

impl clock::Host for ClockCap {
    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        Ok(self.clock.now_ms())
    }

    fn random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.rng.u64(..))
    }
}
