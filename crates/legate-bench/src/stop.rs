//! When a benchmark server stops: when its standard input closes (the driver closes it
//! after the load generator has finished) or after `--max-secs`, whichever comes first,
//! so that a server outlives its driver by at most that bound.

use std::io::Read as _;
use std::time::Duration;

/// Completes when standard input reaches its end (or fails), or after `max_secs`.
///
/// Standard input is read by a plain thread (it sleeps in `read`), which tells the
/// runtime through a channel; the thread is left behind when the process exits.
pub async fn stopped(max_secs: u64) {
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    let reader = std::thread::Builder::new()
        .name("stdin-watch".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0_u8; 64];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = closed.send(());
        });
    let stdin_closed = async {
        match reader {
            // A dropped sender (the thread ended) counts as closed as well.
            Ok(_) => {
                let _ = stdin_closed.await;
            }
            // No thread, no watch: the time bound alone stops the server.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = stdin_closed => {}
        () = tokio::time::sleep(Duration::from_secs(max_secs)) => {}
    }
}

/// Prints `line` on standard output and flushes it (the driver reads it through a pipe).
pub fn announce(line: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
