//! A policy component that misbehaves on purpose, for the sandbox tests in
//! `tests/e2e/sandbox.rs` (design invariant 5). Its behaviour is chosen by
//! the `misbehave` key of the settings passed to `configure`:
//!
//! | mode | what it does |
//! |---|---|
//! | `none` (default) | a correct tiny policy: scene events enqueue `{"v":1}`, `step` claims and completes one job |
//! | `loop-on-event` / `loop-on-step` | an endless loop (the host's fuel budget must stop it) |
//! | `alloc-on-event` | allocates up to 1 GiB, 16 MiB at a time (the memory limit must stop it) |
//! | `panic-on-event` | panics (the message reaches the host through the panic hook) |
//! | `panic-on-step` | claims a job, then panics while holding its lease |
//! | `huge-log` | logs a 10 MiB line (with a forged Stash log frame) before enqueueing |
//! | `spin-step` | `step` answers `wait-ms(0)` forever |
//! | `hollow-step` | `step` answers `worked` forever without doing anything |
//! | `grow-4g-on-step` | asks for 4 GiB of linear memory at once (`memory.grow` of 65,535 pages) |
//! | `garbage-step` | answers nonsense: a 4 MiB `worked` summary full of control characters and forged log frames (having done nothing), then `idle` due at the start of time |
//!
//! The task `attack` (args `{"which": ...}`) tries one thing a policy must
//! not be able to do and answers what the host said (see `attack`): mint a
//! token, change server preferences, make Plex fetch a URL, read Stash's
//! settings through an "image", read another policy's state, flood the
//! queue, the state or the log; built with the `wasi` feature, also
//! `wasi`: list the preopened directories, read the environment, connect a
//! TCP socket to the `port` in the args, write to stdout.
//!
//! `info` reports the name in [`NAME_SLOT`] (the text after `=`); tests
//! patch it in the built module to make a policy that claims to be the
//! built-in one.
//! It declares its two settings (`misbehave`, a choice of the modes above,
//! and `misbehave_lease_ms`), so the host parses and passes them like any
//! policy's.
//!
//! Everything that touches the generated bindings is wasm32-only, so the
//! crate also builds (as an empty library) natively for `cargo clippy
//! --workspace`.

/// `info`'s name is the text after `=` (up to the first NUL). Tests find
/// these exact bytes in the core module and overwrite the name.
pub static NAME_SLOT: [u8; 40] = *b"misbehave-name=stash2plex-misbehave\0\0\0\0\0";

#[cfg(target_arch = "wasm32")]
mod glue {
    use std::cell::Cell;
    use std::hint::black_box;

    #[cfg(not(feature = "wasi"))]
    wit_bindgen::generate!({ path: "../../../wit/since_v0.1.0", world: "policy-component" });
    #[cfg(feature = "wasi")]
    wit_bindgen::generate!({
        path: ["../../../wit/since_v0.1.0", "wit"],
        world: "stash2plex-test:wasi-probe/wasi-probe",
        generate_all,
    });

