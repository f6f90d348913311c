//! The notify function: reads the security mail other functions queued (SQS)
//! and sends each message through a [`MailSender`] (Amazon SES v2). It answers
//! with the messages to retry (`batchItemFailures`, the queue's
//! `ReportBatchItemFailures`): a message SES could not take now is retried and,
//! after the queue's receive limit, parked in the dead-letter queue (whose
//! alarm says so); one SES refuses for good is dropped and logged by id.

use portcullis_shared::mail::{Mail, MailError, MailSender};
use serde_json::{json, Value};

/// Sends every message of an SQS event; the ids of those to retry.
pub async fn handle(sender: &dyn MailSender, event: &Value) -> Value {
    let records = event["Records"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut failures = Vec::new();
    for record in records {
        let id = record["messageId"].as_str().unwrap_or_default();
        let parsed = record["body"].as_str().map(serde_json::from_str::<Mail>);
        let retry = match parsed {
            Some(Ok(mail)) => match sender.send(&mail).await {
                Ok(()) => false,
                Err(MailError::Refused(why)) => {
                    tracing::warn!(message_id = id, mail_id = %mail.id, why, "mail refused for good");
                    false
                }
                Err(err) => {
                    let error = portcullis_shared::error::error_chain(&err);
                    tracing::warn!(message_id = id, mail_id = %mail.id, error, "mail not sent: retried");
                    true
                }
            },
            // Never a message of ours: to the dead-letter queue, to be looked at.
            _ => {
                tracing::error!(message_id = id, "a queued message is no mail");
                true
            }
        };
        if retry && !id.is_empty() {
            failures.push(json!({ "itemIdentifier": id }));
        }
    }
    json!({ "batchItemFailures": failures })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_shared::mail::templates::{render, Message};
    use std::sync::Mutex;

    /// Sends, refuses or is down, by recipient; keeps what it sent.
    #[derive(Default)]
    struct Script(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl MailSender for Script {
        async fn send(&self, mail: &Mail) -> Result<(), MailError> {
            match mail.to.as_str() {
                "down@example.com" => Err(MailError::Unavailable("throttled".into())),
                "bounced@example.com" => Err(MailError::Refused("MessageRejected".into())),
                to => {
                    self.0.lock().expect("lock").push(to.to_owned());
                    Ok(())
                }
            }
        }
    }

    fn record(id: &str, body: &str) -> Value {
        json!({"messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs"})
    }

    fn queued(to: &str) -> String {
        serde_json::to_string(&render(&Default::default(), to, &Message::RegistrationAttempt)).expect("json")
    }

    #[tokio::test]
    async fn only_the_messages_that_could_not_be_sent_now_are_retried() {
        let sender = Script::default();
        let event = json!({"Records": [
            record("m1", &queued("ada@example.com")),
            record("m2", &queued("down@example.com")),
            record("m3", &queued("bounced@example.com")),
            record("m4", "{\"not\": \"mail\"}"),
            record("m5", &queued("bob@example.com")),
        ]});
        let answer = handle(&sender, &event).await;
        assert_eq!(
            answer,
            json!({"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m4"}]})
        );
        assert_eq!(*sender.0.lock().expect("lock"), ["ada@example.com", "bob@example.com"]);
        assert_eq!(handle(&sender, &json!({})).await, json!({"batchItemFailures": []}));
    }

    #[tokio::test]
    async fn the_sample_event_of_no_mail_is_retried_toward_the_dead_letter_queue() {
        let event: Value =
            serde_json::from_str(include_str!("../../../events/notify/not-mail.json")).expect("event");
        let answer = handle(&Script::default(), &event).await;
        let failed =
            json!({"batchItemFailures": [{"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975830a7d"}]});
        assert_eq!(answer, failed);
    }
}
