//! `stash2plex-lab bench --durability`: what `synchronous=FULL` costs the
//! hook. A hook's one write is one commit of an `events` row; this times
//! that commit as the plugin makes it (`Queue::record_event`, FULL), and the
//! same statement on the same schema with FULL and with NORMAL, so the
//! difference is the setting alone. Run it on the disk the plugin's data
//! folder lives on (`--dir`): the cost is the disk's fsync.

use stash2plex::store::Queue;
use std::path::Path;
use std::time::Instant;

/// Commits timed per variant (after a few warm-up commits).
const COMMITS: usize = 300;
const WARM_UP: usize = 10;

pub fn run(dir: Option<&Path>) -> Result<(), String> {
    let base = dir.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let work = base.join(format!("stash2plex-bench-durability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = measure(&work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure(work: &Path) -> Result<(), String> {
    println!("durability: one hook's commit (an events row), {COMMITS} commits each, in {}", work.display());
    println!("  {:<50} {:>9} {:>9} {:>9}", "", "median", "p95", "fastest");

    // As the plugin commits: the queue opened the way a hook opens it.
    let mut queue = Queue::open(&work.join("shipped.db")).map_err(|e| e.to_string())?;
    let shipped = time_commits(|i| {
        queue
            .record_event("Scene.Update.Post", Some(&i.to_string()), &["title".into()], None, i as i64)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    drop(queue);
    report("Queue::record_event (synchronous=FULL, shipped)", &shipped);

    for mode in ["FULL", "NORMAL"] {
        // The same schema (made by the queue), then the same statement.
        let path = work.join(format!("{}.db", mode.to_lowercase()));
        drop(Queue::open(&path).map_err(|e| e.to_string())?);
        let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
        conn.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={mode};"))
            .map_err(|e| e.to_string())?;
        let mut insert = conn
            .prepare(
                "INSERT INTO events (trigger, object_id, input_fields, input, received) VALUES (?1, ?2, ?3, NULL, ?4)",
            )
            .map_err(|e| e.to_string())?;
        let times = time_commits(|i| {
            insert
                .execute(rusqlite::params!["Scene.Update.Post", i.to_string(), "[\"title\"]", i as i64])
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        report(&format!("the same INSERT, synchronous={mode}"), &times);
    }
    println!(
        "  FULL syncs the WAL on every commit, so a recorded change survives a power cut, not only a crash;\n  \
         NORMAL may lose the last commits on power loss. The plugin uses FULL."
    );
    println!();
    Ok(())
}

/// Milliseconds per call of `commit`, warm-up excluded.
fn time_commits(mut commit: impl FnMut(usize) -> Result<(), String>) -> Result<Vec<f64>, String> {
    let mut times = Vec::with_capacity(COMMITS);
    for i in 0..WARM_UP + COMMITS {
        let t = Instant::now();
        commit(i)?;
        if i >= WARM_UP {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(times)
}

fn report(label: &str, times: &[f64]) {
    let (median, p95, fastest) = crate::bench::stats(times.to_vec());
    println!("  {label:<50} {median:>6.3} ms {p95:>6.3} ms {fastest:>6.3} ms");
}