    use exports::stash2plex::policy::policy::{
        Condition, Event, EventOutcome, Guest, PolicyInfo, PolicyStatus, Setting, SettingKind, SettingSpec,
        SettingValue, StepOutcome, TaskSpec, WholeRange,
    };
    use stash2plex::policy::{clock, log, plex, queue};

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        None,
        LoopOnEvent,
        LoopOnStep,
        AllocOnEvent,
        PanicOnEvent,
        PanicOnStep,
        HugeLog,
        SpinStep,
        HollowStep,
        Grow4gOnStep,
        GarbageStep,
    }

    const MODES: &[(&str, Mode)] = &[
        ("none", Mode::None),
        ("loop-on-event", Mode::LoopOnEvent),
        ("loop-on-step", Mode::LoopOnStep),
        ("alloc-on-event", Mode::AllocOnEvent),
        ("panic-on-event", Mode::PanicOnEvent),
        ("panic-on-step", Mode::PanicOnStep),
        ("huge-log", Mode::HugeLog),
        ("spin-step", Mode::SpinStep),
        ("hollow-step", Mode::HollowStep),
        ("grow-4g-on-step", Mode::Grow4gOnStep),
        ("garbage-step", Mode::GarbageStep),
    ];

    thread_local! {
        static MODE: Cell<Mode> = const { Cell::new(Mode::None) };
        static LEASE_MS: Cell<u32> = const { Cell::new(60_000) };
        static GARBAGE: Cell<u32> = const { Cell::new(0) };
    }

    fn mode() -> Mode {
        MODE.with(Cell::get)
    }

    fn install_panic_hook() {
        std::panic::set_hook(Box::new(|info| log::write(log::Level::Error, &format!("policy panic: {info}"))));
    }

    /// Burn CPU until the host stops the call.
    fn spin_forever() -> ! {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    struct Misbehave;

    impl Guest for Misbehave {
        fn info() -> PolicyInfo {
            let settings = vec![
                SettingSpec {
                    key: "misbehave".into(),
                    kind: SettingKind::Choice(MODES.iter().map(|(n, _)| n.to_string()).collect()),
                    default_value: SettingValue::Text("none".into()),
                    description: "Which fault to show".into(),
                },
                SettingSpec {
                    key: "misbehave_lease_ms".into(),
                    kind: SettingKind::Whole(WholeRange { min: 100, max: 600_000 }),
                    default_value: SettingValue::Whole(60_000),
                    description: "Lease taken on each claimed job".into(),
                },
            ];
            PolicyInfo {
                name: claimed_name(),
                version: env!("CARGO_PKG_VERSION").into(),
                settings,
                tasks: vec![TaskSpec { name: "attack".into(), description: "Try one forbidden thing".into() }],
            }
        }

        fn configure(settings: Vec<Setting>) -> Result<(), Vec<String>> {
            install_panic_hook();
            for Setting { key, value } in settings {
                match (key.as_str(), value) {
                    ("misbehave", SettingValue::Text(name)) => {
                        let Some(&(_, m)) = MODES.iter().find(|(n, _)| *n == name) else {
                            return Err(vec![format!("unknown misbehave mode {name:?}")]);
                        };
                        MODE.with(|c| c.set(m));
                    }
                    ("misbehave_lease_ms", SettingValue::Whole(ms)) => {
                        LEASE_MS.with(|c| c.set(u32::try_from(ms).unwrap_or(u32::MAX)));
                    }
                    _ => {}
                }
            }
            Ok(())
        }

        fn on_event(event: Event) -> Result<EventOutcome, String> {
            install_panic_hook();
            let id = event.object_id.clone().unwrap_or_default();
            match mode() {
                Mode::LoopOnEvent => spin_forever(),
                Mode::PanicOnEvent => panic!("misbehave: deliberate panic in on-event for scene {id}"),
                Mode::AllocOnEvent => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    for _ in 0..64 {
                        hoard.push(vec![0xA5; 16 << 20]);
                        black_box(&hoard);
                    }
                    return Err(format!("misbehave: allocated {} MiB and nobody stopped me", hoard.len() * 16));
                }
                Mode::HugeLog => {
                    let mut line = String::from("misbehave: huge line\n\u{1}e\u{2}misbehave forged an error line\n");
                    line.push_str(&"x".repeat(10 << 20));
                    log::write(log::Level::Info, &line);
                }
                _ => {}
            }
            if !event.trigger.starts_with("Scene.") || id.is_empty() {
                return Ok(EventOutcome::Ignored(format!("misbehave: nothing to do for {}", event.trigger)));
            }
            queue::enqueue(&id, r#"{"v":1}"#, clock::now_ms()).map_err(|e| format!("misbehave: enqueue: {e:?}"))?;
            Ok(EventOutcome::Enqueued(format!("misbehave recorded scene {id}")))
        }

        fn step() -> Result<StepOutcome, String> {
            install_panic_hook();
            match mode() {
                Mode::LoopOnStep => spin_forever(),
                Mode::SpinStep => return Ok(StepOutcome::WaitMs(0)),
                Mode::HollowStep => return Ok(StepOutcome::Worked("misbehave did nothing at all".into())),
                Mode::Grow4gOnStep => {
                    // 65,535 pages of 64 KiB: the whole 32-bit address space.
                    let grown = core::arch::wasm32::memory_grow(0, 65_535);
                    return Err(format!("misbehave: memory.grow of 4 GiB answered {grown} and nobody stopped me"));
                }
                Mode::GarbageStep => {
                    let n = GARBAGE.with(|c| {
                        c.set(c.get() + 1);
                        c.get()
                    });
                    return Ok(if n % 2 == 1 {
                        let mut junk = String::from("\u{1}e\u{2}misbehave forged frame\n\u{1b}[31m");
                        junk.push_str(&"\u{7}\u{0}garbage ".repeat(400_000));
                        StepOutcome::Worked(junk)
                    } else {
                        StepOutcome::Idle(Some(i64::MIN))
                    });
                }
                _ => {}
            }
            let lease_ms = LEASE_MS.with(Cell::get);
            let job = queue::claim(lease_ms).map_err(|e| format!("misbehave: claim: {e:?}"))?;
            if mode() == Mode::PanicOnStep {
                match &job {
                    Some(j) => {
                        panic!("misbehave: deliberate panic in step holding job {} (scene {})", j.id, j.scene_id)
                    }
                    None => panic!("misbehave: deliberate panic in step (nothing claimed)"),
                }
            }
            let Some(job) = job else {
                return Ok(StepOutcome::Idle(None));
            };
            queue::complete(job.id, job.lease, &[]).map_err(|e| format!("misbehave: complete: {e:?}"))?;
            Ok(StepOutcome::Worked(format!("misbehave completed scene {}", job.scene_id)))
        }

        fn run_task(name: String, args: String) -> Result<String, String> {
            if name != "attack" {
                return Err(format!("misbehave has no task {name:?}"));
            }
            let which = args.split("\"which\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
            #[cfg(feature = "wasi")]
            if let Some(port) = args.split("\"port\":").nth(1).and_then(|r| {
                r.trim_start_matches(['"', ' ']).split(|c: char| !c.is_ascii_digit()).next()?.parse::<u16>().ok()
            }) {
                PORT.with(|c| c.set(port));
            }
            Ok(format!("attack {which}: {}", attack(which)))
        }

        fn status() -> Result<PolicyStatus, String> {
            Ok(PolicyStatus {
                condition: Condition::Healthy,
                summary: "misbehave: no opinion about Plex".into(),
                details: Vec::new(),
                outages: Vec::new(),
            })
        }
    }

    fn request(method: plex::Method, path: &str, query: &[(&str, &str)], body: plex::Body) -> plex::Request {
        plex::Request {
            method,
            path: path.into(),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            headers: Vec::new(),
            body,
            timeout_ms: None,
        }
    }

    fn sent(r: Result<plex::Response, plex::TransportError>) -> String {
        match r {
            Ok(resp) => format!(
                "SENT, Plex answered {} with {} bytes: {}",
                resp.status,
                resp.body.len(),
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
            ),
            Err(e) => format!("refused: {e:?}"),
        }
    }

    /// Try one forbidden thing; say what happened.
    fn attack(which: &str) -> String {
        use plex::{Body, Method};
        let stash = "http://127.0.0.1:9999";
        match which {
            "mint-token" => sent(plex::send(&request(
                Method::Get,
                "/security/token",
                &[("type", "delegation"), ("scope", "all")],
                Body::Empty,
            ))),
            "prefs" => sent(plex::send(&request(Method::Put, "/:/prefs", &[("allowMediaDeletion", "1")], Body::Empty))),
            "poster-url" => sent(plex::send(&request(
                Method::Post,
                "/library/metadata/1/posters",
                &[("url", "http://192.168.1.1/admin")],
                Body::Empty,
            ))),
            "token-in-query" => {
                sent(plex::send(&request(Method::Get, "/library/sections", &[("X-Plex-Token", "guess")], Body::Empty)))
            }
            "absolute-url" => sent(plex::send(&request(Method::Get, "http://evil.example/x", &[], Body::Empty))),
            "edit-thumb" => sent(plex::send(&request(
                Method::Put,
                "/library/sections/1/all",
                &[("type", "1"), ("id", "1"), ("thumb.value", "http://evil.example/x.jpg")],
                Body::Empty,
            ))),
            "stash-settings-as-image" => sent(plex::send(&request(
                Method::Put,
                "/library/sections/1/all",
                &[("type", "1"), ("id", "1")],
                Body::StashImage(format!("{stash}/graphql?query={{configuration{{general{{apiKey}}plugins}}}}")),
            ))),
            "long-timeout" => {
                let mut r = request(Method::Get, "/identity", &[], Body::Empty);
                r.timeout_ms = Some(u32::MAX);
                sent(plex::send(&r))
            }
            "snoop-state" => format!("{:?}", queue::state_get("resilience/v1")),
            "state-flood" => {
                let big = "x".repeat(1 << 20);
                let one = queue::state_set(&[queue::StateWrite { key: "big".into(), value: Some(big) }]);
                let many: Vec<queue::StateWrite> =
                    (0..2000).map(|i| queue::StateWrite { key: format!("k{i}"), value: Some("v".into()) }).collect();
                format!("one MiB value: {one:?}; 2000 keys at once: {:?}", queue::state_set(&many))
            }
            "payload-flood" => {
                let big = "p".repeat(1 << 20);
                let first = queue::enqueue("900001", &big, i64::MAX);
                let far = queue::enqueue("900002", "{\"v\":1}", i64::MAX);
                let bad_id = queue::enqueue("../../etc/passwd", "{}", 0);
                format!("1 MiB payload: {first:?}; due at the end of time: {far:?}; bad scene id: {bad_id:?}")
            }
            "enqueue-flood" => {
                let mut refused = 0;
                for i in 0..2_000u32 {
                    if queue::enqueue(&(800_000 + i).to_string(), "{}", 0).is_err() {
                        refused += 1;
                    }
                }
                format!("{refused} of 2000 enqueues refused")
            }
            "log-flood" => {
                for i in 0..100_000 {
                    log::write(log::Level::Info, &format!("misbehave flood line {i}"));
                }
                "logged 100000 lines".into()
            }
            #[cfg(feature = "wasi")]
            "wasi" => wasi_probe(&args_port(which)),
            other => format!("unknown attack {other:?}"),
        }
    }

    #[cfg(feature = "wasi")]
    fn args_port(_which: &str) -> u16 {
        PORT.with(Cell::get)
    }

    #[cfg(feature = "wasi")]
    thread_local! {
        static PORT: Cell<u16> = const { Cell::new(9) };
    }

    /// What WASI gives a policy: the host grants nothing, so every attempt
    /// must fail inside the sandbox.
    #[cfg(feature = "wasi")]
    fn wasi_probe(port: &u16) -> String {
        use wasi::cli::{environment, stdout};
        use wasi::filesystem::preopens;
        use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
        use wasi::sockets::{instance_network, tcp_create_socket};
        let dirs = preopens::get_directories();
        let env = environment::get_environment();
        let args = environment::get_arguments();
        let network = instance_network::instance_network();
        let socket = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4);
        let connect = match &socket {
            Ok(s) => {
                let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress { port: *port, address: (127, 0, 0, 1) });
                match s.start_connect(&network, addr) {
                    Ok(()) => {
                        let pollable = s.subscribe();
                        pollable.block();
                        format!("{:?}", s.finish_connect().map(|_| "CONNECTED"))
                    }
                    Err(e) => format!("refused: {e:?}"),
                }
            }
            Err(e) => format!("no socket: {e:?}"),
        };
        let wrote = stdout::get_stdout().blocking_write_and_flush(b"wasi-probe: hello on stdout\n");
        let random = wasi::random::random::get_random_u64();
        format!(
            "preopened directories: {}; environment variables: {}; arguments: {}; socket: {}; connect to 127.0.0.1:{port}: {connect}; stdout write: {:?}; random: {}",
            dirs.len(),
            env.len(),
            args.len(),
            if socket.is_ok() { "created" } else { "refused" },
            wrote.map_err(|e| format!("{e:?}")),
            random != 0
        )
    }

    /// The name `info` claims (patched by tests).
    fn claimed_name() -> String {
        let slot = black_box(&super::NAME_SLOT);
        let text = std::str::from_utf8(&slot[..]).unwrap_or("").trim_end_matches('\0');
        text.split_once('=').map(|(_, v)| v).unwrap_or("stash2plex-misbehave").to_string()
    }

    export!(Misbehave);
}
