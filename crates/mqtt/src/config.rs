//! Settings of the MQTT front end.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// One mapping rule: MQTT publishes matching `filter` are stored in the storage topic `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRule {
    /// MQTT topic filter.
    pub filter: String,
    /// Storage (Kafka) topic.
    pub topic: String,
}

impl FromStr for MapRule {
    type Err = String;

    /// Parses `FILTER=TOPIC`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (filter, topic) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("expected FILTER=TOPIC, got {s:?}"))?;
        let rule = MapRule {
            filter: filter.to_owned(),
            topic: topic.to_owned(),
        };
        rule.check()?;
        Ok(rule)
    }
}

impl MapRule {
    /// Checks the filter and the topic name.
    pub fn check(&self) -> Result<(), String> {
        if mqtt_proto::TopicFilter::try_from(self.filter.as_str()).is_err()
            || self.filter.starts_with("$share/")
        {
            return Err(format!(
                "{:?} is not a valid MQTT topic filter",
                self.filter
            ));
        }
        strata_storage::ShardId::new(&self.topic, 0)
            .map_err(|e| format!("{:?} is not a valid topic name: {e}", self.topic))?;
        if self.topic.starts_with("__") {
            return Err(format!(
                "topic names starting with __ are internal: {:?}",
                self.topic
            ));
        }
        Ok(())
    }
}

impl fmt::Display for MapRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.filter, self.topic)
    }
}

/// Settings of the MQTT front end.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Receive Maximum the server announces: unacknowledged QoS 2 publishes a client may have
    /// outstanding before it is disconnected with 0x93.
    pub receive_maximum: u16,
    /// Largest packet accepted (and announced in v5 CONNACK).
    pub max_packet_size: u32,
    /// Cap on the client's keep alive, in seconds (0: none). A v5 client asking for more (or
    /// for none) is told Server Keep Alive.
    pub max_keep_alive: u16,
    /// Topic Alias Maximum the server announces for inbound aliases.
    pub topic_alias_max: u16,
    /// MQTT filters mapped to storage topics.
    pub map: Vec<MapRule>,
    /// How long a new connection has to send CONNECT.
    pub connect_timeout: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            receive_maximum: crate::DEFAULT_RECEIVE_MAXIMUM,
            max_packet_size: crate::DEFAULT_MAX_PACKET_SIZE,
            max_keep_alive: crate::DEFAULT_MAX_KEEP_ALIVE,
            topic_alias_max: crate::DEFAULT_TOPIC_ALIAS_MAX,
            map: Vec::new(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_rules_parse_and_check() {
        let r: MapRule = "sensors/#=sensors".parse().unwrap();
        assert_eq!(r.filter, "sensors/#");
        assert_eq!(r.topic, "sensors");
        assert!("sensors/#".parse::<MapRule>().is_err());
        assert!("a/#/b=t".parse::<MapRule>().is_err());
        assert!("a/#=bad topic".parse::<MapRule>().is_err());
        assert!("a/#=__x".parse::<MapRule>().is_err());
    }
}
