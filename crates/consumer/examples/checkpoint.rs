//! Checkpoint-driven commits: offsets are committed only when a downstream flush completes.
//!
//! Records are batched into an in-memory sink; every 2 seconds the example declares a barrier
//! (snapshotting what was acknowledged so far), flushes the batch to a file, and completes the
//! barrier. The [`Checkpoint`] policy then commits exactly the barrier's snapshot, never records
//! acknowledged after it and not yet flushed.
//!
//! ```text
//! waterline serve &
//! cargo run -p waterline-consumer --example checkpoint -- 127.0.0.1:9092 events /tmp/events.out
//! ```

use std::io::Write;
use std::time::Duration;

use waterline_consumer::waterline_core::Checkpoint;
use waterline_consumer::{Consumer, ConsumerConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "events".into());
    let out = args.next().unwrap_or_else(|| "events.out".into());

    let consumer = Consumer::new(
        ConsumerConfig::builder(bootstrap, "checkpointed-sink")
            .topic(topic)
            .commit_policy(Checkpoint::default())
            // An ack means "in the batch", not "durable": only barrier snapshots are committed,
            // also on revoke and shutdown.
            .final_commit(false)
            .build()?,
    )?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)?;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut barrier = 0u64;
    let mut flush = tokio::time::interval(Duration::from_secs(2));
    // Everything acknowledged so far is in `batch`: snapshot it, flush, then let the policy
    // commit the snapshot.
    let mut checkpoint = |batch: &mut Vec<Vec<u8>>| -> std::io::Result<()> {
        barrier += 1;
        consumer.declare_barrier(barrier);
        for line in batch.drain(..) {
            file.write_all(&line)?;
            file.write_all(b"\n")?;
        }
        file.sync_data()?;
        consumer.complete_barrier(barrier);
        Ok(())
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = flush.tick() => checkpoint(&mut batch)?,
            d = consumer.recv() => {
                let d = d?;
                batch.push(d.payload().map(<[u8]>::to_vec).unwrap_or_default());
                // Acknowledged = handed to the sink; durable only after the next flush.
                d.ack();
            }
        }
    }
    // A last checkpoint; shutdown lets the commit policy commit it before leaving.
    checkpoint(&mut batch)?;
    consumer.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
