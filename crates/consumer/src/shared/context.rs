//! The rdkafka client context: rebalance callbacks go to [`Shared`], client errors are
//! classified (fatal ones stop the consumer).

use std::sync::Weak;
use std::sync::atomic::Ordering;

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext};
use tokio::runtime::Handle;
use waterline_core::TopicPartition;

use super::{Shared, now_ms};
use crate::error::fatal_error;

/// The Kafka client's context: routes rebalances to [`Shared`].
pub(crate) struct Ctx {
    /// Weak: partition states hold the client, and `Shared` holds them.
    pub shared: Weak<Shared>,
}

impl ClientContext for Ctx {
    /// Client-wide errors: fatal ones stop the consumer (reported by `recv`), every broker
    /// being down starts the clock of `brokers_down_timeout`, the rest is logged (the client
    /// retries them itself).
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let shared = self.shared.upgrade();
        if let Some(fatal) = fatal_error(&error, reason) {
            match shared {
                Some(s) => s.fail(fatal),
                None => tracing::error!(error = %fatal, "fatal Kafka client error"),
            }
            return;
        }
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
            && let Some(s) = &shared
        {
            let _ = s.brokers_down_since.compare_exchange(
                0,
                now_ms().max(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        tracing::warn!(%error, reason, "Kafka client error; retrying");
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        base: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        // This runs inside `recv`'s poll, usually on a runtime worker, and blocks while
        // partitions drain and commit (up to the drain timeout): let the runtime move its
        // other tasks to other workers meanwhile.
        let multi_thread = Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.handle_rebalance(base, err, tpl));
        } else {
            self.handle_rebalance(base, err, tpl);
        }
    }
}

impl Ctx {
    pub(super) fn handle_rebalance(
        &self,
        base: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::consumer::RebalanceProtocol;
        use rdkafka::types::RDKafkaRespErr as E;
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        // Gives up `tpl` in the client (all of the assignment under the eager protocol).
        let give_up = |tpl: &TopicPartitionList| {
            let r = if cooperative {
                base.incremental_unassign(tpl)
            } else {
                base.unassign()
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "giving up partitions failed");
            }
        };
        // Gone only while the client itself is being torn down: nothing left to hand out.
        let Some(shared) = self.shared.upgrade() else {
            if err != E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
                give_up(tpl);
            }
            return;
        };
        match err {
            E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Cooperative: `tpl` holds only the partitions added.
                shared.assign(base, tpl);
                let r = if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                };
                if let Err(e) = r {
                    shared.fail(e.into());
                }
            }
            E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Cooperative: only the partitions that move; eager: everything.
                let tps: Vec<TopicPartition> = if cooperative {
                    tpl.elements()
                        .iter()
                        .map(|e| TopicPartition::new(e.topic(), e.partition()))
                        .collect()
                } else {
                    shared.parts.read().keys().cloned().collect()
                };
                shared.revoke(base, &tps, base.assignment_lost());
                give_up(tpl);
            }
            _ => {
                tracing::error!(?err, "rebalance error; giving up the assignment");
                let tps: Vec<TopicPartition> = shared.parts.read().keys().cloned().collect();
                shared.revoke(base, &tps, base.assignment_lost());
                match base.assignment() {
                    Ok(all) if cooperative => give_up(&all),
                    _ => give_up(tpl),
                }
            }
        }
    }
}
