//! The supported APIs and versions, and the dispatch of one request.

mod admin;
mod configs;
mod fetch;
mod groups;
mod metadata;
mod offsets;
mod produce;

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::Kafka;
use crate::conn::ConnError;
use crate::errors::code;
use crate::write::Frame;

/// One API served: its key, its name (the `api` label of the request metrics) and the
/// versions advertised.
#[derive(Debug, Clone, Copy)]
pub struct ServedApi {
    pub key: ApiKey,
    pub name: &'static str,
    pub min: i16,
    pub max: i16,
}

macro_rules! served {
    ($($key:ident $min:literal ..= $max:literal),* $(,)?) => {
        &[$(ServedApi { key: ApiKey::$key, name: stringify!($key), min: $min, max: $max }),*]
    };
}

/// Every API served, with the versions advertised.
///
/// Produce is advertised from v0, as Kafka 4 does, so that older clients (librdkafka) turn on
/// their newer features; versions 0 to 2, which carry the removed v0/v1 message formats, are
/// refused when they actually arrive.
pub const SUPPORTED_APIS: &[ServedApi] = served![
    Produce 0..=11,
    Fetch 4..=16,
    ListOffsets 1..=6,
    Metadata 0..=12,
    OffsetCommit 2..=8,
    OffsetFetch 1..=8,
    FindCoordinator 0..=4,
    JoinGroup 0..=9,
    Heartbeat 0..=4,
    LeaveGroup 0..=5,
    SyncGroup 0..=5,
    DescribeGroups 0..=5,
    ListGroups 0..=4,
    ApiVersions 0..=3,
    CreateTopics 2..=7,
    DeleteTopics 1..=6,
    DeleteRecords 0..=2,
    InitProducerId 0..=4,
    DescribeConfigs 1..=4,
    AlterConfigs 0..=2,
    CreatePartitions 0..=3,
    DeleteGroups 0..=2,
    IncrementalAlterConfigs 0..=1,
];

/// Oldest Produce version actually served.
const PRODUCE_MIN_SERVED: i16 = 3;

/// The entry of `api` in [`SUPPORTED_APIS`], if it is served.
pub fn served_api(api: ApiKey) -> Option<&'static ServedApi> {
    SUPPORTED_APIS.iter().find(|a| a.key == api)
}

/// Metric label of a request's API key: its name, `other` for an API not served, `unknown`
/// for a key Kafka does not define.
pub(crate) fn api_label(raw: i16) -> &'static str {
    match ApiKey::try_from(raw) {
        Ok(api) => served_api(api).map_or("other", |a| a.name),
        Err(_) => "unknown",
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A response frame: size, header, body.
fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Frame, ConnError> {
    let fail = |e: anyhow::Error| ConnError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .map_err(fail)?;
    body.encode(&mut buf, version).map_err(fail)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(Frame::bytes(buf.freeze()))
}

fn api_versions(version: i16, error_code: i16) -> ResponseKind {
    let keys = SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect();
    let _ = version;
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(error_code)
            .with_api_keys(keys),
    )
}

/// A request that decoded.
#[derive(Debug)]
pub enum Decoded {
    /// An ApiVersions request of a version newer than served: answered with error 35.
    NewerApiVersions {
        /// Its correlation id.
        correlation_id: i32,
    },
    /// Any other request.
    Request {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// The header.
        header: RequestHeader,
        /// The body (boxed: request bodies are large).
        request: Box<RequestKind>,
    },
}

/// Decodes one request frame (without its size prefix), checking the API key and version
/// against what is served before decoding the body. This is all the parsing of client bytes
/// the front end does itself; the fuzz target `kafka_request` drives it.
pub fn decode_request(frame: Bytes) -> Result<Decoded, ConnError> {
    if frame.len() < 8 {
        return Err(ConnError::Frame(crate::frame::FrameError::BadSize(
            frame.len() as i32,
        )));
    }
    let mut head = &frame[..];
    let raw_api = head.get_i16();
    let version = head.get_i16();
    let correlation_id = head.get_i32();
    let api = ApiKey::try_from(raw_api).map_err(|_| ConnError::UnknownApi(raw_api))?;
    let Some(&ServedApi { min, max, .. }) = served_api(api) else {
        return Err(ConnError::Unsupported { api, version });
    };
    if api == ApiKey::ApiVersions && version > max {
        return Ok(Decoded::NewerApiVersions { correlation_id });
    }
    let served_min = if api == ApiKey::Produce {
        PRODUCE_MIN_SERVED
    } else {
        min
    };
    if version < served_min || version > max {
        return Err(ConnError::Unsupported { api, version });
    }
    let malformed = |e: anyhow::Error| ConnError::Malformed {
        api,
        version,
        reason: e.to_string(),
    };
    let mut buf = frame;
    let header =
        RequestHeader::decode(&mut buf, api.request_header_version(version)).map_err(malformed)?;
    let request = RequestKind::decode(api, &mut buf, version).map_err(malformed)?;
    Ok(Decoded::Request {
        api,
        version,
        header,
        request: Box::new(request),
    })
}

/// Handles one request frame; an empty frame means no response (acks=0 produce).
pub(crate) async fn handle(
    kafka: &Kafka,
    frame: Bytes,
    peer: SocketAddr,
) -> Result<Frame, ConnError> {
    let (api, version, header, request) = match decode_request(frame)? {
        Decoded::NewerApiVersions { correlation_id } => {
            // As Kafka does: error 35 in a v0 body listing what is supported, so that the
            // client can retry with a version both sides know.
            let body = api_versions(0, code::UNSUPPORTED_VERSION);
            return encode_response(ApiKey::ApiVersions, 0, correlation_id, &body);
        }
        Decoded::Request {
            api,
            version,
            header,
            request,
        } => (api, version, header, request),
    };
    let correlation_id = header.correlation_id;
    let client = Client {
        id: header
            .client_id
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        host: peer.ip().to_string(),
    };
    let body = match *request {
        RequestKind::ApiVersions(_) => api_versions(version, code::NONE),
        RequestKind::Produce(r) => match produce::handle(kafka, version, r).await {
            Some(resp) => ResponseKind::Produce(resp),
            None => return Ok(Frame::default()),
        },
        RequestKind::Fetch(r) => return Ok(fetch::handle(kafka, version, correlation_id, r).await),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(kafka, version, r).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(offsets::list_offsets(kafka, version, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(offsets::delete_records(kafka, r).await)
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offsets::commit(kafka, r).await),
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offsets::fetch(kafka, version, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(kafka, version, r))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(kafka, version, &client, r).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(kafka, version, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(kafka, r).await),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave(kafka, version, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(kafka, version, r)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe(kafka, version, r))
        }
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete(kafka, r).await),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(produce::init_producer_id(kafka, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(kafka, version, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(kafka, version, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(kafka, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(kafka, version, r))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(kafka, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(kafka, r).await)
        }
        _ => return Err(ConnError::Unsupported { api, version }),
    };
    encode_response(api, version, correlation_id, &body)
}

/// Who sent a request.
#[derive(Debug)]
pub(crate) struct Client {
    pub id: String,
    pub host: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_is_listed_once_with_a_version_range() {
        for (i, a) in SUPPORTED_APIS.iter().enumerate() {
            assert!(a.min <= a.max, "{}", a.name);
            assert!(
                SUPPORTED_APIS[..i].iter().all(|b| b.key != a.key),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn metric_labels() {
        assert_eq!(api_label(ApiKey::Produce as i16), "Produce");
        assert_eq!(api_label(ApiKey::AddPartitionsToTxn as i16), "other");
        assert_eq!(api_label(-7), "unknown");
    }
}
