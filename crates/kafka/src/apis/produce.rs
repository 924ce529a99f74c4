//! Produce and InitProducerId.

use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use super::str_bytes;
use crate::Kafka;
use crate::errors::{broker_code, code};

/// Appends each partition's batches; `None` for acks=0, which gets no response.
pub(super) async fn handle(
    kafka: &Kafka,
    version: i16,
    req: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let refuse = if !matches!(acks, -1..=1) {
        Some((
            code::INVALID_REQUIRED_ACKS,
            format!("acks={acks} is not 0, 1 or -1"),
        ))
    } else if req.transactional_id.is_some() {
        Some((
            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "transactions are not supported".to_owned(),
        ))
    } else {
        None
    };
    let broker = &kafka.broker;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let topic = broker.topic(t.name.0.as_str()).filter(|t| !t.is_internal());
        let parts = t.partition_data.into_iter().map(|p| {
            let topic = topic.clone();
            let refuse = refuse.clone();
            async move {
                let mut out = PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1);
                // Error messages exist from v8, the log start offset from v5.
                let message = |m: String| (version >= 8).then(|| str_bytes(m));
                if let Some((c, msg)) = refuse {
                    return out.with_error_code(c).with_error_message(message(msg));
                }
                let Some((topic, partition)) =
                    topic.and_then(|t| t.partition(p.index).map(|p| (t, p)))
                else {
                    return out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                };
                let Some(records) = p.records else {
                    return out
                        .with_error_code(code::INVALID_RECORD)
                        .with_error_message(message("no records".into()));
                };
                match broker.produce(&topic, &partition, records).await {
                    Ok(o) => {
                        out.base_offset = o.base_offset as i64;
                        if version >= 5 {
                            out.log_start_offset = o.log_start as i64;
                        }
                        out
                    }
                    Err(e) => {
                        if broker_code(&e) == code::KAFKA_STORAGE_ERROR {
                            // The engine or its backing service failed: the operator's concern.
                            tracing::warn!(topic = %topic.name, partition = p.index, error = %e, "produce failed");
                        } else {
                            tracing::debug!(topic = %topic.name, partition = p.index, error = %e, "produce failed");
                        }
                        out.error_code = broker_code(&e);
                        out.error_message = message(e.to_string());
                        out
                    }
                }
            }
        });
        let partitions = join_all(parts).await;
        topics.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(partitions),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

/// A producer id for an idempotent producer (transactions are not supported).
pub(super) async fn init_producer_id(
    kafka: &Kafka,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return resp.with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    // Without a transactional id every request gets a fresh id: bumping the epoch of an id the
    // client names (KIP-360) would let any client fence any other producer.
    let _ = (req.producer_id, req.producer_epoch);
    match kafka.broker.new_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(broker_code(&e)),
    }
}
