//! One read wakeup for two tasks.
//!
//! A transport keeps the waker of the last task that polled it for reading
//! (tokio keeps one read waker per I/O resource). The client's stream and
//! its `close()` both read the same transport, possibly from two tasks
//! (halves of `StreamExt::split`): whichever polled last would take the
//! wakeup from the other. So both register here, and the transport is
//! always given one waker that wakes both.

use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures::task::AtomicWaker;

/// Who waits to read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reader {
    /// The client's `Stream`.
    Stream,
    /// The client's `close()`.
    Close,
}

pub(crate) struct ReadWakers {
    slots: Arc<Slots>,
    /// Wakes both slots; the one waker the transport sees.
    both: Waker,
}

struct Slots {
    stream: AtomicWaker,
    close: AtomicWaker,
}

impl Wake for Slots {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.stream.wake();
        self.close.wake();
    }
}

impl ReadWakers {
    pub(crate) fn new() -> Self {
        let slots = Arc::new(Slots {
            stream: AtomicWaker::new(),
            close: AtomicWaker::new(),
        });
        let both = Waker::from(slots.clone());
        ReadWakers { slots, both }
    }

    fn slot(&self, reader: Reader) -> &AtomicWaker {
        match reader {
            Reader::Stream => &self.slots.stream,
            Reader::Close => &self.slots.close,
        }
    }

    /// Registers the waker of `cx` for `reader`, and returns a context for
    /// polling the transport whose waker wakes both readers.
    pub(crate) fn register(&self, reader: Reader, cx: &Context<'_>) -> Context<'_> {
        self.slot(reader).register(cx.waker());
        Context::from_waker(&self.both)
    }

    /// Wakes `reader`, if it waits.
    pub(crate) fn wake(&self, reader: Reader) {
        self.slot(reader).wake();
    }
}
