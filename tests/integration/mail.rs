//! Security mail on the real services: the SES v2 sender against moto (which
//! records what it accepted), the SQS queue a request hands its mail to, and
//! a queued message carried to SES by the built `notify` binary on the Lambda
//! Runtime API, as the queue's event source mapping would: the link arrives
//! intact, and the function answers which messages to retry.

use crate::lambda_runtime::{spawn_function, RuntimeApi};
use portcullis_shared::mail::queue::Sqs;
use portcullis_shared::mail::ses::Ses;
use portcullis_shared::mail::templates::{link_in, render, Message};
use portcullis_shared::mail::{MailConfig, MailError, MailQueue, MailSender};
use serde_json::{json, Value};
use std::time::Duration;

/// What moto's SES accepted so far (scripts/moto_server.py).
async fn sent() -> Vec<Value> {
    portcullis_shared::crypto::install_tls_provider();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: run scripts/test.sh");
    let text = reqwest::get(format!("{endpoint}/portcullis/ses/sent"))
        .await
        .expect("moto")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&text).expect("json")
}

async fn sender_identity() -> (aws_sdk_sesv2::Client, MailConfig) {
    let client = aws_sdk_sesv2::Client::new(portcullis_shared::aws::aws_config().await);
    let from = format!("no-reply-{}@example.com", crate::helpers::hex_token());
    client.create_email_identity().email_identity(&from).send().await.expect("CreateEmailIdentity");
    let config = MailConfig { product: "Acme".into(), from, link_base: "https://acme.test/account".into() };
    (client, config)
}

#[tokio::test]
async fn ses_sends_both_bodies_and_refuses_an_unverified_sender_for_good() {
    let (client, config) = sender_identity().await;
    let ses = Ses::new(client);
    let to = format!("ada-{}@example.com", crate::helpers::hex_token());
    let mail = render(&config, &to, &Message::VerifyEmail { token: "t0k3n-🦀", hours: 24 });
    ses.send(&mail).await.expect("sent");
    let mine: Vec<Value> =
        sent().await.into_iter().filter(|m| m["destinations"]["ToAddresses"][0] == to.as_str()).collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["subject"], "Confirm your email address for Acme");
    assert!(
        mine[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("https://acme.test/account/verify-email#token=t0k3n-🦀")),
        "{mine:?}"
    );
    let stranger = MailConfig { from: "nobody@unverified.test".into(), ..config };
    let refused = ses.send(&render(&stranger, &to, &Message::RegistrationAttempt)).await;
    assert!(matches!(refused, Err(MailError::Refused(_))), "{refused:?}");
}

#[tokio::test]
async fn a_queued_message_is_the_mail_as_json_on_the_queue() {
    let (_, config) = sender_identity().await;
    let sqs = aws_sdk_sqs::Client::new(portcullis_shared::aws::aws_config().await);
    let name = format!("pc-mail-{}", crate::helpers::hex_token());
    let url = sqs.create_queue().queue_name(&name).send().await.expect("CreateQueue").queue_url.expect("url");
    let mail = render(&config, "bob@example.com", &Message::PasswordReset { token: "r3set", minutes: 30 });
    Sqs::new(sqs.clone(), &url).enqueue(mail.clone()).await.expect("queued");
    let received =
        sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.expect("receive");
    let bodies: Vec<&str> = received.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1);
    let back: portcullis_shared::mail::Mail = serde_json::from_str(bodies[0]).expect("a mail");
    assert_eq!(back, mail);
    assert_eq!(link_in(&back), Some("https://acme.test/account/reset-password#token=r3set"));
}

#[tokio::test]
async fn a_queued_message_reaches_ses_through_the_notify_function() {
    let (_, config) = sender_identity().await;
    let sqs = aws_sdk_sqs::Client::new(portcullis_shared::aws::aws_config().await);
    let name = format!("pc-mail-{}", crate::helpers::hex_token());
    let url = sqs.create_queue().queue_name(&name).send().await.expect("CreateQueue").queue_url.expect("url");
    let to = format!("bob-{}@example.com", crate::helpers::hex_token());
    let mail = render(&config, &to, &Message::PasswordReset { token: "r3set", minutes: 30 });
    let link = link_in(&mail).expect("a link").to_owned();
    Sqs::new(sqs.clone(), &url).enqueue(mail).await.expect("queued");

    // The event source mapping's batch: the message as SQS delivers it, and one that is no mail.
    let received =
        sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.expect("receive");
    let message = received.messages().first().expect("the queued message").clone();
    let record = |id: &str, body: &str| json!({"messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs"});
    let event = json!({"Records": [
        record(message.message_id().expect("id"), message.body().expect("body")),
        record("poison", "not mail"),
    ]});
    let (api, addr) = RuntimeApi::start(vec![("batch".into(), event)]).await;
    let mut child = spawn_function("portcullis-notify", &addr, &[]);
    let answers = api.answers(1, Duration::from_secs(60)).await;
    child.kill().await.ok();
    assert_eq!(answers["batch"], json!({"batchItemFailures": [{"itemIdentifier": "poison"}]}), "{answers:?}");
    let mine: Vec<Value> =
        sent().await.into_iter().filter(|m| m["destinations"]["ToAddresses"][0] == to.as_str()).collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(mine[0]["body"].as_str().is_some_and(|b| b.contains(&link)), "{mine:?} lacks {link}");
}
