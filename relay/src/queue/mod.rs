//! Enqueueing with group commit. Handlers hand prepared messages to one
//! writer task, which commits whatever has piled up in a single transaction
//! (one fsync for many API calls) and answers each caller only after the
//! commit. A 202 therefore always means "durably stored".

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{error, warn};

use crate::domain::Stream;
use crate::store::{EnqueueOutcome, PreparedMessage, Store, StoreError};

/// Messages committed per transaction at most.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<EnqueueOutcome, Arc<StoreError>>>;

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("the store refused the message")]
    Store(#[source] Arc<StoreError>),
    #[error("the relay is shutting down")]
    ShuttingDown,
}

/// Wakes each stream's worker when it has new mail.
#[derive(Debug, Default)]
pub struct Wakers {
    pub transactional: Arc<Notify>,
    pub marketing: Arc<Notify>,
}

impl Wakers {
    pub fn get(&self, stream: Stream) -> &Arc<Notify> {
        match stream {
            Stream::Transactional => &self.transactional,
            Stream::Marketing => &self.marketing,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Enqueuer {
    tx: mpsc::Sender<(PreparedMessage, Reply)>,
}

impl Enqueuer {
    /// Starts the writer task. It ends when every `Enqueuer` clone is dropped,
    /// after committing what it holds.
    pub fn spawn(store: Store, wakers: Arc<Wakers>) -> (Enqueuer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let handle = tokio::spawn(writer(store, rx, wakers));
        (Enqueuer { tx }, handle)
    }

    /// Commits one message; returns once it is durable (or was a replay).
    ///
    /// # Errors
    /// The store failed, or the writer has stopped.
    pub async fn enqueue(&self, message: PreparedMessage) -> Result<EnqueueOutcome, EnqueueError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((message, reply))
            .await
            .map_err(|_| EnqueueError::ShuttingDown)?;
        rx.await
            .map_err(|_| EnqueueError::ShuttingDown)?
            .map_err(EnqueueError::Store)
    }
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<(PreparedMessage, Reply)>,
    wakers: Arc<Wakers>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (messages, replies): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        match store.enqueue_batch(&messages).await {
            Ok(outcomes) => {
                wake(&wakers, &messages);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) if messages.len() > 1 => {
                // One bad message must not sink the others: commit them one by one.
                warn!(error = %e, n = messages.len(), "group commit failed; retrying messages one at a time");
                for (m, reply) in messages.into_iter().zip(replies) {
                    let result = store.enqueue_batch(std::slice::from_ref(&m)).await;
                    if result.is_ok() {
                        wake(&wakers, std::slice::from_ref(&m));
                    }
                    let _ = reply.send(result.map(|mut v| v.remove(0)).map_err(|e| {
                        error!(message_id = %m.id, error = %e, cause = ?e, "enqueue failed");
                        Arc::new(e)
                    }));
                }
            }
            Err(e) => {
                error!(error = %e, cause = ?e, "enqueue failed");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn wake(wakers: &Wakers, messages: &[PreparedMessage]) {
    for stream in Stream::ALL {
        if messages.iter().any(|m| m.stream == stream) {
            wakers.get(stream).notify_one();
        }
    }
}
