//! `serve`'s stdout: one writer task owns it, so lines of concurrent
//! connections never interleave and each connection's stay in order. The
//! queue to it is bounded in bytes (and so in messages): a connection
//! whose messages cannot be written yet waits, and stops reading.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::format::Format;

/// Bytes of messages queued for stdout at most, counting each message as
/// its length plus [`PER_MESSAGE_COST`] (so empty messages count too).
const QUEUE_BYTES: usize = 16 * 1024 * 1024;
const PER_MESSAGE_COST: usize = 64;

/// A line buffer that grew past this for a large message is dropped
/// after it, not kept.
const KEEP_LINE_BUFFER: usize = 1024 * 1024;

/// Where connections put messages for stdout.
#[derive(Clone)]
pub(crate) struct Output {
    queue: mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

/// The writer is gone (stdout failed, or shutdown).
#[derive(Debug)]
pub(crate) struct Closed;

impl Output {
    /// Queues `message`, waiting while the queue is full.
    pub(crate) async fn send(&self, message: Bytes) -> Result<(), Closed> {
        let cost = (message.len() + PER_MESSAGE_COST).min(QUEUE_BYTES);
        let cost = u32::try_from(cost).map_err(|_| Closed)?;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| Closed)?;
        self.queue.send((message, permit)).map_err(|_| Closed)
    }
}

/// Starts the writer to stdout. It ends when every [`Output`] is dropped
/// and the queue is written (with the number of messages written), or at
/// the first write error.
pub(crate) fn spawn(format: Format) -> (Output, JoinHandle<io::Result<u64>>) {
    spawn_to(tokio::io::stdout(), format)
}

fn spawn_to<W: AsyncWrite + Unpin + Send + 'static>(
    mut out: W,
    format: Format,
) -> (Output, JoinHandle<io::Result<u64>>) {
    let (queue, mut messages) = mpsc::unbounded_channel::<(Bytes, OwnedSemaphorePermit)>();
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
    let output = Output {
        queue,
        budget: budget.clone(),
    };
    let writer = tokio::spawn(async move {
        // However the writer ends, senders waiting for room learn it.
        struct CloseOnExit(Arc<Semaphore>);
        impl Drop for CloseOnExit {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        let _close = CloseOnExit(budget);
        let mut line = Vec::new();
        let mut written = 0u64;
        while let Some((message, permit)) = messages.recv().await {
            line.clear();
            format.write_line(&message, &mut line);
            drop(message);
            out.write_all(&line).await?;
            drop(permit);
            written += 1;
            if line.capacity() > KEEP_LINE_BUFFER {
                line = Vec::new();
            }
            if messages.is_empty() {
                out.flush().await?;
            }
        }
        out.flush().await?;
        Ok(written)
    });
    (output, writer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::FutureExt;

    use super::*;

    /// With the reader of the output stalled, messages queue up to the
    /// byte budget and no further, whether they are large or empty.
    #[tokio::test]
    async fn the_queue_to_a_stalled_output_is_bounded_in_bytes() {
        for size in [1024 * 1024, 0] {
            // A 64 KiB pipe that nobody reads.
            let (stalled, _unread) = tokio::io::duplex(64 * 1024);
            let (output, writer) = spawn_to(stalled, Format::Hex);
            let message = Bytes::from(vec![7u8; size]);
            let cost = size + PER_MESSAGE_COST;
            // Lines the pipe itself can take (hex: two digits a byte and a
            // newline), beyond the queue.
            let in_pipe = 64 * 1024 / (2 * size + 1) + 1;
            let bound = QUEUE_BYTES / cost + in_pipe + 1;
            let mut queued = 0usize;
            loop {
                tokio::task::yield_now().await; // let the writer take its share
                match output.send(message.clone()).now_or_never() {
                    Some(sent) => {
                        sent.unwrap();
                        queued += 1;
                    }
                    None => break, // full: a connection would wait here
                }
                assert!(queued <= bound, "{queued} messages of {size} bytes queued");
            }
            assert!(
                queued >= QUEUE_BYTES / cost / 2,
                "only {queued} messages of {size} bytes queued"
            );
            writer.abort();
        }
    }

    /// When the writer fails, senders learn it instead of waiting.
    #[tokio::test]
    async fn senders_learn_that_the_writer_failed() {
        let (closed, reader) = tokio::io::duplex(1024);
        drop(reader);
        let (output, writer) = spawn_to(closed, Format::Text);
        output.send(Bytes::from_static(b"first")).await.unwrap();
        assert!(writer.await.unwrap().is_err());
        assert!(output.send(Bytes::from_static(b"second")).await.is_err());
    }
}
