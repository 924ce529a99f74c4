//! `strata topic create|list|describe|delete|alter`, talking Kafka to a running server.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::AdminClient;

/// `strata topic ...`
#[derive(Debug, Args)]
pub struct TopicArgs {
    /// A server's Kafka listener.
    #[arg(long, default_value = "localhost:9092", global = true)]
    pub bootstrap_server: String,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Storage engine (memory, file, ...): storage.engine.
        #[arg(long)]
        engine: Option<String>,
        /// Storage model (dedicated or shared): storage.model.
        #[arg(long)]
        model: Option<String>,
        /// Any topic config, as KEY=VALUE (repeatable), e.g. retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and every effective config with its source.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Change topic configs.
    Alter {
        name: String,
        /// Set KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Return KEY to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn pair(kv: &str) -> Result<(String, String)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("{kv:?} is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<()> {
    if code != 0 {
        bail!(
            "{what} failed with Kafka error {code}{}",
            message
                .map(|m| format!(": {}", m.as_str()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs one topic command; output goes to stdout.
pub async fn run(args: TopicArgs) -> Result<()> {
    let mut c = AdminClient::connect(&args.bootstrap_server).await?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            engine,
            model,
            configs,
        } => create(&mut c, &name, partitions, engine, model, &configs).await,
        TopicCommand::List => list(&mut c).await,
        TopicCommand::Describe { name } => describe(&mut c, &name).await,
        TopicCommand::Delete { name } => delete(&mut c, &name).await,
        TopicCommand::Alter { name, set, delete } => alter(&mut c, &name, &set, &delete).await,
    }
}

async fn create(
    c: &mut AdminClient,
    name: &str,
    partitions: i32,
    engine: Option<String>,
    model: Option<String>,
    configs: &[String],
) -> Result<()> {
    let mut all: Vec<(String, String)> = configs.iter().map(|c| pair(c)).collect::<Result<_>>()?;
    if let Some(e) = engine {
        all.push(("storage.engine".into(), e));
    }
    if let Some(m) = model {
        all.push(("storage.model".into(), m));
    }
    let topic = CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(
            all.iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        );
    let resp = c
        .call(
            &CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(30_000),
            5,
        )
        .await?;
    for t in &resp.topics {
        check(
            t.error_code,
            t.error_message.as_ref(),
            &format!("creating topic {name}"),
        )?;
        println!(
            "created topic {} with {} partitions",
            t.name.0.as_str(),
            t.num_partitions
        );
    }
    Ok(())
}

async fn list(c: &mut AdminClient) -> Result<()> {
    let resp = c
        .call(&MetadataRequest::default().with_topics(None), 9)
        .await?;
    let mut names: Vec<_> = resp
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str().to_owned()))
        .collect();
    names.sort();
    for n in names {
        println!("{n}");
    }
    Ok(())
}

async fn describe(c: &mut AdminClient, name: &str) -> Result<()> {
    let resp = c
        .call(
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(s(name)))),
            ])),
            9,
        )
        .await?;
    for t in &resp.topics {
        check(t.error_code, None, &format!("describing topic {name}"))?;
        println!("topic {name}: {} partitions", t.partitions.len());
        for p in &t.partitions {
            println!("  partition {} leader {}", p.partition_index, p.leader_id.0);
        }
    }
    let resp = c
        .call(
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(name))
                    .with_configuration_keys(None),
            ]),
            3,
        )
        .await?;
    for r in &resp.results {
        check(r.error_code, r.error_message.as_ref(), "describing configs")?;
        println!("configs:");
        for e in &r.configs {
            let source = match e.config_source {
                1 => "topic",
                4 => "broker",
                5 => "default",
                _ => "other",
            };
            println!(
                "  {}={} ({source})",
                e.name.as_str(),
                e.value.as_ref().map_or("", |v| v.as_str())
            );
        }
    }
    Ok(())
}

async fn delete(c: &mut AdminClient, name: &str) -> Result<()> {
    let resp = c
        .call(
            &DeleteTopicsRequest::default()
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(TopicName(s(name)))),
                ])
                .with_timeout_ms(30_000),
            6,
        )
        .await?;
    for r in &resp.responses {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("deleting topic {name}"),
        )?;
    }
    println!("deleted topic {name}");
    Ok(())
}

async fn alter(c: &mut AdminClient, name: &str, set: &[String], delete: &[String]) -> Result<()> {
    let mut configs = Vec::new();
    for kv in set {
        let (k, v) = pair(kv)?;
        configs.push(
            AlterableConfig::default()
                .with_name(s(&k))
                .with_config_operation(0)
                .with_value(Some(s(&v))),
        );
    }
    for k in delete {
        configs.push(
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(1),
        );
    }
    if configs.is_empty() {
        bail!("nothing to alter: give --config KEY=VALUE or --delete-config KEY");
    }
    let resp = c
        .call(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(name))
                    .with_configs(configs),
            ]),
            1,
        )
        .await?;
    for r in &resp.responses {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("altering topic {name}"),
        )?;
    }
    println!("altered topic {name}");
    Ok(())
}
