use std::sync::Arc;

use sgde_llm::{EndpointRegistry, MeteredClient, ModelClient, ModelError, StaticSecrets, UsageMeter};
use sgde_testkit::{FakeOpenAi, Rule};

use crate::{ask, config};

#[tokio::test]
async fn roles_route_to_their_endpoints_and_usage_rolls_up() {
    let small = FakeOpenAi::builder().rule(Rule::any().reply("from small")).start().await.unwrap();
    let big = FakeOpenAi::builder().rule(Rule::any().reply("from big")).start().await.unwrap();
    let mut small_config = config(&small);
    small_config.name = "smollm2".into();
    let mut big_config = config(&big);
    big_config.name = "gpt".into();
    big_config.prices.input_per_million_usd = 5.0;
    let registry =
        EndpointRegistry::from_configs([small_config, big_config], &StaticSecrets::new(), None).unwrap();
    registry.alias("student", "smollm2").unwrap();
    registry.alias("teacher", "gpt").unwrap();

    let job = UsageMeter::new();
    let run = job.child();
    let client = MeteredClient::new(Arc::new(registry), Arc::clone(&run));

    assert_eq!(client.complete(ask("hi")).await.unwrap().text, "from small");
    let mut to_teacher = ask("hi");
    to_teacher.endpoint = "teacher".into();
    assert_eq!(client.complete(to_teacher).await.unwrap().text, "from big");
    let mut unknown = ask("hi");
    unknown.endpoint = "oracle".into();
    assert_eq!(client.complete(unknown).await.unwrap_err(), ModelError::UnknownEndpoint("oracle".into()));
    assert_eq!((small.request_count(), big.request_count()), (1, 1));

    let report = job.report();
    assert_eq!((report.calls, report.failed_calls), (2, 1));
    assert!(report.by_endpoint["teacher"].cost_usd > 0.0);
    assert_eq!(report.by_endpoint["student"].cost_usd, 0.0);
    assert_eq!(run.report(), report);
}
