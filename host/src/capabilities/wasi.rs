//! WASI 0.2 for components that import it (componentize-js,
//! componentize-py and TinyGo output does, even when the policy does no
//! I/O), granting nothing through it:
//!
//! - no preopened directories, so no file can be opened;
//! - no environment variables, no arguments, an empty stdin;
//! - no sockets: TCP, UDP and name lookups are off and every address is
//!   refused, so a connect fails inside the sandbox;
//! - stdout and stderr are captured (at most [`STDIO_CAP`] bytes per
//!   instance) and shown in the log, line by line, with the policy's label;
//! - clocks and random come from the same sources as the world's own `clock`
//!   interface: the injected clock and a generator seeded from the host's
//!   seed, so a test run is reproducible.
//!
//! `wasmtime-wasi` implements the interfaces; this module only builds the
//! context that denies everything.

use crate::clock::Clock;
use rand::SeedableRng;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// Bytes of stdout (and of stderr) one instance may write; past it the
/// stream is closed for the policy.
pub const STDIO_CAP: usize = 1 << 20;

/// The injected clock as WASI's wall clock.
struct WallClock(Arc<dyn Clock>);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0))
    }
}

/// The injected clock as WASI's monotonic clock (nanoseconds). The host's
/// clocks never go back in a run (a fake clock only advances).
struct MonotonicClock(Arc<dyn Clock>);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        u64::try_from(self.0.now_ms()).unwrap_or(0).saturating_mul(1_000_000)
    }
}

/// What the policy wrote to stdout and stderr, for the log.
#[derive(Clone)]
pub struct Stdio {
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

/// A WASI context that grants nothing, and the pipes of its stdout/stderr.
pub fn deny_all(clock: Arc<dyn Clock>, seed: u64) -> (WasiCtx, Stdio) {
    let stdio = Stdio { stdout: MemoryOutputPipe::new(STDIO_CAP), stderr: MemoryOutputPipe::new(STDIO_CAP) };
    let ctx = WasiCtxBuilder::new()
        .stdout(stdio.stdout.clone())
        .stderr(stdio.stderr.clone())
        .wall_clock(WallClock(clock.clone()))
        .monotonic_clock(MonotonicClock(clock))
        .secure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_0f5e_c0e5))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(seed.rotate_left(29)))
        .insecure_random_seed(u128::from(seed) << 64 | u128::from(seed.rotate_left(7)))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build();
    (ctx, stdio)
}
