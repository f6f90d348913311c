//! The queues between a request and the mail it causes. In AWS an SQS queue
//! (encrypted, with a dead-letter queue) read by the `notify` function; in the
//! local server a background task. Either way the request only enqueues: a
//! mail outage changes no answer and no answer's timing, and the message is
//! retried until it is sent or refused for good.

use super::{Mail, MailError, MailQueue, MailSender};
use std::sync::Arc;
use std::time::Duration;

/// An SQS queue; the message body is the [`Mail`] as JSON.
#[derive(Debug, Clone)]
pub struct Sqs {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Sqs {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

#[async_trait::async_trait]
impl MailQueue for Sqs {
    async fn enqueue(&self, mail: Mail) -> Result<(), MailError> {
        let body = zeroize::Zeroizing::new(
            serde_json::to_string(&mail).map_err(|e| MailError::Refused(e.to_string()))?,
        );
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body.as_str())
            .send()
            .await
            .map_err(|e| MailError::Unavailable(Box::new(e)))?;
        tracing::info!(mail_id = %mail.id, kind = mail.kind.as_str(), "mail queued");
        Ok(())
    }
}

/// How often and how patiently the local queue retries a message.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 8, first_delay: Duration::from_millis(500) }
    }
}

/// The local server's queue: a background task sends each message through
/// `sender`, retrying an unavailable sender with doubling delays.
#[derive(Clone)]
pub struct Background {
    tx: tokio::sync::mpsc::UnboundedSender<Mail>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Background")
    }
}

impl Background {
    /// Starts the task on the current runtime.
    pub fn start(sender: Arc<dyn MailSender>, retry: Retry) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Mail>();
        tokio::spawn(async move {
            while let Some(mail) = rx.recv().await {
                let sender = sender.clone();
                tokio::spawn(async move { deliver(sender.as_ref(), &mail, retry).await });
            }
        });
        Self { tx }
    }
}

/// Sends `mail`, retrying while the sender is unavailable; true once sent.
pub async fn deliver(sender: &dyn MailSender, mail: &Mail, retry: Retry) -> bool {
    let mut delay = retry.first_delay;
    for attempt in 1..=retry.attempts.max(1) {
        match sender.send(mail).await {
            Ok(()) => return true,
            Err(MailError::Refused(why)) => {
                tracing::warn!(mail_id = %mail.id, kind = mail.kind.as_str(), why, "mail refused for good");
                return false;
            }
            Err(err) => {
                tracing::warn!(mail_id = %mail.id, attempt, error = %crate::error::error_chain(&err), "mail not sent yet");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
    }
    tracing::error!(mail_id = %mail.id, kind = mail.kind.as_str(), "mail given up after every retry");
    false
}

#[async_trait::async_trait]
impl MailQueue for Background {
    async fn enqueue(&self, mail: Mail) -> Result<(), MailError> {
        self.tx.send(mail).map_err(|_| MailError::Unavailable("the mail task has stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::templates::{render, Message};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Unavailable `fails` times, then sends; counts its calls.
    struct Flaky {
        fails: usize,
        calls: AtomicUsize,
        sent: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl MailSender for Flaky {
        async fn send(&self, _mail: &Mail) -> Result<(), MailError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fails {
                return Err(MailError::Unavailable("down".into()));
            }
            self.sent.notify_one();
            Ok(())
        }
    }

    #[tokio::test]
    async fn enqueueing_returns_at_once_and_the_task_retries_until_sent() {
        let flaky =
            Arc::new(Flaky { fails: 3, calls: AtomicUsize::new(0), sent: tokio::sync::Notify::new() });
        let queue =
            Background::start(flaky.clone(), Retry { attempts: 5, first_delay: Duration::from_millis(5) });
        let mail = render(&Default::default(), "ada@example.com", &Message::RegistrationAttempt);
        let started = std::time::Instant::now();
        queue.enqueue(mail).await.expect("queued");
        assert!(started.elapsed() < Duration::from_millis(5), "enqueue waited for the sender");
        tokio::time::timeout(Duration::from_secs(5), flaky.sent.notified()).await.expect("sent in the end");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_refused_message_is_not_retried_and_retries_are_bounded() {
        struct Refusing(AtomicUsize);
        #[async_trait::async_trait]
        impl MailSender for Refusing {
            async fn send(&self, _mail: &Mail) -> Result<(), MailError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err(MailError::Refused("MessageRejected".into()))
            }
        }
        let mail = render(&Default::default(), "ada@example.com", &Message::RegistrationAttempt);
        let refusing = Refusing(AtomicUsize::new(0));
        assert!(
            !deliver(&refusing, &mail, Retry { attempts: 5, first_delay: Duration::from_millis(1) }).await
        );
        assert_eq!(refusing.0.load(Ordering::SeqCst), 1);
        let down = Flaky { fails: usize::MAX, calls: AtomicUsize::new(0), sent: tokio::sync::Notify::new() };
        assert!(!deliver(&down, &mail, Retry { attempts: 3, first_delay: Duration::from_millis(1) }).await);
        assert_eq!(down.calls.load(Ordering::SeqCst), 3);
    }
}
