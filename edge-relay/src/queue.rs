//! Puts waiting between the batcher and the shipper, bounded in bytes: each
//! queued put holds a permit for its size, released when the shipper is done
//! with it. A count of batches would let a few large ones take gigabytes or a
//! stream of small ones (short linger, low rate) fill the slots while Kinesis
//! is healthy and push them to the disk spool.
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::batcher::{MAX_BYTES_PER_PUT, MAX_RECORDS_PER_PUT, Record};

/// One PutRecords call's records and the memory they hold.
pub struct QueuedPut {
    pub records: Vec<Record>,
    _memory: OwnedSemaphorePermit,
}

fn put_bytes(records: &[Record]) -> usize {
    records.iter().map(Record::size).sum()
}

/// A queue holding at most `memory_bytes` of record data (at least one put).
pub fn ship_queue(memory_bytes: usize) -> (ShipSender, ShipReceiver) {
    // Never below one full put: smaller would spool every put.
    let budget = memory_bytes.clamp(MAX_BYTES_PER_PUT, Semaphore::MAX_PERMITS);
    let memory = Arc::new(Semaphore::new(budget));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        ShipSender {
            tx,
            memory: memory.clone(),
            budget,
        },
        ShipReceiver { rx, next: None },
    )
}

#[derive(Clone)]
pub struct ShipSender {
    tx: mpsc::UnboundedSender<QueuedPut>,
    memory: Arc<Semaphore>,
    budget: usize,
}

impl ShipSender {
    /// Queues `records` if their bytes fit now; gives them back otherwise
    /// (or when the shipper is gone) for the caller to spool.
    pub fn try_send(&self, records: Vec<Record>) -> Result<(), Vec<Record>> {
        let n = self.permits(&records);
        match self.memory.clone().try_acquire_many_owned(n) {
            Ok(permit) => self.queue(records, permit),
            Err(_) => Err(records),
        }
    }

    /// Queues `records`, waiting for room.
    pub async fn send(&self, records: Vec<Record>) -> Result<(), Vec<Record>> {
        let n = self.permits(&records);
        match self.memory.clone().acquire_many_owned(n).await {
            Ok(permit) => self.queue(records, permit),
            Err(_) => Err(records),
        }
    }

    /// Bytes of record data queued now.
    pub fn queued_bytes(&self) -> usize {
        self.gauge().get()
    }

    /// Reads the queued bytes without keeping the queue open.
    pub fn gauge(&self) -> QueuedBytes {
        QueuedBytes {
            memory: self.memory.clone(),
            budget: self.budget,
        }
    }

    fn permits(&self, records: &[Record]) -> u32 {
        // A put is at most 5 MiB (Kinesis' limit) and the budget at least that.
        put_bytes(records).min(self.budget) as u32
    }

    fn queue(&self, records: Vec<Record>, permit: OwnedSemaphorePermit) -> Result<(), Vec<Record>> {
        self.tx
            .send(QueuedPut {
                records,
                _memory: permit,
            })
            .map_err(|e| e.0.records)
    }
}

#[derive(Clone)]
pub struct QueuedBytes {
    memory: Arc<Semaphore>,
    budget: usize,
}

impl QueuedBytes {
    pub fn get(&self) -> usize {
        self.budget - self.memory.available_permits()
    }
}

pub struct ShipReceiver {
    rx: mpsc::UnboundedReceiver<QueuedPut>,
    /// A put taken from the channel that did not fit the previous merge.
    next: Option<QueuedPut>,
}

impl ShipReceiver {
    /// The next put, merged with the ones queued behind it while the whole
    /// stays one PutRecords call: small puts queued while Kinesis was slow go
    /// out in few calls. None once every sender is gone and the queue empty.
    pub async fn recv(&mut self) -> Option<QueuedPut> {
        let mut put = match self.next.take() {
            Some(p) => p,
            None => self.rx.recv().await?,
        };
        let mut bytes = put_bytes(&put.records);
        while let Ok(more) = self.rx.try_recv() {
            let more_bytes = put_bytes(&more.records);
            if put.records.len() + more.records.len() > MAX_RECORDS_PER_PUT
                || bytes + more_bytes > MAX_BYTES_PER_PUT
            {
                self.next = Some(more);
                break;
            }
            bytes += more_bytes;
            put.records.extend(more.records);
            put._memory.merge(more._memory);
        }
        Some(put)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(records: usize, bytes_each: usize) -> Vec<Record> {
        (0..records)
            .map(|i| Record {
                partition_key: format!("{i:04}"),
                data: vec![7; bytes_each - 4],
            })
            .collect()
    }

    #[tokio::test]
    async fn bounded_in_bytes_not_in_puts() {
        let (tx, mut rx) = ship_queue(8 << 20);
        // A thousand small puts fit where a count of 51 slots would not.
        for _ in 0..1000 {
            tx.try_send(put(1, 1000)).unwrap();
        }
        assert_eq!(tx.queued_bytes(), 1_000_000);
        // Two 4 MiB puts do not fit beside them.
        tx.try_send(put(4, 1 << 20)).unwrap();
        let refused = tx.try_send(put(4, 1 << 20)).unwrap_err();
        assert_eq!(refused.len(), 4);
        // Merged up to Kinesis' limits: 500 records per call.
        let a = rx.recv().await.unwrap();
        assert_eq!(a.records.len(), 500);
        let b = rx.recv().await.unwrap();
        assert_eq!(b.records.len(), 500);
        drop((a, b));
        assert_eq!(tx.queued_bytes(), 4 << 20, "a finished put frees its bytes");
        tx.try_send(refused).unwrap();
        // Two 4 MiB puts do not merge past 5 MiB.
        assert_eq!(rx.recv().await.unwrap().records.len(), 4);
        assert_eq!(rx.recv().await.unwrap().records.len(), 4);
        assert_eq!(tx.queued_bytes(), 0);
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_budget_below_one_put_still_holds_one() {
        let (tx, _rx) = ship_queue(1);
        tx.try_send(put(5, 1 << 20)).unwrap();
        assert!(tx.try_send(put(1, 10)).is_err());
    }
}
