//! Runs something on its own thread and Tokio runtime, so a test can crash it: dropping the
//! runtime ends every task it owns (servers, heartbeats, Redis connections) without any goodbye,
//! as a killed process would; or stop it gracefully.

use std::{future::Future, sync::Mutex};

use anyhow::Context;
use tokio::sync::oneshot;

enum Stop {
    Graceful,
    Crash,
}

pub struct Isolated {
    stop: Mutex<Option<oneshot::Sender<Stop>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Isolated {
    /// Runs `setup` on a new runtime. It returns what the test gets and how to stop gracefully.
    pub async fn spawn<T, F, Fut, G, GFut>(name: &str, setup: F) -> anyhow::Result<(Self, T)>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<(T, G)>>,
        T: Send + 'static,
        G: FnOnce() -> GFut,
        GFut: Future<Output = ()>,
    {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let graceful = match rt.block_on(setup()) {
                    Ok((value, graceful)) => {
                        let _ = ready_tx.send(Ok(value));
                        graceful
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                if let Stop::Graceful = rt.block_on(async { stop_rx.await.unwrap_or(Stop::Crash) })
                {
                    rt.block_on(graceful());
                }
                rt.shutdown_background();
            })?;
        let value = ready_rx.await.context("isolated thread died")??;
        let isolated = Self {
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        };
        Ok((isolated, value))
    }

    /// Kills it: no goodbye, no connection closed cleanly.
    pub fn crash(&self) {
        self.halt(Stop::Crash);
    }

    /// Runs its graceful stop and waits for it.
    pub fn stop(&self) {
        self.halt(Stop::Graceful);
    }

    fn halt(&self, how: Stop) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(how);
        }
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.halt(Stop::Crash);
    }
}
