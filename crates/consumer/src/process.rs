//! The processing-function API: [`Consumer::process`] and [`Consumer::process_batch`] take
//! records, run the application's function on them concurrently, and ack on `Ok` or apply the
//! failure policy on `Err` (or a panic), so the common case needs no manual ack.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::consumer::Consumer;
use crate::delivery::{Delivery, Record, Ticket};
use crate::error::ConsumerError;

/// How records are lent to the processing function: one by one, or as a batch.
trait Shape: 'static {
    /// What the function receives.
    type Arg: Send + 'static;
    /// What the runner keeps to get the records back afterwards.
    type Keep: Send + 'static;
    /// `first` and `rest` are in offset order; `rest` is empty when batches are of one.
    fn share(first: Record, rest: Vec<Record>) -> (Self::Arg, Self::Keep);
    /// The records, in the order given to `share`. A function that kept a reference past its
    /// end gets it copied out instead.
    fn take_back(keep: Self::Keep) -> Vec<Record>;
}

struct One;

impl Shape for One {
    type Arg = Arc<Record>;
    type Keep = Arc<Record>;
    fn share(first: Record, _rest: Vec<Record>) -> (Arc<Record>, Arc<Record>) {
        let r = Arc::new(first);
        (Arc::clone(&r), r)
    }
    fn take_back(keep: Arc<Record>) -> Vec<Record> {
        vec![Arc::try_unwrap(keep).unwrap_or_else(|r| (*r).clone())]
    }
}

struct Many;

impl Shape for Many {
    type Arg = Arc<Vec<Record>>;
    type Keep = Arc<Vec<Record>>;
    fn share(first: Record, mut rest: Vec<Record>) -> (Arc<Vec<Record>>, Arc<Vec<Record>>) {
        rest.insert(0, first);
        let r = Arc::new(rest);
        (Arc::clone(&r), r)
    }
    fn take_back(keep: Arc<Vec<Record>>) -> Vec<Record> {
        Arc::try_unwrap(keep).unwrap_or_else(|r| (*r).clone())
    }
}

impl Consumer {
    /// Runs `f` on every record, up to `concurrency` at once (each in its own task), and acks
    /// the record when `f` returns `Ok`; an `Err` (or a panic) is a nack, and the
    /// [`FailurePolicy`](crate::FailurePolicy) decides what follows. The
    /// [`Ordering`](crate::Ordering) mode decides which records may run at the same time.
    ///
    /// Returns `Ok(())` once the consumer is [shut down](Self::shutdown) and every call in
    /// progress has finished, or the first fatal error (after the calls in progress finished).
    /// It holds the receiving turn meanwhile (other [`recv`](Self::recv) calls wait). Run it
    /// beside `shutdown` (e.g. in a task of its own), not in a `select!` that drops it: the
    /// records in progress would be dropped, which counts as a nack.
    ///
    /// Not with [`OffsetStorage::Transactional`](crate::OffsetStorage::Transactional) or
    /// [`OffsetStorage::KafkaTransactional`](crate::OffsetStorage::KafkaTransactional), whose
    /// records finish through their transactions (use `recv`): fails with
    /// [`ConsumerError::Config`].
    ///
    /// ```no_run
    /// # async fn run(consumer: waterline_consumer::Consumer) -> Result<(), waterline_consumer::ConsumerError> {
    /// consumer
    ///     .process(1000, |record| async move {
    ///         // ... use record.key(), record.payload() ...
    ///         Ok::<(), String>(())
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn process<F, Fut, E>(&self, concurrency: usize, f: F) -> Result<(), ConsumerError>
    where
        F: Fn(Arc<Record>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.run::<One, F, Fut, E>(concurrency, 1, f).await
    }

    /// [`process`](Self::process) on batches of up to `max_batch` records of one partition
    /// (in [`Ordering::Key`](crate::Ordering::Key): of one key), in offset order; `Ok` acks
    /// the whole batch, `Err` nacks every record of it. `concurrency` counts batches.
    ///
    /// A batch is what is ready when it is formed: in [`Ordering::Unordered`](crate::Ordering)
    /// the records of the first one's partition that are fetched already, in the ordered
    /// modes the first record and those waiting behind its key (or partition).
    pub async fn process_batch<F, Fut, E>(
        &self,
        concurrency: usize,
        max_batch: usize,
        f: F,
    ) -> Result<(), ConsumerError>
    where
        F: Fn(Arc<Vec<Record>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.run::<Many, F, Fut, E>(concurrency, max_batch, f).await
    }

    async fn run<S, F, Fut, E>(
        &self,
        concurrency: usize,
        max_batch: usize,
        f: F,
    ) -> Result<(), ConsumerError>
    where
        S: Shape,
        F: Fn(S::Arg) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        if concurrency == 0 || max_batch == 0 {
            return Err(ConsumerError::Config(
                "process needs concurrency >= 1 and batches of >= 1 record".into(),
            ));
        }
        if self.shared().is_transactional() || self.shared().is_kafka_txn() {
            return Err(ConsumerError::Config(
                "process acks records itself; transactional offset storage finishes records \
                 through transactions (use recv)"
                    .into(),
            ));
        }
        let f = Arc::new(f);
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut turn = self.deliveries().await;
        // A delivery taken while forming a batch that belongs to the next one.
        let mut next: Option<Result<Delivery, ConsumerError>> = None;
        let end = loop {
            while tasks.try_join_next().is_some() {}
            // A permit first: records are not taken before they can start.
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break ConsumerError::ShutDown;
            };
            let first = match next.take() {
                Some(d) => d,
                None => turn.next().await,
            };
            let first = match first {
                Ok(d) => d,
                Err(e) => break e,
            };
            let mut batch = vec![first];
            if max_batch > 1 {
                if batch[0].slot().is_some() {
                    let more = self.followers(&batch[0], max_batch - 1);
                    batch.extend(more);
                } else {
                    // Unordered: what is ready of the same partition.
                    while batch.len() < max_batch {
                        match turn.next().now_or_never() {
                            Some(Ok(d)) if d.tp() == batch[0].tp() && d.slot().is_none() => {
                                batch.push(d)
                            }
                            Some(other) => {
                                next = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            let (mut records, tickets): (Vec<Record>, Vec<Ticket>) =
                batch.into_iter().map(Delivery::lend).unzip();
            let rest = records.split_off(1);
            let Some(first) = records.pop() else {
                continue;
            };
            let (arg, keep) = S::share(first, rest);
            let f = Arc::clone(&f);
            tasks.spawn(async move {
                let outcome = AssertUnwindSafe(async move { f(arg).await })
                    .catch_unwind()
                    .await;
                let records = S::take_back(keep);
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("the processing function panicked".to_string()),
                };
                // In offset order: in the ordered modes each ack gives its key slot back.
                for (record, ticket) in records.into_iter().zip(tickets) {
                    let d = Delivery::rejoin(record, ticket);
                    match &failure {
                        None => {
                            d.ack();
                        }
                        Some(reason) => d.nack(reason.clone()),
                    }
                }
                drop(permit);
            });
        };
        // The calls in progress finish (and ack or nack) before this returns.
        drop(turn);
        while tasks.join_next().await.is_some() {}
        match end {
            ConsumerError::ShutDown => Ok(()),
            e => Err(e),
        }
    }
}
