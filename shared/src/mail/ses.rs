//! Amazon SES v2 (`SendEmail`, simple content: a text and an HTML part), the
//! sender the `notify` function uses. A refusal SES will repeat (a malformed or
//! suppressed address, an unverified sender) is [`MailError::Refused`] and not
//! retried; anything else is retried by the queue.

use super::{Mail, MailError, MailSender};
use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

/// Sends through SES v2 in the process's region.
#[derive(Debug, Clone)]
pub struct Ses {
    client: aws_sdk_sesv2::Client,
}

impl Ses {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        Self { client }
    }
}

fn content(text: &str) -> Result<Content, MailError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| MailError::Refused(e.to_string()))
}

#[async_trait::async_trait]
impl MailSender for Ses {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let body = Body::builder().text(content(&mail.text)?).html(content(&mail.html)?).build();
        let message = Message::builder().subject(content(&mail.subject)?).body(body).build();
        let sent = self
            .client
            .send_email()
            .from_email_address(&mail.from)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(mail_id = %mail.id, kind = mail.kind.as_str(), "mail sent");
                Ok(())
            }
            Err(err) => {
                let code = err.code().unwrap_or_default().to_owned();
                // Permanent: retrying sends nothing more (SES v2 error codes).
                if matches!(
                    code.as_str(),
                    "BadRequestException"
                        | "MessageRejected"
                        | "MailFromDomainNotVerifiedException"
                        | "AccountSuspendedException"
                        | "NotFoundException"
                ) {
                    Err(MailError::Refused(code))
                } else {
                    Err(MailError::Unavailable(Box::new(err)))
                }
            }
        }
    }
}
