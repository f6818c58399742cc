//! The queue between the listeners and their consumer, bounded in bytes: a
//! bound in messages is no bound (a million 64 KiB packets are 64 GB). Each
//! queued item holds permits for its weight until it is taken out. UDP drops
//! (and counts) what does not fit; TCP waits for room, pushing back on the
//! sender.
use std::sync::Arc;

use hep::HepMessage;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Roughly the memory an item holds.
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for Vec<u8> {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.len()
    }
}

impl Weigh for HepMessage {
    fn weight(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<Self>()
            + self.payload.len()
            + text(&self.capture_pass)
            + text(&self.correlation_id)
            + text(&self.node_name)
    }
}

/// A queue holding items of at most `max_bytes` total weight. An item heavier
/// than the whole bound still passes, alone.
pub fn queue<T>(max_bytes: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let budget = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
    let memory = Arc::new(Semaphore::new(budget));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        QueueSender {
            tx,
            memory: memory.clone(),
            budget,
        },
        QueueReceiver { rx, memory, budget },
    )
}

pub struct QueueSender<T> {
    tx: mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    memory: Arc<Semaphore>,
    budget: usize,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            memory: self.memory.clone(),
            budget: self.budget,
        }
    }
}

impl<T: Weigh> QueueSender<T> {
    /// Queues `item` if it fits now; gives it back when full or closed.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        match self
            .memory
            .clone()
            .try_acquire_many_owned(self.permits(&item))
        {
            Ok(p) => self.tx.send((item, p)).map_err(|e| e.0.0),
            Err(_) => Err(item),
        }
    }

    /// Queues `item`, waiting for room; gives it back when the consumer is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        if self.tx.is_closed() {
            return Err(item);
        }
        match self
            .memory
            .clone()
            .acquire_many_owned(self.permits(&item))
            .await
        {
            Ok(p) => self.tx.send((item, p)).map_err(|e| e.0.0),
            Err(_) => Err(item),
        }
    }

    /// Reads the queued bytes without keeping the queue open.
    pub fn gauge(&self) -> QueueGauge {
        QueueGauge {
            memory: self.memory.clone(),
            budget: self.budget,
        }
    }

    fn permits(&self, item: &T) -> u32 {
        item.weight().min(self.budget).min(u32::MAX as usize) as u32
    }
}

#[derive(Clone)]
pub struct QueueGauge {
    memory: Arc<Semaphore>,
    budget: usize,
}

impl QueueGauge {
    /// Bytes queued now.
    pub fn get(&self) -> usize {
        self.budget - self.memory.available_permits()
    }
}

pub struct QueueReceiver<T> {
    rx: mpsc::UnboundedReceiver<(T, OwnedSemaphorePermit)>,
    memory: Arc<Semaphore>,
    budget: usize,
}

/// The queue memory an item taken out still holds: the bound keeps counting
/// the item until this is dropped (the relay keeps a put's room until the put
/// is sent or spooled).
pub struct Room(OwnedSemaphorePermit);

impl Room {
    /// One room for two items merged into one.
    pub fn merge(&mut self, other: Room) {
        self.0.merge(other.0);
    }
}

impl<T> QueueReceiver<T> {
    /// The next item; None once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        self.recv_holding().await.map(|(item, _room)| item)
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.try_recv_holding().map(|(item, _room)| item)
    }

    /// As `recv`, the item's room kept by the caller.
    pub async fn recv_holding(&mut self) -> Option<(T, Room)> {
        self.rx.recv().await.map(|(item, p)| (item, Room(p)))
    }

    /// As `try_recv`, the item's room kept by the caller.
    pub fn try_recv_holding(&mut self) -> Option<(T, Room)> {
        self.rx.try_recv().ok().map(|(item, p)| (item, Room(p)))
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.budget - self.memory.available_permits()
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        // Senders waiting for room wake up and find the queue closed.
        self.memory.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_bytes_and_tcp_waits_for_room() {
        let item = |n: usize| vec![0u8; n - std::mem::size_of::<Vec<u8>>()];
        let (tx, mut rx) = queue::<Vec<u8>>(10_000);
        for _ in 0..10 {
            tx.try_send(item(1000)).unwrap();
        }
        assert_eq!(rx.queued_bytes(), 10_000);
        assert_eq!(tx.gauge().get(), 10_000);
        assert!(tx.try_send(item(100)).is_err(), "full: UDP drops");
        // A waiting send completes once the consumer takes one out.
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(item(1000)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(rx.recv().await.is_some());
        waiting.await.unwrap().unwrap();
        assert_eq!(rx.queued_bytes(), 10_000);
        // One item over the whole bound passes alone.
        while rx.try_recv().is_some() {}
        tx.try_send(item(50_000)).unwrap();
        assert!(tx.try_send(item(100)).is_err());
        assert_eq!(
            rx.recv().await.unwrap().len(),
            50_000 - std::mem::size_of::<Vec<u8>>()
        );
        // The consumer gone: a sender waiting for room gets its item back.
        for _ in 0..10 {
            tx.try_send(item(1000)).unwrap();
        }
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(item(1000)).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert!(waiting.await.unwrap().is_err());
        assert!(tx.send(item(100)).await.is_err());
    }

    #[test]
    fn a_message_weighs_its_payload() {
        let m = HepMessage {
            payload: vec![0; 60_000],
            ..Default::default()
        };
        assert!(m.weight() >= 60_000 && m.weight() < 61_000);
    }
}
