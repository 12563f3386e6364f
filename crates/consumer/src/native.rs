//! Zero-copy access to fetched messages: records are read in place in the Kafka client's
//! fetch buffers instead of being copied out, and one message stream is kept for the life of
//! the consumer instead of one being set up per `recv`.
//!
//! rdkafka ties a message (and a stream) to a borrow of the client that produced it. That
//! borrow is only a lifetime marker: the message's memory is owned by its own reference-counted
//! event, which is valid for as long as the client is. This module drops the marker and
//! replaces it with the rule below, which the rest of the crate keeps.
//!
//! Invariant (what makes the `unsafe` here sound): a [`Fetched`] message is never dropped
//! after its client. A [`ClientStream`] owns an `Arc` of the client, dropped after the
//! stream. A `Fetched` lives either in a local of `recv` (which borrows the stream) or in a
//! [`Record`](crate::Record) whose partition state holds an `Arc` of the very client it came
//! from ([`Fetched::client_is`] checks which), and a `Record` drops its message before that
//! state.
#![allow(unsafe_code)]

use std::sync::Arc;

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{MessageStream, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers};

use crate::shared::Ctx;

/// The Kafka client every consumer part shares.
pub(crate) type Client = StreamConsumer<Ctx>;

/// The client's message stream, kept for the consumer's life (a fresh stream per receive would
/// register and unregister a waker slot, two lock round trips, per record).
pub(crate) struct ClientStream {
    // Declared first: dropped before the client it borrows from.
    stream: MessageStream<'static, Ctx>,
    client: Arc<Client>,
}

impl ClientStream {
    pub fn new(client: Arc<Client>) -> Self {
        let stream = client.stream();
        // SAFETY: the stream borrows the client's consumer and waker slab, both behind the
        // client's own `Arc`s and so never moved; `self.client` keeps them alive and is dropped
        // after `self.stream` (field order).
        let stream = unsafe {
            std::mem::transmute::<MessageStream<'_, Ctx>, MessageStream<'static, Ctx>>(stream)
        };
        Self { stream, client }
    }

    /// The next message or client error; cancel-safe (nothing is lost if the future is dropped).
    pub async fn next(&mut self) -> KafkaResult<Fetched> {
        let next = self.stream.next().await;
        let client = Arc::as_ptr(&self.client);
        match next {
            Some(m) => m.map(|msg| Fetched { msg, client }),
            // rdkafka's streams never end; should one, report it as a client error.
            None => Err(rdkafka::error::KafkaError::Canceled),
        }
    }
}

/// A fetched message, read in place (see the module's invariant).
pub(crate) struct Fetched {
    msg: BorrowedMessage<'static>,
    /// The client it came from (compared, never dereferenced).
    client: *const Client,
}

// SAFETY: `BorrowedMessage` is Send and Sync (rdkafka declares it so: librdkafka messages are
// immutable once delivered and may be read and destroyed from any thread); `client` is only
// compared.
unsafe impl Send for Fetched {}
unsafe impl Sync for Fetched {}

impl Fetched {
    /// Whether `client` is the client this message came from (the one that must outlive it).
    pub fn client_is(&self, client: &Arc<Client>) -> bool {
        std::ptr::eq(self.client, Arc::as_ptr(client))
    }

    pub fn topic_ptr(&self) -> usize {
        self.msg.topic_ptr() as usize
    }

    pub fn topic(&self) -> &str {
        self.msg.topic()
    }

    pub fn partition(&self) -> i32 {
        self.msg.partition()
    }

    pub fn offset(&self) -> i64 {
        self.msg.offset()
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.msg.key()
    }

    pub fn payload(&self) -> Option<&[u8]> {
        self.msg.payload()
    }

    pub fn timestamp_ms(&self) -> Option<i64> {
        self.msg.timestamp().to_millis()
    }

    pub fn timestamp(&self) -> rdkafka::Timestamp {
        self.msg.timestamp()
    }

    /// Key plus payload length, without touching either.
    pub fn size(&self) -> usize {
        self.msg.key_len() + self.msg.payload_len()
    }

    /// Headers, parsed by the client on first access.
    pub fn headers(&self) -> Option<&BorrowedHeaders> {
        self.msg.headers()
    }
}

/// Header `i` of `h`, as a key and an optional value.
pub(crate) fn header_at(h: &BorrowedHeaders, i: usize) -> Option<(&str, Option<&[u8]>)> {
    h.try_get(i).map(|h| (h.key, h.value))
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

/// A record is an rdkafka message, so code written against rdkafka's `Message` takes it.
impl Message for crate::Record {
    type Headers = BorrowedHeaders;

    fn key(&self) -> Option<&[u8]> {
        crate::Record::key(self)
    }

    fn payload(&self) -> Option<&[u8]> {
        crate::Record::payload(self)
    }

    /// The payload, mutable. A fetched record is copied out of the client's buffer first, so
    /// this never writes into librdkafka's memory (and is in fact safe).
    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        self.payload_owned_mut()
    }

    fn topic(&self) -> &str {
        crate::Record::topic(self)
    }

    fn partition(&self) -> i32 {
        crate::Record::partition(self)
    }

    fn offset(&self) -> i64 {
        crate::Record::offset(self)
    }

    fn timestamp(&self) -> rdkafka::Timestamp {
        self.kafka_timestamp()
    }

    fn headers(&self) -> Option<&BorrowedHeaders> {
        self.kafka_headers()
    }
}
