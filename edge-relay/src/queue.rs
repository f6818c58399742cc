//! Puts waiting between the batcher and the shipper, bounded in bytes by the
//! listeners' queue (`listen::queue`), except that a put keeps its room until
//! the shipper is done with it (sent or spooled), not only while queued. A
//! count of batches would let a few large ones take gigabytes or a stream of
//! small ones (short linger, low rate) fill the slots while Kinesis is healthy
//! and push them to the disk spool.
use listen::{QueueGauge, QueueReceiver, QueueSender, Room, Weigh};

use crate::batcher::{MAX_BYTES_PER_PUT, MAX_RECORDS_PER_PUT, Record};

fn put_bytes(records: &[Record]) -> usize {
    records.iter().map(Record::size).sum()
}

/// One PutRecords call's records, weighed by what Kinesis counts.
struct Put(Vec<Record>);

impl Weigh for Put {
    fn weight(&self) -> usize {
        put_bytes(&self.0)
    }
}

/// One PutRecords call's records and the memory they hold.
pub struct QueuedPut {
    pub records: Vec<Record>,
    _room: Room,
}

/// A queue holding at most `memory_bytes` of record data, and never less than
/// one full put: smaller would spool puts a healthy Kinesis would take.
pub fn ship_queue(memory_bytes: usize) -> (ShipSender, ShipReceiver) {
    let (tx, rx) = listen::queue(memory_bytes.max(MAX_BYTES_PER_PUT));
    (ShipSender(tx), ShipReceiver { rx, next: None })
}

#[derive(Clone)]
pub struct ShipSender(QueueSender<Put>);

impl ShipSender {
    /// Queues `records` if their bytes fit now; gives them back otherwise
    /// (or when the shipper is gone) for the caller to spool.
    pub fn try_send(&self, records: Vec<Record>) -> Result<(), Vec<Record>> {
        self.0.try_send(Put(records)).map_err(|p| p.0)
    }

    /// Queues `records`, waiting for room.
    pub async fn send(&self, records: Vec<Record>) -> Result<(), Vec<Record>> {
        self.0.send(Put(records)).await.map_err(|p| p.0)
    }

    /// Bytes of record data queued or being sent now.
    pub fn queued_bytes(&self) -> usize {
        self.gauge().get()
    }

    /// Reads the queued bytes without keeping the queue open.
    pub fn gauge(&self) -> QueueGauge {
        self.0.gauge()
    }
}

pub struct ShipReceiver {
    rx: QueueReceiver<Put>,
    /// A put taken from the queue that did not fit the previous merge.
    next: Option<(Put, Room)>,
}

impl ShipReceiver {
    /// The next put, merged with the ones queued behind it while the whole
    /// stays one PutRecords call: small puts queued while Kinesis was slow go
    /// out in few calls. None once every sender is gone and the queue empty.
    pub async fn recv(&mut self) -> Option<QueuedPut> {
        let (Put(mut records), mut room) = match self.next.take() {
            Some(p) => p,
            None => self.rx.recv_holding().await?,
        };
        let mut bytes = put_bytes(&records);
        while let Some((more, more_room)) = self.rx.try_recv_holding() {
            let more_bytes = more.weight();
            if records.len() + more.0.len() > MAX_RECORDS_PER_PUT
                || bytes + more_bytes > MAX_BYTES_PER_PUT
            {
                self.next = Some((more, more_room));
                break;
            }
            bytes += more_bytes;
            records.extend(more.0);
            room.merge(more_room);
        }
        Some(QueuedPut {
            records,
            _room: room,
        })
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

    #[tokio::test]
    async fn a_budget_below_one_put_holds_a_full_put_of_small_ones() {
        // Below 5 MiB the bound is one full put, not one put: small puts queue
        // beside each other instead of going to the spool.
        let (tx, _rx) = ship_queue(1);
        for _ in 0..5 {
            tx.try_send(put(1, 1 << 20)).unwrap();
        }
        assert!(tx.try_send(put(1, 10)).is_err());
    }
}
